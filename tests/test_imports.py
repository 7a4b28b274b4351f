"""The package's shape: dependencies point one way, and the HTTP edge never reaches the store."""

from __future__ import annotations

import ast
from pathlib import Path

import issuer

ROOT = Path(issuer.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, *, runtime_only: bool) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if runtime_only and isinstance(node, ast.If) and _is_type_checking(node.test):
            for branch in node.orelse:
                visit(branch)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(*, runtime_only: bool) -> dict[str, set[str]]:
    """Module -> the issuer modules it imports (functions' bodies included)."""
    sources = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {
        name: {
            m
            for m in _imports(ast.parse(path.read_text("utf-8")), runtime_only=runtime_only)
            if m in sources and m != name
        }
        for name, path in sources.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph[node]):
            if (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        if (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_issuer() -> None:
    assert find_cycle(import_graph(runtime_only=True)) is None


def test_nothing_under_http_imports_the_store() -> None:
    graph = import_graph(runtime_only=False)
    offenders = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith("issuer.http")
        for target in targets
        if target == "issuer.store" or target.startswith("issuer.store.")
    }
    assert offenders == set()


def test_admin_and_users_routes_do_not_import_each_other() -> None:
    graph = import_graph(runtime_only=False)
    assert "issuer.http.users" not in graph["issuer.http.admin"]
    assert "issuer.http.admin" not in graph["issuer.http.users"]


def test_the_cli_does_not_import_the_http_edge() -> None:
    graph = import_graph(runtime_only=False)
    assert not {t for t in graph["issuer.cli"] if t.startswith("issuer.http")}


def test_the_core_never_imports_the_http_edge() -> None:
    graph = import_graph(runtime_only=False)
    core = ("issuer.services", "issuer.keyring", "issuer.jose", "issuer.store", "issuer.context")
    offenders = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith(core)
        for target in targets
        if target.startswith("issuer.http")
    }
    assert offenders == set()
