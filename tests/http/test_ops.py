"""/livez and /readyz on both listeners, healthy and with a failed database or no signer."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from issuer.app import create_app
from issuer.appkeys import admin_app_key
from issuer.clock import SettableClock
from issuer.config import Settings
from issuer.context import Context
from issuer.services import health
from tests.conftest import ClientFactory

Listeners = tuple[TestClient[Any, Any], TestClient[Any, Any]]


@pytest.fixture
def listeners(client: TestClient[Any, Any], admin: TestClient[Any, Any]) -> Listeners:
    return client, admin


async def test_live_and_ready_on_both_listeners_without_a_token(listeners: Listeners) -> None:
    for listener in listeners:
        for path in ("/livez", "/readyz"):
            resp = await listener.get(path)
            assert resp.status == 200, path
            assert (await resp.json())["status"] == "ok"
            assert resp.headers["Cache-Control"] == "no-store"


async def test_a_closed_database_is_not_ready_but_still_live(
    listeners: Listeners, ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ctx.store
    await store.close()

    async def already_closed() -> None:
        return None

    # The app's own shutdown closes the store again; once is enough.
    monkeypatch.setattr(store, "close", already_closed)
    for listener in listeners:
        resp = await listener.get("/readyz")
        assert resp.status == 503
        assert await resp.json() == {"status": "unavailable", "failed": ["database"]}
        assert (await listener.get("/livez")).status == 200


async def test_a_database_that_hangs_fails_readiness_within_the_timeout(
    listeners: Listeners, ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def hang() -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(health, "READY_TIMEOUT", 0.05)
    monkeypatch.setattr(ctx.store, "ping", hang)
    resp = await listeners[0].get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["failed"] == ["database"]


async def test_no_signing_key_is_not_ready(
    listeners: Listeners,
    settings: Settings,
    clock: SettableClock,
    aiohttp_client: ClientFactory,
) -> None:
    # A worker restarted with the wrong ISSUER_KEK: the keys are there, none opens.
    restarted = create_app(replace(settings, kek=(b"\x09" * 32,)), clock=clock)
    for listener in (
        await aiohttp_client(restarted),
        await aiohttp_client(restarted[admin_app_key]),
    ):
        resp = await listener.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["failed"] == ["signing_key"]
    for listener in listeners:
        assert (await listener.get("/readyz")).status == 200
