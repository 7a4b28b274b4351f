"""GET /revocations: the deny list and user cut-offs as a feed for offline verifiers."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from issuer.clock import SettableClock
from issuer.context import Context
from issuer.services import revocation
from issuer.services.users import user_store
from tests.conftest import Login, MakeClient, MakeUser, RegisteredClient


async def feed(
    client: TestClient[Any, Any], reader: RegisteredClient, after: str | None = None
) -> dict[str, Any]:
    params = {} if after is None else {"after": after}
    resp = await client.get("/revocations", params=params, headers=reader.basic())
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = await resp.json()
    assert isinstance(body["next"], str)
    return body


async def test_revoked_tokens_and_users_appear_and_later_leave(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    admin_token: str,
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    clock: SettableClock,
) -> None:
    reader = await make_client()
    app = await make_client(first_party=True)
    empty = await feed(client, reader)
    assert empty["items"] == []

    tokens = await login(app, await make_user())
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    resp = await client.post(
        "/logout", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert resp.status == 204
    page = await feed(client, reader, empty["next"])
    assert page["items"] == [{"jti": claims["jti"], "exp": claims["exp"]}]

    clock.advance(5)
    victim = await make_user()
    stolen = await login(app, victim)
    stolen_claims = jwt.decode(stolen["access_token"], options={"verify_signature": False})
    resp = await admin.post(
        f"/admin/users/{victim.user_id}/revoke-tokens",
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert resp.status == 200
    later = await feed(client, reader, page["next"])
    assert len(later["items"]) == 1
    cut = later["items"][0]
    assert cut["sub"] == victim.user_id
    assert cut["revoked_before"] >= stolen_claims["iat"]  # covered: iat <= revoked_before
    # Nothing new after the last cursor; from the beginning, both live entries.
    assert (await feed(client, reader, later["next"]))["items"] == []
    assert len((await feed(client, reader))["items"]) == 2
    # An empty after is no after: a first poll of `?after=$NEXT` with NEXT still empty.
    assert await feed(client, reader, "") == await feed(client, reader)

    # The deny entry leaves once its token is past exp (+ leeway); the user cut-off
    # once every token it covers has expired (revoked_before + TTL + leeway).
    clock.advance(600 + 60 - 5 + 0.5)
    assert (await feed(client, reader))["items"] == [cut]
    clock.advance(5)
    assert (await feed(client, reader))["items"] == []


async def test_a_malformed_cursor_is_invalid_request(
    client: TestClient[Any, Any], make_client: MakeClient
) -> None:
    reader = await make_client()
    for after in ("abc", "-1", "1.5", " ", "99999999999999999999", "\uff11"):
        resp = await client.get("/revocations", params={"after": after}, headers=reader.basic())
        assert resp.status == 400, after
        assert (await resp.json())["error"] == "invalid_request"


async def test_the_feed_needs_client_authentication(
    client: TestClient[Any, Any], make_client: MakeClient
) -> None:
    resp = await client.get("/revocations")
    assert resp.status == 401
    public = await make_client(public=True, first_party=True)
    resp = await client.get("/revocations", params={"client_id": public.client_id})
    assert resp.status == 401


async def test_pages_follow_the_cursor_without_gaps(
    client: TestClient[Any, Any],
    make_client: MakeClient,
    ctx: Context,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(revocation, "FEED_PAGE", 3)
    reader = await make_client()
    store = user_store(ctx.store)
    exp = ctx.clock.now().replace(microsecond=0)
    async with store.transaction() as tx:
        for i in range(7):
            await tx.add_revocation("jti", f"jti-{i}", exp, exp.replace(year=exp.year + 1))
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = await feed(client, reader, cursor)
        seen += [item["jti"] for item in page["items"]]
        cursor = page["next"]
        if not page["items"]:
            break
    assert seen == [f"jti-{i}" for i in range(7)]


async def test_a_revoked_key_appears_on_the_feed_for_a_week(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    ctx: Context,
    admin_token: str,
    make_client: MakeClient,
    clock: SettableClock,
) -> None:
    reader = await make_client()
    start = await feed(client, reader)
    signer = next(v for v in ctx.keyring.views() if v.state == "active")
    resp = await admin.post(
        f"/admin/keys/{signer.kid}/revoke", headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert resp.status == 200
    revoked_at = int(clock.now().timestamp())
    page = await feed(client, reader, start["next"])
    assert page["items"] == [{"kid": signer.kid, "revoked_at": revoked_at}]
    # A second revoke of the same key adds nothing.
    await ctx.keys.revoke(signer.kid, actor="test")
    assert (await feed(client, reader, page["next"]))["items"] == []
    clock.advance(7 * 24 * 3600 - 1)
    assert (await feed(client, reader))["items"] == [{"kid": signer.kid, "revoked_at": revoked_at}]
    clock.advance(1)
    assert (await feed(client, reader))["items"] == []
