"""Brute-force throttling of the password grant, per username and per client address."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from issuer.clock import SettableClock
from issuer.context import Context
from tests.conftest import Login, MakeClient, MakeUser, RegisteredClient


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "login_max_failures": 3,
        "login_max_failures_per_address": 5,
        "login_window": 600,
        "trusted_proxies": (),
    }


async def attempt(
    client: TestClient[Any, Any],
    app: RegisteredClient,
    username: str,
    password: str,
    forwarded_for: str | None = None,
) -> Any:
    headers = app.basic()
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return await client.post(
        "/token",
        data={"grant_type": "password", "username": username, "password": password},
        headers=headers,
    )


@pytest.fixture
def start_of_window(clock: SettableClock) -> SettableClock:
    # Fixed windows: start the test at the beginning of one, so it cannot straddle two.
    now = clock.now().timestamp()
    clock.advance(600 - now % 600)
    return clock


async def test_a_username_is_throttled_until_the_window_passes(
    client: TestClient[Any, Any],
    ctx: Context,
    make_client: MakeClient,
    make_user: MakeUser,
    start_of_window: SettableClock,
) -> None:
    clock = start_of_window
    app = await make_client(first_party=True)
    user = await make_user()
    for _ in range(3):
        assert (await attempt(client, app, user.username, "wrong password")).status == 400
    clock.advance(100)
    # Now even the right password is refused, with the same answer as for anyone.
    resp = await attempt(client, app, user.username.upper(), user.password)
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "500"
    assert resp.headers["Cache-Control"] == "no-store"
    assert (await resp.json())["error"] == "too_many_attempts"
    audit = await ctx.store.list_audit(limit=500)
    throttled = [e for e in audit if e.action == "login.throttled"]
    assert len(throttled) == 1
    assert throttled[0].detail["username"] == user.username.upper()
    assert user.password not in str(throttled[0].detail)

    clock.advance(500)  # the window is over; the account was never locked for good
    assert (await attempt(client, app, user.username, user.password)).status == 200


async def test_unknown_usernames_are_throttled_alike(
    client: TestClient[Any, Any], make_client: MakeClient, start_of_window: SettableClock
) -> None:
    app = await make_client(first_party=True)
    statuses = [(await attempt(client, app, "ghost", "guess")).status for _ in range(4)]
    assert statuses == [400, 400, 400, 429]


async def test_a_successful_login_resets_the_username_counter(
    client: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    start_of_window: SettableClock,
) -> None:
    app = await make_client(first_party=True)
    user = await make_user()
    for _ in range(2):
        await attempt(client, app, user.username, "wrong password")
    await login(app, user)
    for _ in range(3):
        assert (await attempt(client, app, user.username, "wrong password")).status == 400


async def test_one_address_is_throttled_across_usernames(
    client: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    start_of_window: SettableClock,
) -> None:
    app = await make_client(first_party=True)
    user = await make_user()
    for name in ("a", "b", "c", "d"):
        assert (await attempt(client, app, name, "guess")).status == 400
    await login(app, user)  # a success does not wipe the address's failures...
    assert (await attempt(client, app, "e", "guess")).status == 400
    # ...so that is five failures from this address: every username is refused now.
    resp = await attempt(client, app, user.username, user.password)
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) > 0


async def test_x_forwarded_for_is_ignored_from_an_untrusted_peer(
    client: TestClient[Any, Any], make_client: MakeClient, start_of_window: SettableClock
) -> None:
    app = await make_client(first_party=True)
    # A client rotating a forged header is still one address (the peer's).
    statuses = [
        (await attempt(client, app, f"u{i}", "guess", forwarded_for=f"10.0.0.{i}")).status
        for i in range(6)
    ]
    assert statuses == [400] * 5 + [429]
