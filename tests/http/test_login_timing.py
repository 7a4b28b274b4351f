"""An unknown username costs the same time as a wrong password (no user-enumeration oracle)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from issuer.app import create_app
from issuer.clock import SettableClock
from issuer.config import Settings
from issuer.services import passwords
from tests.conftest import ClientFactory, MakeClient, MakeUser, RegisteredClient

# The service's real argon2 parameters: with the suite's cheap ones a hash is too short
# to hide anything, or to show what the test is looking for.
pytestmark = pytest.mark.real_argon2

TRIES = 15
FRESH_STARTS = 3


def cold_start_app(settings: Settings, clock: SettableClock) -> web.Application:
    """An app in a process where no unknown-user login happened yet: no dummy hash."""
    passwords._dummy_hash.cache_clear()
    return create_app(settings, clock=clock)


@pytest.fixture(autouse=True)
def hashing_at_normal_priority(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The hashes are timed against each other, not against the rest of the machine: at
    nice 10 they would get whatever CPU the other tests running alongside leave over,
    and that noise, not the code under test, would decide the ratios."""
    monkeypatch.setattr(passwords, "LOGIN_NICE", 0)
    passwords._pool.cache_clear()  # new threads, started at the event loop's priority
    yield
    passwords._pool().shutdown(wait=False)
    passwords._pool.cache_clear()


@pytest.fixture
def app(settings: Settings, clock: SettableClock) -> web.Application:
    return cold_start_app(settings, clock)


async def timed_login(client: TestClient[Any, Any], app: RegisteredClient, username: str) -> float:
    start = time.perf_counter()
    resp = await client.post(
        "/token",
        data={"grant_type": "password", "username": username, "password": "wrong password"},
        headers=app.basic(),
    )
    elapsed = time.perf_counter() - start
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"
    return elapsed


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"login_max_failures": 1000, "login_max_failures_per_address": 1000}


async def test_unknown_user_and_wrong_password_take_the_same_time(
    client: TestClient[Any, Any], make_client: MakeClient, make_user: MakeUser
) -> None:
    app = await make_client(first_party=True)
    user = await make_user()

    async def timed(username: str) -> float:
        return await timed_login(client, app, username)

    # Warm up the request path with a known user only: the first unknown-user login
    # below is one of the samples, as the first one after start-up is in production.
    for _ in range(2):
        await timed(user.username)
    unknown, wrong = [], []
    for i in range(TRIES):  # interleaved, so load from elsewhere hits both alike
        unknown.append(await timed(f"nobody-{i}"))
        wrong.append(await timed(user.username))
    a, b = statistics.median(unknown), statistics.median(wrong)
    assert abs(a - b) / max(a, b) <= 0.25, f"unknown {a * 1000:.1f} ms, wrong {b * 1000:.1f} ms"


async def test_the_first_unknown_user_after_start_up_costs_no_more_than_a_wrong_password(
    settings: Settings,
    clock: SettableClock,
    aiohttp_client: ClientFactory,
    make_client: MakeClient,
    make_user: MakeUser,
) -> None:
    # Made on the first unknown-user login instead of at start-up, the dummy hash
    # would make that login cost two argon2 runs instead of one.
    app = await make_client(first_party=True)
    user = await make_user()
    ratios = []
    for _ in range(FRESH_STARTS):  # a single timing is noisy: the median of fresh starts
        fresh = await aiohttp_client(cold_start_app(settings, clock))
        wrong = [await timed_login(fresh, app, user.username) for _ in range(3)]
        first_unknown = await timed_login(fresh, app, "nobody")
        ratios.append(first_unknown / statistics.median(wrong))
        await fresh.close()
    assert statistics.median(ratios) <= 1.4, f"first unknown / wrong password: {ratios}"
