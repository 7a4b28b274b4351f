"""Purging session rows that can no longer matter, on both stores."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from issuer.clock import SettableClock
from issuer.context import Context
from issuer.services.housekeeping import purge_expired
from issuer.services.users import user_store
from tests.conftest import Login, MakeClient, MakeUser, Refresh


async def count(ctx: Context, table: str) -> int:
    store: Any = ctx.store
    if ctx.store.dialect == "sqlite":
        async with store.read() as tx:
            row = await tx.fetchone(f"SELECT count(*) AS n FROM {table}")
            return int(row["n"])
    return int(await store.pool.fetchval(f"SELECT count(*) FROM {table}"))


async def test_purge_deletes_only_what_has_expired(
    client: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
    ctx: Context,
    clock: SettableClock,
) -> None:
    app = await make_client(first_party=True)
    user = await make_user()
    old = await login(app, user)
    resp = await client.post("/logout", headers={"Authorization": f"Bearer {old['access_token']}"})
    assert resp.status == 204
    await client.post(
        "/token",
        data={"grant_type": "password", "username": "ghost", "password": "guess"},
        headers=app.basic(),
    )
    store = user_store(ctx.store)
    assert await purge_expired(store, ctx.settings, ctx.clock) == 0  # all still live

    clock.advance(days=31)
    fresh = await login(app, user)
    await client.post(
        "/token",
        data={"grant_type": "password", "username": "ghost", "password": "guess"},
        headers=app.basic(),
    )
    assert await purge_expired(store, ctx.settings, ctx.clock) > 0
    assert await count(ctx, "revocation_events") == 0
    assert await count(ctx, "refresh_families") == 1  # only the fresh login's
    assert await count(ctx, "family_access_tokens") == 1
    # The fresh failure's counters (username, username and address, address); the old
    # failure's are gone, and a success writes none.
    assert await count(ctx, "login_failures") == 3
    assert (await refresh(app, fresh["refresh_token"])).status == 200
    assert (await refresh(app, old["refresh_token"])).status == 400
