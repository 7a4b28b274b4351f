"""Browser-login rows are purged once they can no longer matter, on both stores."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from issuer.clock import SettableClock
from issuer.context import Context
from issuer.services.housekeeping import purge_expired
from issuer.services.users import user_store
from tests.conftest import MakeClient, MakeUser
from tests.http.browser import REDIRECT, Pkce, authorize_query, exchange, query_of, sign_in, start
from tests.services.test_housekeeping import count

TABLES = ("interactions", "authorization_codes", "browser_sessions", "browser_session_families")


async def test_purge_removes_finished_logins_and_keeps_live_ones(
    client: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    ctx: Context,
    clock: SettableClock,
) -> None:
    rp = await make_client(scopes="openid", redirect_uris=(REDIRECT,), first_party=True)
    user = await make_user()
    pkce = Pkce.make()
    params = authorize_query(rp.client_id, pkce, scope="openid")
    code = query_of(await sign_in(client, params, user.username, user.password))["code"]
    resp = await exchange(
        client, code, client_id=rp.client_id, verifier=pkce.verifier, headers=rp.basic()
    )
    assert resp.status == 200
    await start(client, authorize_query(rp.client_id, Pkce.make(), prompt="login", scope="openid"))
    store = user_store(ctx.store)
    assert await purge_expired(store, ctx.settings, ctx.clock) == 0
    assert [await count(ctx, t) for t in TABLES] == [1, 1, 1, 1]

    clock.advance(days=31)  # past the browser session and the refresh family's lifetime
    assert await purge_expired(store, ctx.settings, ctx.clock) > 0
    assert [await count(ctx, t) for t in TABLES] == [0, 0, 0, 0]
