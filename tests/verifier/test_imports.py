"""A resource service imports the verifier without the server or its dependencies."""

from __future__ import annotations

import subprocess
import sys

SERVER_ONLY = ("asyncpg", "aiosqlite", "argon2", "prometheus_client")
FRAMEWORKS = ("aiohttp", "starlette", "fastapi", "flask", "werkzeug", "uvicorn", "waitress")


def loaded_by(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    ours = {name for name in out if name.startswith("issuer")}
    assert ours == {"issuer"} | {n for n in ours if n.startswith("issuer.verifier")}
    return {name.split(".")[0] for name in out}


def test_the_verifier_imports_nothing_of_the_server() -> None:
    loaded = loaded_by("import issuer.verifier, issuer.verifier.middleware")
    assert not loaded & set(SERVER_ONLY)
    assert "jwcrypto" not in loaded  # only a JWKS refresh pays for importing it


def test_the_base_and_the_sync_verifier_import_no_framework() -> None:
    loaded = loaded_by(
        "import issuer.verifier, issuer.verifier.sync, issuer.verifier.wsgi, "
        "issuer.verifier.bearer\n"
        "from issuer.verifier import SyncVerifier, SyncJWKSClient, SyncRevocationFeed"
    )
    assert not loaded & set(SERVER_ONLY + FRAMEWORKS)


def test_each_adapter_imports_only_its_own_framework() -> None:
    assert not loaded_by("import issuer.verifier.flask") & {"aiohttp", "starlette", "fastapi"}
    assert not loaded_by("import issuer.verifier.asgi") & {"flask", "fastapi", "werkzeug"}
    assert not loaded_by("from issuer.verifier import JWKSClient") & {"starlette", "flask"}
