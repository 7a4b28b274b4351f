"""PostgreSQL faults, through a proxy the tests cut, stall and restore (tests/dbproxy.py).

While the database is gone or stalled, what needs it answers ``503`` with
``Retry-After`` and RFC 6749 JSON within its bound, logged once, not once per
request; the JWKS and discovery answer from memory; everything recovers on its
own once the proxy forwards again. A refresh cut at any statement either
completes or leaves the presented token usable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from issuer import logs
from issuer.context import Context
from issuer.services.sessions import hash_refresh_token
from tests.conftest import (
    PG_DSN,
    Login,
    MakeClient,
    MakeUser,
    Refresh,
)
from tests.dbproxy import PostgresProxy

pytestmark = pytest.mark.postgres

BOUND = 1.0  # ISSUER_DB_ACQUIRE_TIMEOUT and ISSUER_DB_STATEMENT_TIMEOUT in these tests


@pytest.fixture
async def proxy() -> AsyncIterator[PostgresProxy]:
    target = urlsplit(PG_DSN)
    proxy = PostgresProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    yield proxy
    proxy.restore()
    await proxy.close()


@pytest.fixture
def database_url(postgres_url: str, proxy: PostgresProxy) -> str:
    """The test database, reached through the proxy."""
    parts = urlsplit(postgres_url)
    netloc = parts.netloc.rpartition("@")[0] + f"@127.0.0.1:{proxy.port}"
    return parts._replace(netloc=netloc).geturl()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "db_acquire_timeout": BOUND,
        "db_statement_timeout": BOUND,
        # No timer-driven key reloads in the middle of the statement counts.
        "key_refresh_interval": 3600,
    }


@pytest.fixture
def overload_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each test starts with no recent "database unavailable" line (module state).
    monkeypatch.setattr(logs, "_overloads", {})


async def timed(request: Any) -> tuple[ClientResponse, float]:
    start = time.monotonic()
    async with asyncio.timeout(30):  # before the fix, a stall lasts 30 s or more
        resp = await request
        await resp.read()
    return resp, time.monotonic() - start


async def assert_unavailable(request: Any, bound: float) -> None:
    resp, elapsed = await timed(request)
    assert resp.status == 503, await resp.text()
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["error"] == "temporarily_unavailable"
    assert elapsed < bound, elapsed


@pytest.fixture
async def grants(
    client: TestClient[Any, Any], make_client: MakeClient, make_user: MakeUser, login: Login
) -> dict[str, Any]:
    """The three grants (made while the database answers), each a request factory."""
    service = await make_client()
    app = await make_client(first_party=True)
    user = await make_user()
    refresh_token = (await login(app, user))["refresh_token"]
    return {
        "client_credentials": lambda: client.post(
            "/token", data={"grant_type": "client_credentials"}, headers=service.basic()
        ),
        "password": lambda: client.post(
            "/token",
            data={"grant_type": "password", "username": user.username, "password": user.password},
            headers=app.basic(),
        ),
        "refresh_token": lambda: client.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            headers=app.basic(),
        ),
    }


async def test_cut_answers_503_fast_logs_once_and_recovers(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    proxy: PostgresProxy,
    grants: dict[str, Any],
    overload_lines: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    requests = grants

    proxy.cut()
    caplog.clear()
    for _ in range(3):
        for request in requests.values():
            await assert_unavailable(request(), 2.0)
        resp, _ = await timed(client.get("/.well-known/jwks.json"))
        assert resp.status == 200
        assert (await resp.json())["keys"]
        resp, _ = await timed(client.get("/.well-known/openid-configuration"))
        assert resp.status == 200
    resp, elapsed = await timed(admin.get("/readyz"))
    assert resp.status == 503
    assert "database" in (await resp.json())["failed"]
    assert elapsed < 2.0  # its documented bound

    # Nine failed requests: one WARNING line for the condition, no traceback, no ERROR.
    warnings = [r for r in caplog.records if r.name == "issuer.overload"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "database unavailable" in warnings[0].getMessage()
    assert warnings[0].levelno == logging.WARNING
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []

    proxy.restore()
    start = time.monotonic()
    for name, request in requests.items():
        resp, _ = await timed(request())
        assert resp.status == 200, (name, await resp.text())
    resp, _ = await timed(admin.get("/readyz"))
    assert resp.status == 200
    assert time.monotonic() - start < 5.0


async def test_stall_answers_503_within_the_bounds_and_recovers(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    proxy: PostgresProxy,
    grants: dict[str, Any],
    overload_lines: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    requests = grants

    proxy.stall()
    caplog.clear()
    # More requests at once than the pool has connections (10): the later ones wait for
    # a connection, the first ones for their statement; each is bounded.
    bound = 2 * BOUND + 1.5
    burst = [assert_unavailable(requests["client_credentials"](), bound) for _ in range(12)]
    burst += [assert_unavailable(requests["password"](), bound)]
    burst += [assert_unavailable(requests["refresh_token"](), bound)]

    async def probes() -> None:
        resp, elapsed = await timed(admin.get("/readyz"))
        assert resp.status == 503
        assert elapsed < 2.0  # its documented bound
        for path in ("/.well-known/jwks.json", "/.well-known/oauth-authorization-server"):
            resp, elapsed = await timed(client.get(path))
            assert resp.status == 200
            assert elapsed < 0.5

    await asyncio.gather(*burst, probes())
    warnings = [r for r in caplog.records if r.name == "issuer.overload"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []

    proxy.restore()
    start = time.monotonic()
    for name, request in requests.items():
        resp, _ = await timed(request())
        assert resp.status == 200, (name, await resp.text())
    resp, _ = await timed(admin.get("/readyz"))
    assert resp.status == 200
    assert time.monotonic() - start < 5.0


async def _family_rows(url: str, family_of: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(
            await conn.fetch(
                "SELECT t.token_hash, t.parent_hash, t.spent_at, f.revoked_at"
                " FROM refresh_tokens t JOIN refresh_families f USING (family_id)"
                " WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)",
                family_of,
            )
        )
    finally:
        await conn.close()


def assert_family_whole(rows: list[asyncpg.Record], presented: str) -> None:
    """Not revoked, the presented token unspent, every spent token with its successor."""
    assert rows
    assert all(r["revoked_at"] is None for r in rows)
    by_hash = {r["token_hash"]: r for r in rows}
    assert by_hash[presented]["spent_at"] is None
    parents = {r["parent_hash"] for r in rows}
    assert all(r["token_hash"] in parents for r in rows if r["spent_at"] is not None)
    assert sum(1 for r in rows if r["spent_at"] is None) == 1


def take(path: str, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """``locked``: every refresh goes the locked way, as when its family is busy."""
    if path == "locked":

        async def busy(*args: Any, **kwargs: Any) -> None:
            return None

        monkeypatch.setattr(ctx.store, "rotate_refresh", busy)


def is_rotation(sql: str | None) -> bool:
    """The one-statement rotation, which commits itself."""
    return sql is not None and "INSERT INTO family_access_tokens" in sql and "WITH" in sql


@pytest.mark.parametrize("path", ["one statement", "locked"])
async def test_a_refresh_cut_at_any_statement_completes_or_leaves_the_token_usable(
    proxy: PostgresProxy,
    postgres_url: str,
    ctx: Context,
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    app = await make_client(first_party=True)
    user = await make_user()
    presented = (await login(app, user))["refresh_token"]
    take(path, ctx, monkeypatch)
    cut_at: list[str] = []
    for n in range(1, 40):
        proxy.cut_at(n)
        async with asyncio.timeout(10):
            resp = await refresh(app, presented)
        proxy.restore()
        if not proxy.fired:
            # The refresh needed fewer than n statements: every point has been cut.
            assert resp.status == 200, await resp.text()
            break
        assert proxy.cut_statement is not None
        cut_at.append(proxy.cut_statement)
        if resp.status == 200:
            # Cut after the commit (releasing the connection): the refresh completed.
            presented = (await resp.json())["refresh_token"]
        else:
            assert resp.status == 503, await resp.text()
            assert (await resp.json())["error"] == "temporarily_unavailable"
        assert_family_whole(
            await _family_rows(postgres_url, hash_refresh_token(presented)),
            hash_refresh_token(presented),
        )
    else:
        pytest.fail("the refresh never completed")
    if path == "one statement":
        # One statement that writes and commits: the only point there is to cut.
        assert len(cut_at) == 1, cut_at
        assert is_rotation(cut_at[0]), cut_at
        return
    # The cuts fell on the transaction's writes and on its commit.
    assert any("UPDATE refresh_tokens" in sql for sql in cut_at), cut_at
    assert any("INSERT INTO refresh_tokens" in sql for sql in cut_at), cut_at
    assert "COMMIT;" in cut_at or "COMMIT" in cut_at, cut_at
