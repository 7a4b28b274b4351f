"""Destroyed private keys leave no copy behind in the SQLite files."""

from __future__ import annotations

from pathlib import Path

import pytest

from issuer.app import create_app
from issuer.appkeys import context_key
from issuer.config import Settings
from issuer.lifecycle import start, stop


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # About SQLite's own files; PostgreSQL keeps dead tuples until VACUUM (see README).
    return f"sqlite:///{tmp_path}/issuer.db"


def files_containing(folder: Path, needle: bytes) -> list[str]:
    return [p.name for p in folder.glob("issuer.db*") if needle in p.read_bytes()]


async def test_a_revoked_key_leaves_no_copy_in_the_database_files(
    settings: Settings, tmp_path: Path
) -> None:
    ctx = create_app(settings)[context_key]
    await start(ctx)
    try:
        pending = next(v for v in ctx.keyring.views() if v.state == "pending")
        blob = pending.record.private_wrapped
        assert blob is not None
        assert files_containing(tmp_path, blob[20:60]), "the control: it is on disk at first"
        await ctx.keys.revoke(pending.kid, actor="test")
        assert files_containing(tmp_path, blob[20:60]) == []
    finally:
        await stop(ctx)
