"""A resource service imports the verifier without the server or its dependencies."""

from __future__ import annotations

import subprocess
import sys

SERVER_ONLY = ("asyncpg", "aiosqlite", "argon2", "prometheus_client")


def test_the_verifier_imports_nothing_of_the_server() -> None:
    code = (
        "import sys, issuer.verifier, issuer.verifier.middleware\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    loaded = {name.split(".")[0] for name in out}
    assert not loaded & set(SERVER_ONLY)
    ours = {name for name in out if name.startswith("issuer")}
    assert ours == {"issuer"} | {n for n in ours if n.startswith("issuer.verifier")}
    assert "jwcrypto" not in loaded  # only a JWKS refresh pays for importing it
