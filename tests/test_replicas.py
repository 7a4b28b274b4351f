"""Replicas on one database agree quickly on key changes, and never both create a successor."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from issuer.app import create_app
from issuer.appkeys import admin_app_key, context_key
from issuer.clock import SettableClock
from issuer.config import Settings
from issuer.context import Context
from issuer.keyring import KeyState
from issuer.lifecycle import start, stop
from issuer.services.accounts import create_client
from tests.conftest import STORES, ClientFactory, basic_auth, fresh_postgres_database

AGREE_WITHIN = 2.0


def replica_settings(database_url: str, tmp_path: Path, kek: bytes, **extra: Any) -> Settings:
    return Settings(
        database_url=database_url,
        issuer="http://issuer.test",
        audience="test-api",
        kek=(kek,),
        kek_file=tmp_path / "kek.json",
        workers=1,
        **extra,
    )


async def eventually(probe: Callable[[], Awaitable[bool]], within: float) -> float:
    """Seconds until ``probe()`` is true; fails after ``within`` seconds (real time)."""
    start = time.monotonic()
    while not await probe():
        elapsed = time.monotonic() - start
        assert elapsed < within, f"replicas did not agree within {within}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.parametrize("store", STORES)
async def test_a_key_change_through_one_replica_reaches_the_other_within_2s(
    store: str, tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    kek = os.urandom(32)
    if store == "postgres":
        # A long timer: only LISTEN/NOTIFY can make the deadline.
        async with fresh_postgres_database() as url:
            await _agree(
                replica_settings(url, tmp_path, kek, key_refresh_interval=60), aiohttp_client
            )
    else:
        url = f"sqlite:///{tmp_path}/issuer.db"
        await _agree(replica_settings(url, tmp_path, kek), aiohttp_client)


async def _agree(settings: Settings, aiohttp_client: ClientFactory) -> None:
    app_a, app_b = create_app(settings), create_app(settings)
    public_a = await aiohttp_client(app_a)
    admin_a = await aiohttp_client(app_a[admin_app_key])
    public_b: TestClient[Any, Any] = await aiohttp_client(app_b)
    ctx_a: Context = app_a[context_key]
    admin_client = await create_client(
        ctx_a.store, ctx_a.clock, name="admin", scopes=["issuer:admin"], actor="test"
    )
    svc = await create_client(ctx_a.store, ctx_a.clock, name="svc", scopes=["read"], actor="test")
    assert admin_client.client_secret is not None
    assert svc.client_secret is not None
    token_a = await public_a.post(
        "/token",
        data={"grant_type": "client_credentials"},
        headers=basic_auth(admin_client.client.client_id, admin_client.client_secret),
    )
    bearer = {"Authorization": f"Bearer {(await token_a.json())['access_token']}"}
    svc_auth = basic_auth(svc.client.client_id, svc.client_secret)

    async def kids_b() -> set[str]:
        jwks = await (await public_b.get("/.well-known/jwks.json")).json()
        return {k["kid"] for k in jwks["keys"]}

    async def signing_kid_b() -> str:
        resp = await public_b.post(
            "/token", data={"grant_type": "client_credentials"}, headers=svc_auth
        )
        assert resp.status == 200
        kid: str = jwt.get_unverified_header((await resp.json())["access_token"])["kid"]
        return kid

    old_kid = await signing_kid_b()
    # Emergency rotation through A: B must publish the new key and sign with it.
    rotated = await admin_a.post("/admin/keys/rotate", json={"immediate": True}, headers=bearer)
    assert rotated.status == 201
    new_kid = (await rotated.json())["key"]["kid"]

    async def b_signs_with_new_key() -> bool:
        return new_kid in await kids_b() and await signing_kid_b() == new_kid

    await eventually(b_signs_with_new_key, AGREE_WITHIN)

    # Revocation through A: B withdraws the key from its JWKS.
    revoked = await admin_a.post(f"/admin/keys/{old_kid}/revoke", headers=bearer)
    assert revoked.status == 200

    async def b_withdrew_old_key() -> bool:
        return old_kid not in await kids_b()

    await eventually(b_withdrew_old_key, AGREE_WITHIN)


async def test_two_replicas_racing_the_scheduler_create_one_successor(
    database_url: str, tmp_path: Path, clock: SettableClock
) -> None:
    settings = replica_settings(database_url, tmp_path, os.urandom(32))
    a, b = Context(settings, clock), Context(settings, clock)
    await start(a)
    await start(b)
    try:
        views = a.keyring.views()
        assert [v.state for v in views] == [KeyState.ACTIVE, KeyState.PENDING]
        # The successor starts signing: now nothing is pending, and both schedulers notice.
        clock.set(views[1].record.activates_at + timedelta(seconds=1))
        created = await asyncio.gather(a.keys.maintain(), b.keys.maintain())
        assert sorted(created) == [False, True]
        await a.keyring.load()
        await b.keyring.load()
        for ctx in (a, b):
            states = [v.state for v in ctx.keyring.views()]
            assert states.count(KeyState.PENDING) == 1
            assert len(states) == 3
    finally:
        await stop(a)
        await stop(b)
