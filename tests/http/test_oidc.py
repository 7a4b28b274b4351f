"""OpenID Connect: the ID token (checked with PyJWT against the JWKS), UserInfo,
discovery, RP-initiated logout with an ID token hint, and CORS for single-page apps."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from issuer.clock import SettableClock
from tests.conftest import MakeClient, MakeUser, RegisteredClient, RegisteredUser
from tests.http.browser import REDIRECT, Pkce, authorize_query, exchange, query_of, sign_in

ISS = "http://issuer.test"
SPA = "https://spa.example"


@pytest.fixture
async def rp(make_client: MakeClient) -> RegisteredClient:
    return await make_client(
        scopes="openid read",
        redirect_uris=(REDIRECT,),
        post_logout_redirect_uris=("https://app.example/bye",),
        first_party=True,
    )


@pytest.fixture
async def user(make_user: MakeUser) -> RegisteredUser:
    return await make_user(roles=("reader", "editor"))


async def tokens_for(
    client: TestClient[Any, Any],
    rp: RegisteredClient,
    user: RegisteredUser,
    **extra: str,
) -> dict[str, Any]:
    pkce = Pkce.make()
    params = authorize_query(rp.client_id, pkce, **extra)
    code = query_of(await sign_in(client, params, user.username, user.password))["code"]
    resp = await exchange(
        client, code, client_id=rp.client_id, verifier=pkce.verifier, headers=rp.basic()
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def verified_id_token(client: TestClient[Any, Any], token: str, audience: str) -> Any:
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    return header, jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=audience,
        issuer=ISS,
        leeway=300,  # tests move the issuer's clock ahead of PyJWT's
        options={"require": ["iss", "sub", "aud", "exp", "iat", "auth_time"]},
    )


async def test_the_id_token_carries_what_openid_connect_requires(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser, clock: SettableClock
) -> None:
    signed_in_at = int(clock.now().timestamp())
    tokens = await tokens_for(client, rp, user, nonce="n-0S6_WzA2Mj")
    header, claims = await verified_id_token(client, tokens["id_token"], rp.client_id)
    assert header["typ"] == "JWT"
    assert header["alg"] == "RS256"
    assert claims["sub"] == user.user_id
    assert claims["aud"] == rp.client_id
    assert claims["azp"] == rp.client_id
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["auth_time"] == signed_in_at
    assert claims["exp"] > claims["iat"]
    # at_hash: the left half of SHA-256 of the access token (OIDC Core §3.1.3.6).
    digest = hashlib.sha256(tokens["access_token"].encode()).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


async def test_without_openid_there_is_no_id_token_and_no_nonce_claim_without_nonce(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser
) -> None:
    plain = await tokens_for(client, rp, user, scope="read")
    assert "id_token" not in plain
    with_openid = await tokens_for(client, rp, user, prompt="login")
    _, claims = await verified_id_token(client, with_openid["id_token"], rp.client_id)
    assert "nonce" not in claims


async def test_an_id_token_is_not_an_access_token(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser
) -> None:
    tokens = await tokens_for(client, rp, user)
    resp = await client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['id_token']}"})
    assert resp.status == 401


async def test_userinfo_names_the_user(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser
) -> None:
    tokens = await tokens_for(client, rp, user)
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    for resp in (
        await client.get("/userinfo", headers=auth),
        await client.post("/userinfo", headers=auth),
    ):
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        assert await resp.json() == {
            "sub": user.user_id,
            "preferred_username": user.username,
            "roles": ["reader", "editor"],
        }
    missing = await client.get("/userinfo")
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="issuer"'


async def test_userinfo_needs_the_openid_scope(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser
) -> None:
    tokens = await tokens_for(client, rp, user, scope="read")
    resp = await client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert resp.status == 403
    assert (await resp.json())["error"] == "insufficient_scope"


async def test_discovery_lists_exactly_what_is_supported(client: TestClient[Any, Any]) -> None:
    doc = await (await client.get("/.well-known/openid-configuration")).json()
    assert doc["issuer"] == ISS
    assert doc["authorization_endpoint"] == f"{ISS}/authorize"
    assert doc["userinfo_endpoint"] == f"{ISS}/userinfo"
    assert doc["end_session_endpoint"] == f"{ISS}/end_session"
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["subject_types_supported"] == ["public"]
    assert doc["scopes_supported"] == ["openid"]
    assert {"sub", "preferred_username", "roles", "nonce", "at_hash"} - {"at_hash"} <= set(
        doc["claims_supported"]
    )
    assert "authorization_code" in doc["grant_types_supported"]
    assert "implicit" not in doc["grant_types_supported"]
    assert "none" in doc["token_endpoint_auth_methods_supported"]


async def test_logout_with_an_expired_id_token_hint_finds_the_client(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser, clock: SettableClock
) -> None:
    tokens = await tokens_for(client, rp, user)
    clock.advance(3600)  # the hint has expired: still accepted (RP-Initiated Logout §2)
    ask = await client.get(
        "/end_session",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://app.example/bye",
        },
    )
    assert ask.status == 200, await ask.text()
    assert rp.client_id in await ask.text()
    forged = tokens["id_token"][:-4] + (
        "AAAA" if not tokens["id_token"].endswith("AAAA") else "BBBB"
    )
    bad = await client.get("/end_session", params={"id_token_hint": forged})
    assert bad.status == 400


# -- CORS ---------------------------------------------------------------------------


@pytest.fixture
async def spa(make_client: MakeClient) -> RegisteredClient:
    return await make_client(
        scopes="openid read",
        redirect_uris=(f"{SPA}/callback",),
        first_party=True,
        public=True,
    )


async def test_a_preflight_from_a_registered_origin_is_allowed(
    client: TestClient[Any, Any], spa: RegisteredClient
) -> None:
    for path in ("/token", "/userinfo", "/revoke"):
        resp = await client.options(
            path,
            headers={
                "Origin": SPA,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert resp.status == 204, path
        assert resp.headers["Access-Control-Allow-Origin"] == SPA
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        assert "Access-Control-Allow-Credentials" not in resp.headers
        assert resp.headers["Vary"] == "Origin"


async def test_a_preflight_from_another_origin_is_refused(
    client: TestClient[Any, Any], spa: RegisteredClient
) -> None:
    for origin in ("https://evil.example", SPA + ":8443", "http://spa.example", "null"):
        resp = await client.options(
            "/token", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
        )
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_token_responses_are_readable_only_from_the_clients_own_origins(
    client: TestClient[Any, Any], spa: RegisteredClient, make_client: MakeClient
) -> None:
    other = await make_client(
        scopes="read", redirect_uris=("https://other.example/cb",), public=True
    )
    data = {
        "grant_type": "authorization_code",
        "code": "nope",
        "client_id": spa.client_id,
        "redirect_uri": f"{SPA}/callback",
        "code_verifier": "x" * 43,
    }
    own = await client.post("/token", data=data, headers={"Origin": SPA})
    assert own.status == 400  # a bad code, readable by the app so it can say so
    assert own.headers["Access-Control-Allow-Origin"] == SPA
    # The other client's registered origin may not read this client's responses.
    foreign = await client.post("/token", data=data, headers={"Origin": "https://other.example"})
    assert "Access-Control-Allow-Origin" not in foreign.headers
    del other


async def test_web_origins_can_be_set_explicitly(
    client: TestClient[Any, Any], make_client: MakeClient
) -> None:
    await make_client(
        scopes="read",
        redirect_uris=("https://app.example/cb",),
        web_origins=("https://shell.example",),
        public=True,
    )
    derived = await client.options("/token", headers={"Origin": "https://app.example"})
    assert derived.status == 403
    explicit = await client.options("/token", headers={"Origin": "https://shell.example"})
    assert explicit.status == 204


async def test_requests_without_origin_get_no_cors_headers(
    client: TestClient[Any, Any], spa: RegisteredClient
) -> None:
    resp = await client.post("/token", data={"grant_type": "client_credentials"})
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_a_silent_reauthorization_keeps_the_original_auth_time(
    client: TestClient[Any, Any], rp: RegisteredClient, user: RegisteredUser, clock: SettableClock
) -> None:
    first = await tokens_for(client, rp, user)
    _, signed_in = await verified_id_token(client, first["id_token"], rp.client_id)
    clock.advance(120)
    pkce = Pkce.make()
    resp = await client.get(
        "/authorize",
        params=authorize_query(rp.client_id, pkce, prompt="none"),
        allow_redirects=False,
    )
    code = query_of(resp.headers["Location"])["code"]
    again = await exchange(
        client, code, client_id=rp.client_id, verifier=pkce.verifier, headers=rp.basic()
    )
    _, claims = await verified_id_token(client, (await again.json())["id_token"], rp.client_id)
    assert claims["auth_time"] == signed_in["auth_time"]
    assert claims["iat"] >= signed_in["iat"] + 120
