"""The wheel in a fresh virtualenv: the base install is the verifier alone; [server] adds the rest.

Builds the wheel from this checkout, installs it into an empty virtualenv with
the package index pip is configured with, and looks at what got installed and
what the ``issuer`` command says.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = {"asyncpg", "aiosqlite", "argon2-cffi", "prometheus-client"}

pytestmark = pytest.mark.slow


def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, check=check
    )


def installed(python: Path) -> set[str]:
    out = run(
        python,
        "-c",
        "import importlib.metadata as m, json;"
        "print(json.dumps(sorted({d.metadata['Name'].lower().replace('_', '-')"
        " for d in m.distributions()})))",
    ).stdout
    return set(json.loads(out))


def test_the_base_install_is_the_verifier_and_the_server_extra_adds_the_server(
    tmp_path: Path,
) -> None:
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    # Built from a copy of what the wheel holds, so the checkout gets no build/ folder.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "issuer", src / "issuer", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    run(*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", tmp_path / "dist", src)
    (wheel,) = (tmp_path / "dist").glob("issuer-*.whl")
    run(sys.executable, "-m", "venv", "--without-pip", tmp_path / "venv")
    python = tmp_path / "venv" / "bin" / "python"
    into: list[str | Path] = [*pip, "--python", python, "install", "--quiet"]

    run(*into, wheel)
    base = installed(python)
    assert "issuer" in base
    assert not base & SERVER_ONLY
    assert "aiohttp" not in base  # a Flask or Django service needs no event-loop stack
    # The sync verifier works from the base install alone ...
    verify = run(
        python,
        "-c",
        "from issuer.verifier import SyncVerifier, SyncJWKSClient\n"
        "v = SyncVerifier(issuer='https://i.example', audience='a',"
        " jwks=SyncJWKSClient('https://i.example/jwks'))\n"
        "try:\n"
        "    v.verify('not-a-token')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n",
    )
    assert verify.stdout.strip() == "MalformedTokenError"
    # ... an adapter whose framework is missing says which extra to install ...
    adapter = run(python, "-c", "import issuer.verifier.flask", check=False)
    assert "pip install 'issuer[flask]'" in adapter.stderr
    # ... and the server's command says, in one line, how to get the server.
    command = run(tmp_path / "venv" / "bin" / "issuer", "serve", check=False)
    assert command.returncode == 2
    assert command.stderr.count("\n") == 1
    assert "pip install 'issuer[server]'" in command.stderr

    run(*into, f"issuer[server] @ {wheel.as_uri()}")
    full = installed(python)
    assert full >= SERVER_ONLY | {"aiohttp"}
    help_ = run(tmp_path / "venv" / "bin" / "issuer", "--help")
    assert "serve" in help_.stdout
