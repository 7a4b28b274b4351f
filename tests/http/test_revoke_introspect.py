"""POST /revoke (RFC 7009) and POST /introspect (RFC 7662)."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp.test_utils import TestClient

from issuer.clock import SettableClock
from issuer.jose.keys import generate_key
from issuer.jose.tokens import Signer
from tests.conftest import GetToken, Login, MakeClient, MakeUser, Refresh, RegisteredClient


async def introspect(
    client: TestClient[Any, Any], caller: RegisteredClient, token: str
) -> dict[str, Any]:
    resp = await client.post("/introspect", data={"token": token}, headers=caller.basic())
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = await resp.json()
    return body


async def test_introspecting_an_active_access_token(
    client: TestClient[Any, Any], make_client: MakeClient, make_user: MakeUser, login: Login
) -> None:
    app = await make_client(first_party=True)
    resource = await make_client()
    user = await make_user(roles=("reader",))
    tokens = await login(app, user)
    body = await introspect(client, resource, tokens["access_token"])
    assert body["active"] is True
    assert body["token_type"] == "Bearer"
    assert body["sub"] == user.user_id
    assert body["client_id"] == app.client_id
    assert body["roles"] == ["reader"]
    assert {"exp", "iat", "jti", "iss", "aud", "scope"} <= set(body)


async def test_malformed_tokens_are_inactive(
    client: TestClient[Any, Any], make_client: MakeClient
) -> None:
    resource = await make_client()
    for token in ("garbage", "a.b.c", "x" * 10000, "é.é.é"):
        assert (await introspect(client, resource, token)) == {"active": False}
    resp = await client.post("/introspect", data={"token": ""}, headers=resource.basic())
    assert resp.status == 400  # RFC 6749 §3.1: an empty value counts as missing


async def test_expired_and_foreign_tokens_are_inactive(
    client: TestClient[Any, Any],
    make_client: MakeClient,
    get_token: GetToken,
    clock: SettableClock,
) -> None:
    resource = await make_client()
    token = await get_token("read")
    header, payload, _ = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    # The same claims and kid, signed by a key that is not in the JWKS.
    key = generate_key("RS256", 2048)
    forged = Signer(
        json.loads(base64.urlsafe_b64decode(header + "=="))["kid"], "RS256", key.private_pem
    )
    assert (await introspect(client, resource, forged.sign(claims))) == {"active": False}
    assert (await introspect(client, resource, token))["active"] is True
    clock.advance(600 + 61)  # past exp and the leeway
    assert (await introspect(client, resource, token)) == {"active": False}


async def test_introspection_needs_an_authenticated_confidential_client(
    client: TestClient[Any, Any], make_client: MakeClient, get_token: GetToken
) -> None:
    token = await get_token()
    resp = await client.post("/introspect", data={"token": token})
    assert resp.status == 401
    public = await make_client(public=True, first_party=True)
    resp = await client.post("/introspect", data={"token": token, "client_id": public.client_id})
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid_client"


async def test_refresh_tokens_are_active_while_usable_and_only_to_their_client(
    client: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
) -> None:
    app = await make_client(scopes="read write", first_party=True)
    user = await make_user()
    tokens = await login(app, user)
    body = await introspect(client, app, tokens["refresh_token"])
    assert body["active"] is True
    assert body["token_type"] == "refresh_token"
    assert body["sub"] == user.user_id
    assert body["scope"] == "read write"
    other = await make_client()
    assert (await introspect(client, other, tokens["refresh_token"])) == {"active": False}
    await refresh(app, tokens["refresh_token"])
    assert (await introspect(client, app, tokens["refresh_token"])) == {"active": False}


async def test_revoking_an_access_token_deny_lists_its_jti(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
) -> None:
    app = await make_client(scopes="read issuer:admin", first_party=True)
    tokens = await login(app, await make_user(roles=("issuer:admin",)))
    access = tokens["access_token"]
    # A wrong hint does not stop the search (RFC 7009 §2.1).
    resp = await client.post(
        "/revoke",
        data={"token": access, "token_type_hint": "refresh_token"},
        headers=app.basic(),
    )
    assert resp.status == 200
    assert (await introspect(client, app, access)) == {"active": False}
    resp = await admin.get("/admin/keys", headers={"Authorization": f"Bearer {access}"})
    assert resp.status == 401
    # Only the access token: the session goes on (RFC 7009 §2.1 leaves this to us).
    assert (await refresh(app, tokens["refresh_token"])).status == 200


async def test_revoking_a_refresh_token_revokes_its_family(
    client: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
) -> None:
    app = await make_client(first_party=True, public=True)
    tokens = await login(app, await make_user())
    resp = await client.post(
        "/revoke",
        data={"token": tokens["refresh_token"], "client_id": app.client_id},
    )
    assert resp.status == 200
    assert (await refresh(app, tokens["refresh_token"])).status == 400
    confidential = await make_client()
    assert (await introspect(client, confidential, tokens["access_token"])) == {"active": False}


async def test_unknown_and_repeated_revocations_answer_200_and_known_ones_take_effect(
    client: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
) -> None:
    app = await make_client(first_party=True)
    user = await make_user()
    # A wrong or unknown hint only changes the order of the look-ups (RFC 7009 §2.1).
    for hint in (None, "access_token", "refresh_token", "bogus"):
        tokens = await login(app, user)
        access, refresh_token = tokens["access_token"], tokens["refresh_token"]
        for token in ("no-such-token", "a.b.c", refresh_token, access, refresh_token, access):
            data = {"token": token} | ({} if hint is None else {"token_type_hint": hint})
            resp = await client.post("/revoke", data=data, headers=app.basic())
            assert resp.status == 200, await resp.text()
            assert await resp.read() == b""
        assert (await introspect(client, app, access)) == {"active": False}, hint
        assert (await introspect(client, app, refresh_token)) == {"active": False}, hint
        resp = await refresh(app, refresh_token)
        assert resp.status == 400, hint
        assert (await resp.json())["error"] == "invalid_grant"


async def test_a_client_cannot_revoke_another_clients_tokens(
    client: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
) -> None:
    app = await make_client(first_party=True)
    other = await make_client()
    tokens = await login(app, await make_user())
    for token in (tokens["access_token"], tokens["refresh_token"]):
        resp = await client.post("/revoke", data={"token": token}, headers=other.basic())
        assert resp.status == 400
        assert (await resp.json())["error"] == "unauthorized_client"
    assert (await introspect(client, other, tokens["access_token"]))["active"] is True
    assert (await refresh(app, tokens["refresh_token"])).status == 200


async def test_revoke_needs_client_authentication(
    client: TestClient[Any, Any], make_client: MakeClient, get_token: GetToken
) -> None:
    token = await get_token()
    resp = await client.post("/revoke", data={"token": token})
    assert resp.status == 401
    reg = await make_client()
    resp = await client.post(
        "/revoke", data={"token": token}, headers={"Authorization": "Basic " + "x" * 8}
    )
    assert resp.status == 401
    resp = await client.post("/revoke", data={"token": token, "client_id": reg.client_id})
    assert resp.status == 401  # a confidential client must send its secret


async def test_discovery_lists_the_new_grants_and_endpoints(client: TestClient[Any, Any]) -> None:
    doc = await (await client.get("/.well-known/oauth-authorization-server")).json()
    assert {"password", "refresh_token", "client_credentials"} <= set(doc["grant_types_supported"])
    assert "none" in doc["token_endpoint_auth_methods_supported"]
    assert doc["revocation_endpoint"] == "http://issuer.test/revoke"
    assert doc["introspection_endpoint"] == "http://issuer.test/introspect"
