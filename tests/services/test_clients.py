"""The per-worker client cache: a change is seen at once by the worker that made it, at
once elsewhere on PostgreSQL (NOTIFY), and within the key refresh interval everywhere."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from issuer.app import create_app
from issuer.clock import SettableClock
from issuer.config import Settings
from issuer.context import Context
from issuer.services.clients import ClientCache
from issuer.store.base import ClientRecord
from tests.conftest import ClientFactory, MakeClient, RegisteredClient, basic_auth

REFRESH_INTERVAL = 60


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"key_refresh_interval": REFRESH_INTERVAL}


async def token_status(
    worker: TestClient[Any, Any], registered: RegisteredClient, secret: str | None = None
) -> int:
    assert registered.client_secret is not None
    headers = basic_auth(registered.client_id, secret or registered.client_secret)
    resp = await worker.post("/token", data={"grant_type": "client_credentials"}, headers=headers)
    return resp.status


async def test_a_disabled_client_is_refused_at_once_here_and_within_the_interval_elsewhere(
    settings: Settings,
    clock: SettableClock,
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    admin_token: str,
    make_client: MakeClient,
    aiohttp_client: ClientFactory,
) -> None:
    # Two workers (or replicas) on one database, one clock.
    other = await aiohttp_client(create_app(settings, clock=clock))
    registered = await make_client(scopes="read")
    for worker in (client, other):
        assert await token_status(worker, registered) == 200  # each now holds the row
        # The secret is still checked against the cached row on every request.
        assert await token_status(worker, registered, "wrong-secret-" + "x" * 32) == 401

    path = f"/admin/clients/{registered.client_id}"
    bearer = {"Authorization": f"Bearer {admin_token}"}
    resp = await admin.patch(path, json={"disabled": True}, headers=bearer)
    assert resp.status == 200
    assert await token_status(client, registered) == 401  # the worker that disabled it

    if settings.database_url.startswith("postgresql"):
        # NOTIFY issuer_clients reaches the other worker's cache at once: no clock move.
        deadline = time.monotonic() + 5
        while await token_status(other, registered) != 401:
            assert time.monotonic() < deadline, "the notification did not arrive"
            await asyncio.sleep(0.05)
    clock.advance(REFRESH_INTERVAL + 1)
    assert await token_status(other, registered) == 401

    resp = await admin.patch(path, json={"disabled": False}, headers=bearer)
    assert resp.status == 200
    assert await token_status(client, registered) == 200


async def test_requests_that_find_an_entry_aged_out_share_one_read(
    ctx: Context, clock: SettableClock, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered = await make_client(scopes="read")
    reads: list[str] = []
    get_client = ctx.store.get_client

    async def counting(client_id: str) -> ClientRecord | None:
        reads.append(client_id)
        return await get_client(client_id)

    monkeypatch.setattr(ctx.store, "get_client", counting)
    cache = ClientCache(ctx.store, clock, REFRESH_INTERVAL)
    for _ in range(2):
        found = await asyncio.gather(*(cache.get_client(registered.client_id) for _ in range(32)))
        assert {c.client_id for c in found if c is not None} == {registered.client_id}
        assert len(found) == 32
        clock.advance(REFRESH_INTERVAL + 1)  # the entry ages out
    assert reads == [registered.client_id] * 2
