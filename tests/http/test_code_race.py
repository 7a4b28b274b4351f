"""Two presentations of one code at the same moment: exactly one gets tokens, and the
other is a replay that revokes them (RFC 6749 §4.1.2), whatever the interleaving.

On PostgreSQL the test holds the code's row lock itself until both exchanges are
waiting on it, then lets them go; on SQLite every exchange runs under the write
lock, so two concurrent ones are serialized by construction.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from issuer.context import Context
from tests.conftest import MakeClient, MakeUser, Refresh
from tests.http.browser import REDIRECT, Pkce, authorize_query, exchange, query_of, sign_in


async def waiting_on_locks(conn: asyncpg.Connection, n: int) -> None:
    """Until ``n`` other sessions wait on a lock (a condition, not a guess at timing)."""
    for _ in range(1000):
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        if waiting >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{n} sessions never waited on the lock")


async def test_two_exchanges_of_one_code_at_once(
    client: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    refresh: Refresh,
    ctx: Context,
) -> None:
    rp = await make_client(scopes="openid", redirect_uris=(REDIRECT,), first_party=True)
    user = await make_user()
    pkce = Pkce.make()
    params = authorize_query(rp.client_id, pkce, scope="openid")
    code = query_of(await sign_in(client, params, user.username, user.password))["code"]

    def present() -> Any:
        return exchange(
            client, code, client_id=rp.client_id, verifier=pkce.verifier, headers=rp.basic()
        )

    if ctx.store.dialect == "sqlite":
        responses = list(await asyncio.gather(present(), present()))
    else:
        conn = await asyncpg.connect(ctx.settings.database_url)
        try:
            held = conn.transaction()
            await held.start()
            await conn.execute(
                "SELECT 1 FROM authorization_codes WHERE code_hash = $1 FOR UPDATE",
                hashlib.sha256(code.encode()).hexdigest(),
            )
            tasks = [asyncio.create_task(present()) for _ in range(2)]
            await waiting_on_locks(conn, 2)
            await held.commit()
            responses = await asyncio.gather(*tasks)
        finally:
            await conn.close()
    assert sorted(r.status for r in responses) == [200, 400]
    winner = next(r for r in responses if r.status == 200)
    tokens = await winner.json()
    # The loser was a replay: what the winner got is revoked.
    assert (await refresh(rp, tokens["refresh_token"])).status == 400
    info = await client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert info.status == 401
