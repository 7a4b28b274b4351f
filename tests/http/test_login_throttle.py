"""Login throttling over HTTP: failures per (username, address), per username, per address.

The test client's peer (127.0.0.1) is a trusted proxy here, so each test plays
clients at several addresses through ``X-Forwarded-For``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from issuer.clock import SettableClock
from issuer.context import Context
from issuer.services import login as login_service
from issuer.services.passwords import verify_password
from tests.conftest import MakeClient, MakeUser, RegisteredClient

PAIR_LIMIT, USERNAME_LIMIT, ADDRESS_LIMIT, WINDOW = 3, 10, 20, 600
ATTACKER, USER_HOME = "203.0.113.66", "198.51.100.7"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "login_max_failures": PAIR_LIMIT,
        "login_max_failures_per_username": USERNAME_LIMIT,
        "login_max_failures_per_address": ADDRESS_LIMIT,
        "login_window": WINDOW,
        "trusted_proxies": (ipaddress.ip_network("127.0.0.0/8"),),
    }


Attempt = Callable[..., Awaitable[Any]]


@pytest.fixture
def attempt(client: TestClient[Any, Any]) -> Attempt:
    async def do(app: RegisteredClient, username: str, password: str, address: str) -> Any:
        return await client.post(
            "/token",
            data={"grant_type": "password", "username": username, "password": password},
            headers={**app.basic(), "X-Forwarded-For": address},
        )

    return do


@pytest.fixture
def start_of_window(clock: SettableClock) -> SettableClock:
    # Fixed windows: start the test at the beginning of one, so it cannot straddle two.
    now = clock.now().timestamp()
    clock.advance(WINDOW - now % WINDOW)
    return clock


async def statuses(
    attempt: Attempt, n: int, app: RegisteredClient, username: str, password: str, address: str
) -> list[int]:
    return [(await attempt(app, username, password, address)).status for _ in range(n)]


async def test_a_flood_of_wrong_passwords_does_not_stop_the_right_one_from_elsewhere(
    attempt: Attempt, make_client: MakeClient, make_user: MakeUser, start_of_window: SettableClock
) -> None:
    app = await make_client(first_party=True)
    user = await make_user()
    flood = await statuses(attempt, 30, app, user.username, "wrong password", ATTACKER)
    assert flood == [400] * PAIR_LIMIT + [429] * (30 - PAIR_LIMIT)
    # The attacker's address is refused even the right password: it has failed for this user.
    assert (await attempt(app, user.username, user.password, ATTACKER)).status == 429
    # The user, from their own address, is not.
    resp = await attempt(app, user.username, user.password, USER_HOME)
    assert resp.status == 200, await resp.text()


async def test_429_carries_retry_after_and_too_many_attempts_until_the_window_ends(
    attempt: Attempt,
    ctx: Context,
    make_client: MakeClient,
    make_user: MakeUser,
    start_of_window: SettableClock,
) -> None:
    clock = start_of_window
    app = await make_client(first_party=True)
    user = await make_user()
    await statuses(attempt, PAIR_LIMIT, app, user.username, "wrong password", ATTACKER)
    clock.advance(100)
    resp = await attempt(app, user.username.upper(), "wrong password", ATTACKER)
    assert resp.status == 429
    assert resp.headers["Retry-After"] == str(WINDOW - 100)
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["error"] == "too_many_attempts"
    assert body["error_description"]
    audit = await ctx.store.list_audit(limit=500)
    [throttled] = [e for e in audit if e.action == "login.throttled"]
    assert throttled.target == user.user_id
    assert throttled.detail == {"username": user.username, "address": ATTACKER}

    clock.advance(WINDOW - 100)  # the window is over; nothing was locked for good
    assert (await attempt(app, user.username, user.password, ATTACKER)).status == 200


async def test_the_right_password_after_failures_within_the_limit_succeeds_and_forgives_them(
    attempt: Attempt, make_client: MakeClient, make_user: MakeUser, start_of_window: SettableClock
) -> None:
    app = await make_client(first_party=True)
    user = await make_user()
    assert await statuses(attempt, PAIR_LIMIT - 1, app, user.username, "typo", USER_HOME) == [
        400
    ] * (PAIR_LIMIT - 1)
    assert (await attempt(app, user.username, user.password, USER_HOME)).status == 200
    # The typos before a success are forgiven: the user gets the full allowance again.
    again = await statuses(attempt, PAIR_LIMIT + 1, app, user.username, "typo", USER_HOME)
    assert again == [400] * PAIR_LIMIT + [429]


async def test_a_distributed_guesser_is_capped_and_the_user_still_gets_in(
    attempt: Attempt, make_client: MakeClient, make_user: MakeUser, start_of_window: SettableClock
) -> None:
    app = await make_client(first_party=True)
    user = await make_user()
    answers = {
        f"203.0.113.{i}": await statuses(
            attempt, PAIR_LIMIT, app, user.username, "guess", f"203.0.113.{i}"
        )
        for i in range(10)
    }
    full = [400] * PAIR_LIMIT
    one = [400] + [429] * (PAIR_LIMIT - 1)
    # Three addresses use their whole allowance (9 failures); the fourth reaches the
    # username's cap of 10 with its first guess; from then on every address that has
    # failed for this user is refused and each fresh one gets a single guess.
    assert list(answers.values()) == [full] * 3 + [one] * 7
    guesses = sum(a.count(400) for a in answers.values())
    assert guesses == USERNAME_LIMIT + 6  # not 10 addresses x 3
    # An address that failed is refused even the right password; the user's is not.
    assert (await attempt(app, user.username, user.password, "203.0.113.0")).status == 429
    assert (await attempt(app, user.username, user.password, USER_HOME)).status == 200


async def test_one_address_spraying_usernames_is_capped_without_touching_other_addresses(
    attempt: Attempt, make_client: MakeClient, make_user: MakeUser, start_of_window: SettableClock
) -> None:
    app = await make_client(first_party=True)
    user = await make_user()
    spray = [(await attempt(app, f"name{i}", "Summer2026!", ATTACKER)).status for i in range(25)]
    assert spray == [400] * ADDRESS_LIMIT + [429] * 5
    # Everyone behind that address shares its limit (the documented trade-off)...
    assert (await attempt(app, user.username, user.password, ATTACKER)).status == 429
    # ...and nobody else does.
    assert (await attempt(app, user.username, user.password, USER_HOME)).status == 200


async def test_an_unknown_username_gets_the_same_answers_as_a_known_one(
    attempt: Attempt, make_client: MakeClient, make_user: MakeUser, start_of_window: SettableClock
) -> None:
    app = await make_client(first_party=True)
    user = await make_user()
    answers = []
    for name in (user.username, "ghost"):
        resps = [await attempt(app, name, "guess", ATTACKER) for _ in range(PAIR_LIMIT + 1)]
        answers.append([(r.status, await r.json(), r.headers.get("Retry-After")) for r in resps])
    assert answers[0] == answers[1]
    assert [status for status, _, _ in answers[0]] == [400] * PAIR_LIMIT + [429]


async def test_an_ipv6_client_counts_per_64_block(
    attempt: Attempt, make_client: MakeClient, make_user: MakeUser, start_of_window: SettableClock
) -> None:
    # One subscriber gets a /64: rotating the low bits does not buy more guesses.
    app = await make_client(first_party=True)
    user = await make_user()
    answers = [
        (await attempt(app, user.username, "guess", f"2001:db8:1:2::{i:x}")).status
        for i in range(1, PAIR_LIMIT + 2)
    ]
    assert answers == [400] * PAIR_LIMIT + [429]
    assert (await attempt(app, user.username, user.password, "2001:db8:1:3::1")).status == 200


# --- races: the checks hold with every request past the first check at once -------------


class Gate:
    """Holds every password check until ``n`` requests are inside one or have been answered,
    so all of them have passed the throttle's first check before any records an outcome."""

    def __init__(self, n: int) -> None:
        self.n, self.inside, self.answered = n, 0, 0
        self.changed = asyncio.Condition()
        self.open = asyncio.Event()

    async def _note(self, field: str) -> None:
        async with self.changed:
            setattr(self, field, getattr(self, field) + 1)
            self.changed.notify_all()

    def wrap(self, verify: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def gated(*args: Any) -> Any:
            await self._note("inside")
            await self.open.wait()
            return await verify(*args)

        return gated

    async def run(self, requests: list[Awaitable[Any]]) -> list[Any]:
        async def one(request: Awaitable[Any]) -> Any:
            resp = await request
            await self._note("answered")
            return resp

        tasks = [asyncio.ensure_future(one(r)) for r in requests]
        async with self.changed:
            await self.changed.wait_for(lambda: self.inside + self.answered >= self.n)
        self.open.set()
        return list(await asyncio.gather(*tasks))


async def test_eight_parallel_right_logins_of_one_user_all_succeed(
    attempt: Attempt,
    make_client: MakeClient,
    make_user: MakeUser,
    start_of_window: SettableClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = await make_client(first_party=True)
    user = await make_user()
    gate = Gate(8)
    monkeypatch.setattr(login_service, "verify_password", gate.wrap(verify_password))
    resps = await gate.run(
        [attempt(app, user.username, user.password, USER_HOME) for _ in range(8)]
    )
    assert [r.status for r in resps] == [200] * 8
    assert gate.inside == 8  # all eight were past the throttle at once


async def test_a_burst_of_wrong_guesses_learns_no_more_than_the_limit(
    attempt: Attempt,
    ctx: Context,
    make_client: MakeClient,
    make_user: MakeUser,
    start_of_window: SettableClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = await make_client(first_party=True)
    user = await make_user()
    gate = Gate(8)
    monkeypatch.setattr(login_service, "verify_password", gate.wrap(verify_password))
    resps = await gate.run([attempt(app, user.username, f"guess{i}", ATTACKER) for i in range(8)])
    assert gate.inside == 8  # every guess passed the first check and was hashed
    # Only as many as the limit were answered as wrong; the rest cannot be told apart
    # from a right password refused.
    assert sorted(r.status for r in resps) == [400] * PAIR_LIMIT + [429] * (8 - PAIR_LIMIT)
    assert (await attempt(app, user.username, user.password, ATTACKER)).status == 429
    audit = await ctx.store.list_audit(limit=500)
    assert sum(e.action == "login.failure" for e in audit) == PAIR_LIMIT
    assert sum(e.action == "login.throttled" for e in audit) == 8 - PAIR_LIMIT + 1
