"""``issuer`` and ``python -m issuer``: the server's command line, when the server is installed."""

from __future__ import annotations

import importlib.util
import sys

# What ``pip install 'issuer[server]'`` adds to the base install (the verifier alone).
SERVER_MODULES = ("aiohttp", "asyncpg", "aiosqlite", "argon2", "prometheus_client")


def entry() -> int:
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"issuer: the server is not installed (missing {', '.join(missing)}): "
            "install it with pip install 'issuer[server]'",
            file=sys.stderr,
        )
        return 2
    from issuer.cli import main

    return main()


if __name__ == "__main__":
    raise SystemExit(entry())
