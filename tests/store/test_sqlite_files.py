"""The SQLite database holds wrapped private keys and secret hashes: its files are 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from issuer.store.sqlite import SQLiteStore


@pytest.fixture
def open_umask() -> object:
    """A permissive umask, as in a container that sets none: only our own mode protects."""
    old = os.umask(0o022)
    yield None
    os.umask(old)


@pytest.mark.usefixtures("open_umask")
async def test_database_wal_and_shm_are_0600_in_an_existing_open_directory(
    tmp_path: Path,
) -> None:
    var = tmp_path / "var"
    var.mkdir(mode=0o755)  # like the image's /app/var, made before the service runs
    os.chmod(var, 0o755)  # noqa: S103 (the open directory is the point)
    store = await SQLiteStore.open(f"sqlite:///{var}/issuer.db")
    try:
        await store.migrate()
        names = sorted(p.name for p in var.iterdir())
        assert names == ["issuer.db", "issuer.db-shm", "issuer.db-wal"]
        for path in var.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    finally:
        await store.close()
