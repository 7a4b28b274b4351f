"""The aiohttp adapter: RFC 6750 §3 challenges, public routes, scope and role guards."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request
from pytest_aiohttp import AiohttpClient

from issuer.jose.keys import GeneratedKey
from issuer.verifier import JWKSClient, ManualClock, RevocationFeed, Verifier
from issuer.verifier.middleware import claims_of, public, require_role, require_scope, setup

from .conftest import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    ISSUER,
    NOW,
    FeedEndpoint,
    JWKSEndpoint,
    mint,
)


@public
async def handle_health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@public
class StatusView(web.View):
    async def get(self) -> web.Response:
        return web.json_response({"status": "up"})


async def handle_me(request: web.Request) -> web.Response:
    return web.json_response({"sub": claims_of(request)["sub"]})


@require_scope("write")
async def handle_write(request: web.Request) -> web.Response:
    return web.json_response({"written": True})


@require_role("admin")
async def handle_admin(request: web.Request) -> web.Response:
    return web.json_response({"admin": claims_of(request)["sub"]})


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, verifier: Verifier
) -> TestClient[web.Request, web.Application]:
    app = web.Application()
    setup(app, verifier, realm="api")
    app.router.add_get("/healthz", handle_health)
    app.router.add_view("/status", StatusView)
    app.router.add_get("/me", handle_me)
    app.router.add_post("/things", handle_write)
    app.router.add_get("/admin", handle_admin)
    return await aiohttp_client(app)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_valid_token_reaches_the_handler_with_its_claims(
    client: TestClient[web.Request, web.Application], rsa_key: GeneratedKey
) -> None:
    resp = await client.get("/me", headers=bearer(mint(rsa_key, sub="alice")))
    assert resp.status == 200
    assert await resp.json() == {"sub": "alice"}


async def test_the_scheme_name_is_case_insensitive(
    client: TestClient[web.Request, web.Application], rsa_key: GeneratedKey
) -> None:
    resp = await client.get("/me", headers={"Authorization": f"bearer {mint(rsa_key)}"})
    assert resp.status == 200


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Basic dXNlcjpwYXNz"}], ids=["none", "basic"]
)
async def test_no_bearer_token_is_a_bare_challenge(
    client: TestClient[web.Request, web.Application], headers: dict[str, str]
) -> None:
    resp = await client.get("/me", headers=headers)
    assert resp.status == 401
    # RFC 6750 §3.1: no error code when the request had no token at all.
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert "error" not in await resp.json()


async def test_an_invalid_token_is_invalid_token(
    client: TestClient[web.Request, web.Application],
) -> None:
    resp = await client.get("/me", headers=bearer("not.a.token"))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["error"] == "invalid_token"
    assert body["error_description"]


async def test_an_expired_token_says_so(
    client: TestClient[web.Request, web.Application], rsa_key: GeneratedKey, clock: ManualClock
) -> None:
    token = mint(rsa_key)
    clock.advance(3600)
    resp = await client.get("/me", headers=bearer(token))
    assert resp.status == 401
    assert (await resp.json())["error_description"] == "The access token expired"


@pytest.mark.parametrize(
    "value", ["Bearer", "Bearer ", "Bearer a b"], ids=["no-token", "blank", "two-tokens"]
)
async def test_a_malformed_authorization_header_is_invalid_request(
    client: TestClient[web.Request, web.Application], value: str
) -> None:
    resp = await client.get("/me", headers={"Authorization": value})
    assert resp.status == 400
    assert 'error="invalid_request"' in resp.headers["WWW-Authenticate"]


async def test_two_authorization_headers_are_invalid_request(
    client: TestClient[web.Request, web.Application], rsa_key: GeneratedKey
) -> None:
    token = mint(rsa_key)
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", "Bearer other")]
    resp = await client.get("/me", headers=headers)
    assert resp.status == 400


@pytest.mark.parametrize("path", ["/healthz", "/status"])
async def test_public_routes_need_no_token(
    client: TestClient[web.Request, web.Application], path: str
) -> None:
    resp = await client.get(path)
    assert resp.status == 200


async def test_unknown_paths_are_404_not_401(
    client: TestClient[web.Request, web.Application],
) -> None:
    resp = await client.get("/nowhere")
    assert resp.status == 404


@pytest.mark.parametrize(("scope", "status"), [("read", 403), ("read write", 200)])
async def test_require_scope(
    client: TestClient[web.Request, web.Application],
    rsa_key: GeneratedKey,
    scope: str,
    status: int,
) -> None:
    resp = await client.post("/things", headers=bearer(mint(rsa_key, scope=scope)))
    assert resp.status == status
    if status == 403:
        challenge = resp.headers["WWW-Authenticate"]
        assert challenge == 'Bearer error="insufficient_scope", scope="write"'
        assert (await resp.json())["error"] == "insufficient_scope"


@pytest.mark.parametrize(
    ("roles", "status"), [(["user"], 403), (["user", "admin"], 200), (None, 403)]
)
async def test_require_role(
    client: TestClient[web.Request, web.Application],
    rsa_key: GeneratedKey,
    roles: list[str] | None,
    status: int,
) -> None:
    resp = await client.get("/admin", headers=bearer(mint(rsa_key, roles=roles)))
    assert resp.status == status


def test_claims_of_without_the_middleware_is_a_clear_error() -> None:
    request = make_mocked_request("GET", "/me")
    with pytest.raises(LookupError, match="middleware"):
        claims_of(request)


async def test_setup_runs_the_jwks_client_with_the_app(
    aiohttp_client: AiohttpClient,
    jwks_endpoint: JWKSEndpoint,
    rsa_key: GeneratedKey,
    clock: ManualClock,
) -> None:
    # Built before any event loop runs, as a resource service's app factory would.
    jwks = JWKSClient(jwks_endpoint.url, clock=clock, background_refresh=False)
    app = web.Application()
    setup(app, Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks, clock=clock))
    app.router.add_get("/me", handle_me)
    client = await aiohttp_client(app)
    assert jwks_endpoint.hits == 1  # fetched at start-up, not on the first request
    resp = await client.get("/me", headers=bearer(mint(rsa_key)))
    assert resp.status == 200
    await client.close()
    assert jwks._session is None


async def test_setup_runs_the_revocation_feed_with_the_app(
    aiohttp_client: AiohttpClient,
    jwks_client: JWKSClient,
    feed_endpoint: FeedEndpoint,
    rsa_key: GeneratedKey,
    clock: ManualClock,
) -> None:
    feed_endpoint.items = [{"jti": "revoked", "exp": NOW + 600}]
    feed = RevocationFeed(feed_endpoint.url, CLIENT_ID, CLIENT_SECRET, clock=clock)
    verifier = Verifier(
        issuer=ISSUER, audience=AUDIENCE, jwks=jwks_client, clock=clock, revocations=feed
    )
    app = web.Application()
    setup(app, verifier)
    app.router.add_get("/me", handle_me)
    client = await aiohttp_client(app)
    resp = await client.get("/me", headers=bearer(mint(rsa_key, jti="revoked")))
    assert resp.status == 401
    assert (await resp.json())["error_description"] == "The access token was revoked"
    await client.close()
    assert feed._poller is None
