"""The real issuer and the example resource service, over real HTTP, side by side."""

from __future__ import annotations

import asyncio
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
from issuer.services.users import create_user


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


async def test_login_call_logout_and_the_feed_cuts_the_old_token_off(
    issuer_server: TestServer, aiohttp_client: Any
) -> None:
    ctx = issuer_server.app[context_key]
    base = str(issuer_server.make_url("")).rstrip("/")
    web_app = await create_client(
        ctx.store,
        ctx.clock,
        name="web",
        scopes=["invoices:read", "reports:read"],
        first_party=True,
        public=True,
        actor="test",
    )
    feed = await create_client(ctx.store, ctx.clock, name="invoices-api", scopes=[], actor="test")
    assert feed.client_secret is not None
    await create_user(
        ctx.store, ctx.clock, username="alice", password="correct horse battery", actor="test"
    )
    interval = 0.3
    resource: TestClient[Any, Any] = await aiohttp_client(
        create_resource_app(
            base,
            ctx.settings.audience,
            feed_client=(feed.client.client_id, feed.client_secret),
            feed_interval=interval,
        )
    )
    async with ClientSession() as http:

        async def login(scope: str) -> dict[str, Any]:
            resp = await http.post(
                f"{base}/token",
                data={
                    "grant_type": "password",
                    "client_id": web_app.client.client_id,
                    "username": "alice",
                    "password": "correct horse battery",
                    "scope": scope,
                },
            )
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
            return body

        session = await login("invoices:read")
        bearer = {"Authorization": f"Bearer {session['access_token']}"}
        resp = await resource.get("/invoices", headers=bearer)
        assert resp.status == 200
        assert (await resp.json())["for"] != "alice", "sub is the stable user id"

        assert (await resource.get("/invoices")).status == 401
        narrow = await login("reports:read")
        resp = await resource.get(
            "/invoices", headers={"Authorization": f"Bearer {narrow['access_token']}"}
        )
        assert resp.status == 403

        resp = await http.post(
            f"{base}/logout",
            data={"refresh_token": session["refresh_token"]},
            headers=bearer,
        )
        assert resp.status in (200, 204)

        # Within one poll interval (plus the request's own time) the token is refused.
        deadline = asyncio.get_running_loop().time() + interval * 2 + 1
        status = 200
        while asyncio.get_running_loop().time() < deadline:
            status = (await resource.get("/invoices", headers=bearer)).status
            if status == 401:
                break
            await asyncio.sleep(interval / 5)
        assert status == 401
        # Alice's other session was not logged out.
        resp = await resource.get(
            "/invoices", headers={"Authorization": f"Bearer {narrow['access_token']}"}
        )
        assert resp.status == 403
