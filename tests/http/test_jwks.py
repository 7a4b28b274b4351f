"""GET /.well-known/jwks.json (RFC 7517 §5) and discovery (RFC 8414 §3)."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from issuer.clock import SettableClock
from issuer.context import Context
from issuer.jose.keys import PRIVATE_MEMBERS
from tests.conftest import GetToken


@pytest.fixture(params=["RS256", "PS256", "ES256", "EdDSA"])
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"signing_alg": request.param, "jwks_max_age": 300, "key_publish_lead": 600}


async def test_jwks_has_public_keys_only_and_caching_headers(
    client: TestClient[Any, Any], ctx: Context
) -> None:
    resp = await client.get("/.well-known/jwks.json")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/jwk-set+json"
    body = await resp.json(content_type=None)
    assert len(body["keys"]) == 2
    for key in body["keys"]:
        assert not PRIVATE_MEMBERS & set(key), f"private member published: {key.keys()}"
        assert key["use"] == "sig"
        assert key["alg"] == ctx.settings.signing_alg
    etag = resp.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag), "a strong ETag"
    assert resp.headers["Cache-Control"] == "public, max-age=300"


async def test_if_none_match_gets_304_and_changes_after_rotation(
    client: TestClient[Any, Any], ctx: Context
) -> None:
    first = await client.get("/.well-known/jwks.json")
    etag = first.headers["ETag"]
    again = await client.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.headers["ETag"] == etag
    assert "max-age" in again.headers["Cache-Control"]
    assert await again.read() == b""
    weak = await client.get("/.well-known/jwks.json", headers={"If-None-Match": f"W/{etag}"})
    assert weak.status == 304
    await ctx.keys.rotate(immediate=False, actor="test")
    changed = await client.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
    assert changed.status == 200
    assert changed.headers["ETag"] != etag
    assert len((await changed.json(content_type=None))["keys"]) == 3


async def test_max_age_never_runs_past_the_next_state_change(
    client: TestClient[Any, Any], ctx: Context, clock: SettableClock
) -> None:
    pending = next(v for v in ctx.keyring.views() if v.state == "pending")
    clock.set(pending.record.activates_at - timedelta(seconds=42))
    resp = await client.get("/.well-known/jwks.json")
    assert resp.headers["Cache-Control"] == "public, max-age=42"


async def test_served_from_prepared_bytes(client: TestClient[Any, Any], ctx: Context) -> None:
    body = ctx.keyring.snapshot().jwks.body
    for _ in range(3):
        assert await (await client.get("/.well-known/jwks.json")).read() == body
    assert ctx.keyring.snapshot().jwks.body is body, "not re-serialized per request"


async def test_pyjwt_jwks_client_verifies_a_live_token(
    app: web.Application, client: TestClient[Any, Any], get_token: GetToken, ctx: Context
) -> None:
    # An independent verifier, fetching the JWKS over real HTTP as a resource service would.
    url = str(client.make_url("/.well-known/jwks.json"))
    token = await get_token("read")
    alg = ctx.settings.signing_alg
    jwks_client = jwt.PyJWKClient(url)
    key = await asyncio.to_thread(jwks_client.get_signing_key_from_jwt, token)
    claims = jwt.decode(
        token, key.key, algorithms=[alg], audience="test-api", issuer="http://issuer.test"
    )
    assert claims["scope"] == "read"


async def test_discovery_documents_say_only_what_is_true(client: TestClient[Any, Any]) -> None:
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        resp = await client.get(path)
        assert resp.status == 200
        doc = await resp.json()
        assert doc["issuer"] == "http://issuer.test"
        assert doc["jwks_uri"] == "http://issuer.test/.well-known/jwks.json"
        assert doc["token_endpoint"] == "http://issuer.test/token"
        assert "client_credentials" in doc["grant_types_supported"]
        assert "implicit" not in doc["grant_types_supported"]
        assert {"client_secret_basic", "client_secret_post"} <= set(
            doc["token_endpoint_auth_methods_supported"]
        )
        assert doc["response_types_supported"] == ["code"]
