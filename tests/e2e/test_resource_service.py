"""The real issuer and the example resource service, over real HTTP, side by side."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer, unused_port

from examples.resource_service import create_app as create_resource_app
from issuer.app import create_app
from issuer.appkeys import context_key
from issuer.clock import SystemClock
from issuer.config import Settings
from issuer.services.accounts import create_client


@pytest.fixture
async def issuer_server(settings: Settings, aiohttp_server: Any) -> TestServer:
    # iss must be the URL the issuer really listens on, so pick the port first.
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(replace(settings, issuer=base), clock=SystemClock())
    server: TestServer = await aiohttp_server(app, port=port)
    return server


async def test_protected_route_with_real_tokens(
    issuer_server: TestServer, aiohttp_client: Any
) -> None:
    ctx = issuer_server.app[context_key]
    base = str(issuer_server.make_url("")).rstrip("/")
    resource: TestClient[Any, Any] = await aiohttp_client(
        create_resource_app(base, ctx.settings.audience)
    )
    async with ClientSession() as http:

        async def token(scope: str) -> str:
            new = await create_client(
                ctx.store, ctx.clock, name=f"svc-{scope}", scopes=[scope], actor="test"
            )
            assert new.client_secret is not None
            resp = await http.post(
                f"{base}/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": new.client.client_id,
                    "client_secret": new.client_secret,
                },
            )
            assert resp.status == 200
            body: dict[str, Any] = await resp.json()
            return str(body["access_token"])

        good = await token("invoices:read")
        resp = await resource.get("/invoices", headers={"Authorization": f"Bearer {good}"})
        assert resp.status == 200
        assert (await resp.json())["invoices"] == []

        resp = await resource.get("/invoices")
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")

        other = await token("reports:read")
        resp = await resource.get("/invoices", headers={"Authorization": f"Bearer {other}"})
        assert resp.status == 403
        assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]

        tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
        resp = await resource.get("/invoices", headers={"Authorization": f"Bearer {tampered}"})
        assert resp.status == 401
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]

        resp = await resource.get("/healthz")
        assert resp.status == 200
