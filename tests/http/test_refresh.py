"""grant_type=refresh_token (RFC 6749 §6): rotation, reuse detection, expiry, logout."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
from aiohttp.test_utils import TestClient

from issuer.clock import SettableClock
from tests.conftest import Login, MakeClient, MakeUser, Refresh, RegisteredClient


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def introspect(
    client: TestClient[Any, Any], caller: RegisteredClient, token: str
) -> dict[str, Any]:
    resp = await client.post("/introspect", data={"token": token}, headers=caller.basic())
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


async def test_login_refresh_refresh_logout(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
    clock: SettableClock,
) -> None:
    app = await make_client(scopes="read write", first_party=True)
    user = await make_user(roles=("reader",))
    first = await login(app, user)

    clock.advance(60)
    resp = await refresh(app, first["refresh_token"])
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    second = await resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    claims = jwt.decode(second["access_token"], options={"verify_signature": False})
    assert claims["sub"] == user.user_id
    assert claims["roles"] == ["reader"]
    assert claims["scope"] == "read write"

    clock.advance(60)
    resp = await refresh(app, second["refresh_token"], scope="read")
    assert resp.status == 200
    third = await resp.json()
    assert third["scope"] == "read"

    # Logout: the bearer token is deny-listed and the whole family revoked.
    resp = await client.post(
        "/logout",
        data={"refresh_token": third["refresh_token"]},
        headers=bearer(third["access_token"]),
    )
    assert resp.status == 204
    assert (await refresh(app, third["refresh_token"])).status == 400
    assert (await introspect(client, app, third["access_token"])) == {"active": False}
    # The access token issued before, from the same family, is cut off too.
    assert (await introspect(client, app, second["access_token"])) == {"active": False}
    resp = await client.post("/logout", headers=bearer(third["access_token"]))
    assert resp.status == 401


async def test_logout_without_a_refresh_token_still_ends_the_session(
    client: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
) -> None:
    app = await make_client(first_party=True, public=True)
    tokens = await login(app, await make_user())
    resp = await client.post("/logout", headers=bearer(tokens["access_token"]))
    assert resp.status == 204
    resp = await refresh(app, tokens["refresh_token"])
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"


async def test_reuse_revokes_the_family_and_its_access_tokens(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    admin_token: str,
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
    clock: SettableClock,
) -> None:
    app = await make_client(scopes="read issuer:admin", first_party=True)
    tokens = await login(app, await make_user(roles=("issuer:admin",)))
    rotated = await (await refresh(app, tokens["refresh_token"])).json()
    # The admin API accepts the access token before the reuse...
    assert (await admin.get("/admin/keys", headers=bearer(rotated["access_token"]))).status == 200

    clock.advance(5)
    resp = await refresh(app, tokens["refresh_token"])  # spent: someone else has it
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"

    # ...and the whole family is gone: the newest refresh token and every access token.
    resp = await refresh(app, rotated["refresh_token"])
    assert resp.status == 400
    for access in (tokens["access_token"], rotated["access_token"]):
        assert (await introspect(client, app, access)) == {"active": False}
        resp = await admin.get("/admin/keys", headers=bearer(access))
        assert resp.status == 401
        assert "revoked" in resp.headers["WWW-Authenticate"]
    audit = await (await admin.get("/admin/audit", headers=bearer(admin_token))).json()
    assert "refresh.reuse" in [e["action"] for e in audit["items"]]


async def test_fifty_concurrent_refreshes_have_exactly_one_winner(
    client: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
) -> None:
    app = await make_client(first_party=True)
    tokens = await login(app, await make_user())
    responses = await asyncio.gather(*(refresh(app, tokens["refresh_token"]) for _ in range(50)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] + [400] * 49
    for r in responses:
        if r.status == 400:
            assert (await r.json())["error"] == "invalid_grant"


async def test_a_refresh_token_only_works_for_its_own_client(
    make_client: MakeClient, make_user: MakeUser, login: Login, refresh: Refresh
) -> None:
    app = await make_client(first_party=True)
    other = await make_client(first_party=True)
    tokens = await login(app, await make_user())
    resp = await refresh(other, tokens["refresh_token"])
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"
    # The stranger's attempt spent nothing: the owner still refreshes.
    assert (await refresh(app, tokens["refresh_token"])).status == 200


async def test_scope_can_only_narrow(
    make_client: MakeClient, make_user: MakeUser, login: Login, refresh: Refresh
) -> None:
    app = await make_client(scopes="read write", first_party=True)
    tokens = await login(app, await make_user(), scope="read")
    resp = await refresh(app, tokens["refresh_token"], scope="read write")
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_scope"
    resp = await refresh(app, tokens["refresh_token"])
    assert resp.status == 200
    assert (await resp.json())["scope"] == "read"


async def test_idle_timeout(
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
    clock: SettableClock,
) -> None:
    app = await make_client(first_party=True)
    tokens = await login(app, await make_user())
    clock.advance(days=6, hours=23)
    resp = await refresh(app, tokens["refresh_token"])
    assert resp.status == 200
    token = (await resp.json())["refresh_token"]
    clock.advance(days=7)  # default ISSUER_REFRESH_IDLE_TTL is 7d
    resp = await refresh(app, token)
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"


async def test_absolute_lifetime(
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
    clock: SettableClock,
) -> None:
    app = await make_client(first_party=True)
    tokens = await login(app, await make_user())
    token = tokens["refresh_token"]
    for days in (6, 6, 6, 6, 5.9):  # never idle, and 29.9 days in: still fine
        clock.advance(days=days)
        resp = await refresh(app, token)
        assert resp.status == 200
        token = (await resp.json())["refresh_token"]
    clock.advance(days=0.1)  # 30 days: ISSUER_REFRESH_TOKEN_TTL's default
    resp = await refresh(app, token)
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"


async def test_a_disabled_user_cannot_refresh(
    admin: TestClient[Any, Any],
    admin_token: str,
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
) -> None:
    app = await make_client(first_party=True)
    user = await make_user()
    tokens = await login(app, user)
    resp = await admin.patch(
        f"/admin/users/{user.user_id}", json={"disabled": True}, headers=bearer(admin_token)
    )
    assert resp.status == 200
    resp = await refresh(app, tokens["refresh_token"])
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"


async def test_unknown_refresh_token_is_invalid_grant(
    make_client: MakeClient, refresh: Refresh
) -> None:
    app = await make_client(first_party=True)
    resp = await refresh(app, "not-a-token")
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"


async def test_a_reuse_deny_lists_the_refreshed_access_token_until_its_own_exp(
    client: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
    clock: SettableClock,
) -> None:
    """The jti a refresh records (before it signs) carries the token's own exp: a feed
    entry that ended earlier would let offline verifiers accept the token again."""
    app = await make_client(first_party=True)
    user = await make_user()
    first = await login(app, user)
    clock.advance(7.6)  # not a whole second: a rounding that differs would show
    resp = await refresh(app, first["refresh_token"])
    assert resp.status == 200
    claims = jwt.decode((await resp.json())["access_token"], options={"verify_signature": False})

    assert (await refresh(app, first["refresh_token"])).status == 400  # a reuse
    resp = await client.get("/revocations", headers=app.basic())
    assert resp.status == 200
    items = (await resp.json())["items"]
    assert {"jti": claims["jti"], "exp": claims["exp"]} in items
