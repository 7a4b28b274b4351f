"""The README keeps its promises: the two commands first, every setting documented,
every shell block runs as written.

The convention for fenced blocks (every block names its language):

- ``sh`` or ``bash``: runnable. ``test_every_shell_block_runs_as_written`` runs all
  of them in README order, in one ``bash`` with ``set -euo pipefail``, in an empty
  directory where ``issuer serve`` (what ``./run serve`` starts) is running, so a
  block may use what an earlier block set. A ``curl`` that gets an HTTP error
  fails the run.
- ``console``: shell commands shown but not run (they start the service or the
  tests themselves, or need Docker, Kubernetes or a git host).
- anything else (``json``, ``python``, ``text``...): not shell, not run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from contextlib import suppress
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from issuer.config import Settings
from tests.live import free_port, issuer_env, serve

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text("utf-8")

RUNNABLE = {"sh", "bash"}
SHOWN = {"console"}
NOT_SHELL = {"json", "python", "js", "text", "yaml", "toml", "ini", "http", "dockerfile"}
# The README's addresses; the test serves on free ports instead (see _on_ports).
PUBLIC, ADMIN, RESOURCE = "8080", "8081", "8090"


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    text: str


def blocks(markdown: str) -> list[Block]:
    out: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        opening = re.fullmatch(r"(`{3,}|~{3,})\s*([^`\s]*).*", lines[i])
        if opening is None:
            i += 1
            continue
        fence, lang = opening.group(1), opening.group(2)
        end = i + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        assert end < len(lines), f"README.md:{i + 1}: the block is never closed"
        out.append(Block(i + 1, lang, "\n".join(lines[i + 1 : end]) + "\n"))
        i = end + 1
    return out


def test_the_readme_opens_with_the_two_commands() -> None:
    block = blocks(README)[0]
    commands = [line.split("#")[0].strip() for line in block.text.splitlines() if line.strip()]
    assert commands == ["./run serve", "./run test"]
    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    assert "exec ./run test" in ci


def test_every_setting_is_in_the_configuration_tables() -> None:
    for f in fields(Settings):
        name = f"`ISSUER_{f.name.upper()}`"
        assert f"| {name}" in README or f"/ {name}" in README, f"{name} is not documented"


def test_every_block_says_whether_it_runs() -> None:
    found = blocks(README)
    assert sum(b.lang in RUNNABLE for b in found) >= 5  # the parser sees the blocks
    for b in found:
        assert b.lang in RUNNABLE | SHOWN | NOT_SHELL, (
            f"README.md:{b.line}: a fenced block needs a language: sh/bash (run by this "
            f"test), console (shell shown, not run) or json/python/text..., not {b.lang!r}"
        )


def test_the_block_parser_sees_what_a_reader_sees() -> None:
    text = "a\n```sh\necho 1\n```\n\n````console\n```sh\nnot a block\n```\n````\n~~~\nx\n~~~\n"
    assert blocks(text) == [
        Block(2, "sh", "echo 1\n"),
        Block(6, "console", "```sh\nnot a block\n```\n"),
        Block(11, "", "x\n"),
    ]


def _on_ports(script: str, ports: dict[str, int]) -> str:
    """The README's fixed ports replaced by free ones (other tests and services run)."""
    return re.sub(r"\b(8080|8081|8090)\b", lambda m: str(ports[m.group(1)]), script)


def script_of(markdown: str, ports: dict[str, int]) -> str:
    parts = [
        "set -euo pipefail",
        # An HTTP error answer fails the run (the README's curls show bodies with -s).
        'curl() { command curl --fail-with-body "$@"; }',
        "trap 'echo \"README block at line $README_LINE failed\" >&2' ERR",
    ]
    for b in blocks(markdown):
        if b.lang in RUNNABLE:
            parts += [f"README_LINE={b.line}", f'echo "### README.md:{b.line}"', b.text]
    parts.append('echo "### all README blocks ran"')
    return _on_ports("\n".join(parts), ports)


@pytest.mark.slow
def test_every_shell_block_runs_as_written(tmp_path: Path) -> None:
    home = tmp_path / "checkout"
    home.mkdir()
    # What a checkout after ./run serve has: the .venv and the examples.
    (home / ".venv").symlink_to(Path(sys.prefix))
    shutil.copytree(ROOT / "examples", home / "examples")
    ports = {PUBLIC: free_port(), ADMIN: free_port(), RESOURCE: free_port()}
    env = issuer_env(tmp_path)
    # ./run serve's defaults: the database and the KEK under the current directory.
    del env["ISSUER_DATABASE_URL"], env["ISSUER_KEK_FILE"]
    env.update(
        ISSUER_PORT=str(ports[PUBLIC]),
        ISSUER_ADMIN_PORT=str(ports[ADMIN]),
        ISSUER_ISSUER=f"http://127.0.0.1:{ports[PUBLIC]}",
    )
    script = home / "readme.sh"
    script.write_text(script_of(README, ports), "utf-8")
    with serve(env, tmp_path / "serve.log", cwd=home) as served:
        served.wait_ready()
        bash = subprocess.Popen(
            ["bash", str(script)],
            cwd=home,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = bash.communicate(timeout=240)
        finally:  # whatever a block started in the background (the resource service)
            with suppress(ProcessLookupError):
                os.killpg(bash.pid, signal.SIGKILL)
            bash.wait()
        log = served.logs()[-4000:]
    assert bash.returncode == 0, f"{err}\n--- stdout ---\n{out}\n--- issuer ---\n{log}"
    assert out.rstrip().endswith("### all README blocks ran")
    assert (home / "var" / "issuer.db").exists()  # it ran where ./run serve runs
