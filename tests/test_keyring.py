"""The key schedule: states derived from timestamps, planning, and a full cycle on both stores."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from issuer.app import create_app
from issuer.clock import SettableClock
from issuer.config import Settings
from issuer.context import Context
from issuer.keyring import KeyState, derive_schedule, next_change, plan_maintenance
from issuer.lifecycle import start, stop
from issuer.store.base import KeyRecord
from tests.conftest import ClientFactory, GetToken

T0 = datetime(2030, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
RETENTION = timedelta(minutes=11)


def rec(kid: str, activates: datetime, *, revoked: datetime | None = None) -> KeyRecord:
    return KeyRecord(
        kid=kid,
        alg="RS256",
        public_jwk={"kty": "RSA", "kid": kid},
        private_wrapped=b"x",
        kek_id="k",
        created_at=activates - H,
        activates_at=activates,
        revoked_at=revoked,
    )


def states(keys: list[KeyRecord], now: datetime) -> dict[str, KeyState]:
    return {v.kid: v.state for v in derive_schedule(keys, now, RETENTION)}


def test_states_follow_the_clock_through_a_whole_cycle() -> None:
    keys = [rec("a", T0), rec("b", T0 + 24 * H)]
    assert states(keys, T0 - H) == {"a": KeyState.PENDING, "b": KeyState.PENDING}
    assert states(keys, T0) == {"a": KeyState.ACTIVE, "b": KeyState.PENDING}
    at_rotation = T0 + 24 * H
    assert states(keys, at_rotation) == {"a": KeyState.RETIRED, "b": KeyState.ACTIVE}
    assert states(keys, at_rotation + RETENTION - timedelta(seconds=1))["a"] is KeyState.RETIRED
    assert states(keys, at_rotation + RETENTION)["a"] is KeyState.EXPIRED


def test_retirement_is_derived_so_revoking_a_pending_successor_keeps_the_signer() -> None:
    keys = [rec("a", T0), rec("b", T0 + 24 * H, revoked=T0 + H)]
    views = {v.kid: v for v in derive_schedule(keys, T0 + 30 * H, RETENTION)}
    assert views["a"].state is KeyState.ACTIVE
    assert views["a"].retires_at is None
    assert views["b"].state is KeyState.REVOKED


def test_revoking_a_key_that_signed_never_republishes_its_expired_predecessor() -> None:
    now = T0 + 2 * H
    keys = [rec("a", T0), rec("b", T0 + H, revoked=now), rec("c", now)]
    views = {v.kid: v for v in derive_schedule(keys, now, RETENTION)}
    assert views["a"].state is KeyState.EXPIRED
    assert views["a"].retires_at == T0 + H
    assert views["b"].state is KeyState.REVOKED
    assert views["c"].state is KeyState.ACTIVE


def test_exactly_one_key_is_active_at_any_instant() -> None:
    keys = [rec("a", T0), rec("b", T0 + H), rec("c", T0 + 2 * H), rec("d", T0 + 2 * H + 1 * H)]
    for minutes in range(0, 300, 7):
        now = T0 + timedelta(minutes=minutes)
        active = [k for k, s in states(keys, now).items() if s is KeyState.ACTIVE]
        assert len(active) == 1, (now, active)


def test_next_change_is_the_earliest_boundary() -> None:
    views = derive_schedule([rec("a", T0), rec("b", T0 + H)], T0, RETENTION)
    assert next_change(views, T0) == T0 + H
    views = derive_schedule([rec("a", T0), rec("b", T0 + H)], T0 + H, RETENTION)
    assert next_change(views, T0 + H) == T0 + H + RETENTION


def test_plan_bootstraps_a_signer_and_a_successor_published_a_lead_ahead() -> None:
    plan = plan_maintenance([], T0, interval=30 * 24 * H, lead=24 * H)
    assert plan.create_at == (T0, T0 + 30 * 24 * H)


def test_plan_keeps_the_successor_at_least_one_lead_ahead() -> None:
    # The active key is overdue (e.g. the service was down): the successor still
    # gets the full publish lead rather than activating before verifiers saw it.
    views = derive_schedule([rec("a", T0)], T0 + 40 * 24 * H, RETENTION)
    plan = plan_maintenance(views, T0 + 40 * 24 * H, interval=30 * 24 * H, lead=24 * H)
    assert plan.create_at == (T0 + 41 * 24 * H,)


def test_plan_destroys_expired_and_revoked_private_keys_only() -> None:
    keys = [rec("a", T0), rec("b", T0 + H), rec("c", T0 + 2 * H), rec("r", T0, revoked=T0)]
    views = derive_schedule(keys, T0 + H + RETENTION, RETENTION)
    plan = plan_maintenance(views, T0 + H + RETENTION, interval=H, lead=H / 2)
    assert set(plan.destroy) == {"a", "r"}
    assert plan.create_at == ()


# -- through the real app, on both stores --------------------------------------------


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "key_rotation_interval": 3600,
        "key_publish_lead": 600,
        "jwks_max_age": 300,
        "access_token_ttl": 600,
        "clock_leeway": 60,
    }


async def kids_in_jwks(client: TestClient[Any, Any]) -> list[str]:
    body = await (await client.get("/.well-known/jwks.json")).json()
    return [k["kid"] for k in body["keys"]]


def token_kid(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


async def test_full_cycle_pending_active_retired_expired_and_restart(
    client: TestClient[Any, Any],
    ctx: Context,
    clock: SettableClock,
    get_token: GetToken,
    settings: Settings,
    aiohttp_client: ClientFactory,
) -> None:
    start = clock.now()
    views = ctx.keyring.views()
    assert [v.state for v in views] == [KeyState.ACTIVE, KeyState.PENDING]
    k1, k2 = views[0].kid, views[1].kid
    # Published a full rotation interval ahead (>= the publish lead).
    assert views[1].record.activates_at == start + timedelta(hours=1)
    assert await kids_in_jwks(client) == [k2, k1]
    assert token_kid(await get_token()) == k1

    # Rotation happens by the clock: no write is needed for k2 to sign.
    clock.advance(hours=1)
    assert token_kid(await get_token()) == k2
    await ctx.keys.maintain()
    by_kid = {v.kid: v for v in ctx.keyring.views()}
    assert by_kid[k1].state is KeyState.RETIRED
    assert by_kid[k2].state is KeyState.ACTIVE
    k3 = next(k for k, v in by_kid.items() if v.state is KeyState.PENDING)
    assert by_kid[k3].record.activates_at == start + timedelta(hours=2)
    assert set(await kids_in_jwks(client)) == {k1, k2, k3}

    # k1 stays published for the token TTL + leeway after it stopped signing, then goes.
    clock.advance(seconds=600 + 60 - 1)
    assert k1 in await kids_in_jwks(client)
    clock.advance(seconds=1)
    assert k1 not in await kids_in_jwks(client)
    await ctx.keys.maintain()
    rows = {r.kid: r for r in await ctx.store.list_keys()}
    assert rows[k1].private_wrapped is None, "an expired key's private half must be destroyed"
    assert rows[k2].private_wrapped is not None

    # A restart (a fresh app on the same database) derives exactly the same state.
    again = await aiohttp_client(create_app(settings, clock=clock))
    assert await kids_in_jwks(again) == await kids_in_jwks(client)
    assert token_kid(await get_token()) == k2


async def test_token_lifetimes_never_outlive_the_key_in_the_jwks(
    client: TestClient[Any, Any], ctx: Context, clock: SettableClock, get_token: GetToken
) -> None:
    # Issue a token in the last second before rotation: it must stay verifiable
    # (its key in the JWKS) until it expires, leeway included.
    clock.advance(seconds=3600 - 1)
    token = await get_token()
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    clock.advance(seconds=1)
    await ctx.keys.maintain()
    while clock.now().timestamp() < exp + 60:
        assert token_kid(token) in await kids_in_jwks(client)
        clock.advance(seconds=30)


async def test_immediate_rotation_signs_at_once_and_keeps_the_schedule(
    admin: TestClient[Any, Any], ctx: Context, get_token: GetToken, admin_token: str
) -> None:
    before = {v.kid: v for v in ctx.keyring.views()}
    pending = next(k for k, v in before.items() if v.state is KeyState.PENDING)
    resp = await admin.post(
        "/admin/keys/rotate",
        json={"immediate": True},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert resp.status == 201
    new = (await resp.json())["key"]
    assert new["state"] == "active"
    assert token_kid(await get_token()) == new["kid"]
    after = {v.kid: v for v in ctx.keyring.views()}
    assert after[pending].state is KeyState.PENDING, "the planned successor still takes over"


async def test_revoking_the_signer_withdraws_it_and_a_fresh_key_signs(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    ctx: Context,
    get_token: GetToken,
    admin_token: str,
) -> None:
    signer = token_kid(await get_token())
    resp = await admin.post(
        f"/admin/keys/{signer}/revoke", headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert resp.status == 200
    assert (await resp.json())["key"]["state"] == "revoked"
    assert signer not in await kids_in_jwks(client)
    fresh = token_kid(await get_token())
    assert fresh != signer
    assert fresh in await kids_in_jwks(client)
    row = next(r for r in await ctx.store.list_keys() if r.kid == signer)
    assert row.private_wrapped is None
    assert row.revoked_at is not None


async def test_revoking_a_pending_key_leaves_the_signer_and_plans_a_new_successor(
    ctx: Context, get_token: GetToken
) -> None:
    pending = next(v for v in ctx.keyring.views() if v.state is KeyState.PENDING)
    signer = token_kid(await get_token())
    await ctx.keys.revoke(pending.kid, actor="test")
    assert token_kid(await get_token()) == signer
    states_now = [v.state for v in ctx.keyring.views()]
    assert states_now.count(KeyState.PENDING) == 1
    assert states_now.count(KeyState.ACTIVE) == 1


async def test_state_survives_a_restart_mid_cycle(
    ctx: Context, clock: SettableClock, settings: Settings, aiohttp_client: ClientFactory
) -> None:
    await ctx.keys.rotate(immediate=True, actor="test")
    clock.advance(minutes=5)
    before = [v.as_json() for v in ctx.keyring.views()]
    app2: web.Application = create_app(settings, clock=clock)
    await aiohttp_client(app2)
    from issuer.appkeys import context_key

    assert [v.as_json() for v in app2[context_key].keyring.views()] == before


async def test_revoking_an_emergency_key_never_brings_the_retired_key_back(
    ctx: Context, clock: SettableClock, get_token: GetToken
) -> None:
    original = token_kid(await get_token())
    clock.advance(seconds=1)
    emergency = await ctx.keys.rotate(immediate=True, actor="test")
    clock.advance(seconds=1)
    await ctx.keys.revoke(emergency.kid, actor="test")
    signer = token_kid(await get_token())
    assert signer not in (original, emergency.kid)
    states_now = {v.kid: v.state for v in ctx.keyring.views()}
    assert states_now[original] is KeyState.RETIRED
    assert states_now[signer] is KeyState.ACTIVE


class ParkedClock:
    """B's view of the shared clock: its first reading is taken, then B is held until
    the test lets it go, so another worker can act between B's reading and B's next step.

    B runs on its own event loop in its own thread, so holding it here blocks only B.
    """

    def __init__(self, clock: SettableClock) -> None:
        self.clock = clock
        self.first_read = threading.Event()
        self.go_on = threading.Event()

    def now(self) -> datetime:
        now = self.clock.now()
        if not self.first_read.is_set():
            self.first_read.set()
            assert self.go_on.wait(timeout=60), "the test never let B go on"
        return now


async def test_a_worker_that_read_the_clock_before_another_made_keys_makes_no_second_signer(
    settings: Settings, clock: SettableClock
) -> None:
    # Two workers start on an empty database. B reads the clock first and sees no key;
    # then, a second later by the clock, A starts and makes the first keys (one active
    # from that second on, one pending). When B then gets the key lock it must decide by
    # the time it got the lock: by the time it read the clock, A's key was still pending
    # and B would make a second signing key.
    b_clock = ParkedClock(clock)
    b_failed: list[BaseException] = []

    async def start_b() -> None:
        b = Context(settings, b_clock)
        try:
            await start(b)
        finally:
            await stop(b)

    def run_b() -> None:
        try:
            asyncio.run(start_b())
        except BaseException as exc:  # reported by the test below
            b_failed.append(exc)

    b_thread = threading.Thread(target=run_b)
    b_thread.start()
    a = Context(settings, clock)
    try:
        assert await asyncio.to_thread(b_clock.first_read.wait, 60), "B never read the clock"
        clock.advance(1)
        await start(a)
    finally:
        b_clock.go_on.set()
        await asyncio.to_thread(b_thread.join, 60)
    try:
        assert not b_thread.is_alive()
        assert b_failed == []
        keys = await a.store.list_keys()
        assert sorted(v.state for v in derive_schedule(keys, clock.now(), RETENTION)) == [
            KeyState.ACTIVE,
            KeyState.PENDING,
        ], [(k.kid, k.activates_at) for k in keys]
    finally:
        await stop(a)
