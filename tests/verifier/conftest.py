"""Fixtures for the verifier tests: a real RSA key, a settable clock, a real JWKS server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from issuer.jose.keys import GeneratedKey, generate_key
from issuer.jose.tokens import AccessTokenRequest, Signer, access_token_claims
from issuer.verifier import JWKSClient, ManualClock, Verifier

ISSUER = "https://issuer.example"
AUDIENCE = "https://api.example"
NOW = 1_900_000_000
CLIENT_ID = "resource:api"  # a ':' must be form-encoded before Basic (RFC 6749 §2.3.1)
CLIENT_SECRET = "s3cret pass"


@pytest.fixture(scope="session")
def rsa_key() -> GeneratedKey:
    return generate_key("RS256")


@pytest.fixture(scope="session")
def next_rsa_key() -> GeneratedKey:
    return generate_key("RS256")


def mint(key: GeneratedKey, *, now: int = NOW, ttl: int = 600, **claims: Any) -> str:
    """A token as the issuer signs it, with ``claims`` changed."""
    request = AccessTokenRequest(
        issuer=ISSUER,
        subject="user-1",
        audience=AUDIENCE,
        client_id="client-1",
        scope="read write",
        now=now,
        ttl=ttl,
        roles=("user",),
    )
    body: dict[str, Any] = {**access_token_claims(request)}
    body.update(claims)
    return Signer(key.kid, key.alg, key.private_pem).sign(body)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(float(NOW))


@dataclass
class JWKSEndpoint:
    """A JWKS endpoint the way the issuer serves it: strong ETag, max-age, 304."""

    keys: list[dict[str, Any]]
    max_age: int = 300
    status: int = 200
    body: bytes | None = None  # garbage to answer instead of the JWKS
    gate: asyncio.Event | None = None  # when set, requests wait for it
    arrived: asyncio.Event | None = None  # set when a request arrives
    hits: int = 0
    not_modified: int = 0
    url: str = ""
    seen_if_none_match: list[str | None] = field(default_factory=list)

    def document(self) -> bytes:
        return json.dumps({"keys": self.keys}).encode()

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        self.seen_if_none_match.append(request.headers.get("If-None-Match"))
        if self.arrived is not None:
            self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.status != 200:
            return web.Response(status=self.status, text="unavailable")
        body = self.body if self.body is not None else self.document()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Cache-Control": f"public, max-age={self.max_age}"}
        if request.headers.get("If-None-Match") == etag:
            self.not_modified += 1
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers, content_type="application/jwk-set+json")


@pytest.fixture
async def jwks_endpoint(aiohttp_server: AiohttpServer, rsa_key: GeneratedKey) -> JWKSEndpoint:
    endpoint = JWKSEndpoint(keys=[rsa_key.public_jwk])
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", endpoint.handle)
    server = await aiohttp_server(app)
    endpoint.url = str(server.make_url("/.well-known/jwks.json"))
    return endpoint


@pytest.fixture
async def jwks_client(jwks_endpoint: JWKSEndpoint, clock: ManualClock) -> AsyncIterator[JWKSClient]:
    async with JWKSClient(jwks_endpoint.url, clock=clock, background_refresh=False) as client:
        yield client


@pytest.fixture
def verifier(jwks_client: JWKSClient, clock: ManualClock) -> Verifier:
    return Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks_client, clock=clock)


@dataclass
class FeedEndpoint:
    """The issuer's GET /revocations?after=CURSOR, two items per page."""

    items: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    body: bytes | None = None
    afters: list[str | None] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(b"resource%3Aapi:s3cret+pass").decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"error": "invalid_client"}, status=401)
        after = request.query.get("after")
        self.afters.append(after)
        if self.status != 200:
            return web.Response(status=self.status)
        if self.body is not None:
            return web.Response(body=self.body, content_type="application/json")
        start = int(after) if after is not None else 0
        page = self.items[start : start + 2]
        return web.json_response({"items": page, "next": str(start + len(page))})


@pytest.fixture
async def feed_endpoint(aiohttp_server: AiohttpServer) -> FeedEndpoint:
    endpoint = FeedEndpoint()
    app = web.Application()
    app.router.add_get("/revocations", endpoint.handle)
    server = await aiohttp_server(app)
    endpoint.url = str(server.make_url("/revocations"))
    return endpoint
