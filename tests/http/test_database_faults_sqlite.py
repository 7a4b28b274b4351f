"""SQLite: another process holding the write lock past the bound is a 503, not a 500."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from issuer import logs
from tests.conftest import Login, MakeClient, MakeUser, Refresh


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/issuer.db"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"db_statement_timeout": 0.5, "db_acquire_timeout": 0.5}


@pytest.fixture
def write_lock(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A connection of another process's kind; the test takes its write lock."""
    conn = sqlite3.connect(tmp_path / "issuer.db", isolation_level=None)
    yield conn
    conn.close()


async def test_a_held_write_lock_answers_503_and_then_recovers(
    client: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
    write_lock: sqlite3.Connection,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(logs, "_overloads", {})
    app = await make_client(first_party=True)
    user = await make_user()
    tokens = await login(app, user)

    write_lock.execute("BEGIN IMMEDIATE")
    caplog.clear()
    password = {"grant_type": "password", "username": user.username, "password": user.password}
    for _ in range(3):
        start = time.monotonic()
        for resp in (
            await client.post("/token", data=password, headers=app.basic()),
            await refresh(app, tokens["refresh_token"]),
        ):
            assert resp.status == 503, await resp.text()
            assert resp.headers["Retry-After"] == "2"
            assert (await resp.json())["error"] == "temporarily_unavailable"
        assert time.monotonic() - start < 3.0
        # Reads go on in WAL mode: the JWKS and a client-credentials token still work.
        assert (await client.get("/.well-known/jwks.json")).status == 200
    warnings = [r for r in caplog.records if r.name == "issuer.overload"]
    assert len(warnings) == 1
    assert "database unavailable" in warnings[0].getMessage()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []

    write_lock.execute("ROLLBACK")
    resp = await refresh(app, tokens["refresh_token"])
    assert resp.status == 200, await resp.text()
    assert (await client.post("/token", data=password, headers=app.basic())).status == 200
