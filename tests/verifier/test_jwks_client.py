"""JWKSClient against a real local JWKS endpoint: ETag/304, max-age, cooldown, stale-if-error."""

from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp
import pytest

from issuer.jose.keys import GeneratedKey
from issuer.verifier import JWKSClient, KeySetUnavailableError, ManualClock, UnknownKeyError
from issuer.verifier.jwks import freshness_lifetime

from .conftest import JWKSEndpoint


class SteppedSleep:
    """An injectable sleep: records the delay, waits to be released, then moves the clock."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.delays: list[float] = []
        self.called = asyncio.Event()
        self.release: asyncio.Queue[None] = asyncio.Queue()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.called.set()
        await self.release.get()
        self.clock.advance(delay)

    async def next_call(self) -> float:
        await asyncio.wait_for(self.called.wait(), timeout=5)
        self.called.clear()
        return self.delays[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_first_fetch_loads_the_keys(
    jwks_client: JWKSClient, jwks_endpoint: JWKSEndpoint, rsa_key: GeneratedKey
) -> None:
    assert list(jwks_client.keys) == [rsa_key.kid]
    assert (await jwks_client.get_key(rsa_key.kid)).kid == rsa_key.kid
    assert jwks_endpoint.hits == 1


async def test_refetch_is_conditional_and_304_keeps_the_parsed_keys(
    jwks_client: JWKSClient, jwks_endpoint: JWKSEndpoint, rsa_key: GeneratedKey, clock: ManualClock
) -> None:
    before = jwks_client.keys[rsa_key.kid]
    clock.advance(250)
    await jwks_client.refresh()
    assert jwks_endpoint.seen_if_none_match[0] is None
    assert jwks_endpoint.seen_if_none_match[1] is not None
    assert jwks_endpoint.not_modified == 1
    assert jwks_client.keys[rsa_key.kid] is before
    # The 304 renewed freshness: 299 s after it, the cached key still serves.
    clock.advance(299)
    assert jwks_client.cached_key(rsa_key.kid, clock()) is before


async def test_an_unchanged_body_is_not_parsed_again(
    jwks_client: JWKSClient, jwks_endpoint: JWKSEndpoint, rsa_key: GeneratedKey
) -> None:
    before = jwks_client.keys[rsa_key.kid]
    jwks_client.cache.etag = None  # as if the server sent no ETag: a full 200 comes back
    await jwks_client.refresh()
    assert jwks_endpoint.not_modified == 0
    assert jwks_client.keys[rsa_key.kid] is before


@pytest.mark.parametrize(
    ("max_age", "fresh_for"),
    [(300, 300), (0, 30), (10, 30), (10**7, 3600)],
    ids=["honoured", "zero-clamped-up", "small-clamped-up", "huge-clamped-down"],
)
async def test_max_age_is_honoured_and_clamped(
    jwks_endpoint: JWKSEndpoint,
    rsa_key: GeneratedKey,
    clock: ManualClock,
    max_age: int,
    fresh_for: int,
) -> None:
    jwks_endpoint.max_age = max_age
    async with JWKSClient(jwks_endpoint.url, clock=clock, background_refresh=False) as client:
        assert client.cached_key(rsa_key.kid, clock() + fresh_for - 1) is not None
        assert client.cached_key(rsa_key.kid, clock() + fresh_for) is None


def test_freshness_lifetime_reads_cache_control_and_age() -> None:
    assert freshness_lifetime({"Cache-Control": "public, max-age=300"}, 5) == 300
    assert freshness_lifetime({"Cache-Control": "max-age=300", "Age": "100"}, 5) == 200
    assert freshness_lifetime({"Cache-Control": "no-store"}, 5) == 0
    assert freshness_lifetime({"Cache-Control": "public, no-cache"}, 5) == 0
    assert freshness_lifetime({"Cache-Control": "s-maxage=9"}, 5) == 5
    assert freshness_lifetime({}, 5) == 5


async def test_refresh_is_due_before_max_age_runs_out(
    jwks_client: JWKSClient, clock: ManualClock
) -> None:
    assert jwks_client.refresh_due() == pytest.approx(240)
    clock.advance(200)
    assert jwks_client.refresh_due() == pytest.approx(40)
    clock.advance(100)
    assert jwks_client.refresh_due() == 0


async def test_background_refresh_runs_on_schedule_without_waiting(
    jwks_endpoint: JWKSEndpoint, rsa_key: GeneratedKey, clock: ManualClock
) -> None:
    sleep = SteppedSleep(clock)
    async with JWKSClient(jwks_endpoint.url, clock=clock, sleep=sleep) as client:
        assert await sleep.next_call() == pytest.approx(240)
        sleep.release.put_nowait(None)  # 240 s pass; the task refreshes (304), then sleeps again
        assert await sleep.next_call() == pytest.approx(240)
        assert jwks_endpoint.hits == 2
        assert jwks_endpoint.not_modified == 1
        # It refreshed before expiry, so requests never found the cache stale.
        assert client.cached_key(rsa_key.kid, clock()) is not None
        # Failures retry on the cooldown, not on the 1 s floor nor on max-age.
        jwks_endpoint.status = 503
        sleep.release.put_nowait(None)
        assert await sleep.next_call() == pytest.approx(30)
    assert jwks_endpoint.hits == 3


async def test_unknown_kid_refetches_at_most_once_per_cooldown(
    jwks_client: JWKSClient, jwks_endpoint: JWKSEndpoint, clock: ManualClock
) -> None:
    for _ in range(20):
        with pytest.raises(UnknownKeyError):
            await jwks_client.get_key("made-up")
    assert jwks_endpoint.hits == 2
    clock.advance(29)
    with pytest.raises(UnknownKeyError):
        await jwks_client.get_key("made-up-too")
    assert jwks_endpoint.hits == 2
    clock.advance(1)
    with pytest.raises(UnknownKeyError):
        await jwks_client.get_key("made-up-three")
    assert jwks_endpoint.hits == 3


async def test_concurrent_unknown_kids_share_one_fetch(
    jwks_client: JWKSClient, jwks_endpoint: JWKSEndpoint
) -> None:
    jwks_endpoint.gate = asyncio.Event()
    jwks_endpoint.arrived = asyncio.Event()
    tasks = [asyncio.create_task(jwks_client.get_key(f"flood-{n}")) for n in range(50)]
    await asyncio.wait_for(jwks_endpoint.arrived.wait(), timeout=5)  # the fetch is in flight
    jwks_endpoint.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(type(r) is UnknownKeyError for r in results)
    assert jwks_endpoint.hits == 2


async def test_a_new_key_is_picked_up_by_one_shared_fetch(
    jwks_client: JWKSClient,
    jwks_endpoint: JWKSEndpoint,
    rsa_key: GeneratedKey,
    next_rsa_key: GeneratedKey,
) -> None:
    # Emergency rotation: a token signed by a key we have not seen yet.
    jwks_endpoint.keys = [rsa_key.public_jwk, next_rsa_key.public_jwk]
    keys = await asyncio.gather(*(jwks_client.get_key(next_rsa_key.kid) for _ in range(20)))
    assert {k.kid for k in keys} == {next_rsa_key.kid}
    assert jwks_endpoint.hits == 2


async def test_a_stale_refresh_does_not_spend_the_unknown_kid_cooldown(
    jwks_client: JWKSClient,
    jwks_endpoint: JWKSEndpoint,
    rsa_key: GeneratedKey,
    next_rsa_key: GeneratedKey,
    clock: ManualClock,
) -> None:
    # The cache went stale; a request's ordinary refresh must not hold back the
    # refetch that an emergency rotation's new kid needs a moment later.
    clock.advance(301)
    await jwks_client.get_key(rsa_key.kid)
    assert jwks_endpoint.hits == 2
    jwks_endpoint.keys = [rsa_key.public_jwk, next_rsa_key.public_jwk]
    clock.advance(1)
    assert (await jwks_client.get_key(next_rsa_key.kid)).kid == next_rsa_key.kid
    assert jwks_endpoint.hits == 3


async def test_a_key_removed_from_the_jwks_is_dropped(
    jwks_client: JWKSClient,
    jwks_endpoint: JWKSEndpoint,
    rsa_key: GeneratedKey,
    next_rsa_key: GeneratedKey,
) -> None:
    jwks_endpoint.keys = [next_rsa_key.public_jwk]  # rsa_key revoked
    await jwks_client.refresh()
    with pytest.raises(UnknownKeyError):
        await jwks_client.get_key(rsa_key.kid)


@pytest.mark.parametrize("failure", ["status-503", "garbage", "not-a-jwks", "too-large"])
async def test_stale_if_error_then_fail_closed(
    jwks_client: JWKSClient,
    jwks_endpoint: JWKSEndpoint,
    rsa_key: GeneratedKey,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    if failure == "status-503":
        jwks_endpoint.status = 503
    elif failure == "garbage":
        jwks_endpoint.body = b"<html>oops</html>"
    elif failure == "not-a-jwks":
        jwks_endpoint.body = b'{"kids": []}'
    else:
        jwks_endpoint.body = b" " * (600 * 1024)
    caplog.set_level(logging.WARNING, logger="issuer.verifier.jwks")
    clock.advance(300)  # stale now: the next lookup tries to refetch and fails
    assert (await jwks_client.get_key(rsa_key.kid)).kid == rsa_key.kid
    for _ in range(3):
        clock.advance(31)
        assert (await jwks_client.get_key(rsa_key.kid)).kid == rsa_key.kid
    assert jwks_endpoint.hits == 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "stale-if-error" in warnings[0].getMessage()
    # Past fresh_until + stale_if_error (1 h by default): refuse every token.
    clock.advance(3600)
    for _ in range(2):
        with pytest.raises(KeySetUnavailableError):
            await jwks_client.get_key(rsa_key.kid)
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    # And when the issuer answers again, everything recovers.
    jwks_endpoint.status, jwks_endpoint.body = 200, None
    clock.advance(31)
    assert (await jwks_client.get_key(rsa_key.kid)).kid == rsa_key.kid


async def test_an_unreachable_issuer_with_no_cache_refuses_tokens(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks.json"
    caplog.set_level(logging.WARNING, logger="issuer.verifier.jwks")
    async with JWKSClient(url, clock=clock, background_refresh=False, timeout=2) as client:
        with pytest.raises(KeySetUnavailableError):
            await client.get_key("any")
        assert client.fetches == 1  # the start-up fetch; the lookup is inside the cooldown
    assert len(caplog.records) == 1


async def test_a_given_session_is_not_closed(jwks_endpoint: JWKSEndpoint) -> None:
    async with aiohttp.ClientSession() as session:
        async with JWKSClient(jwks_endpoint.url, session=session, background_refresh=False):
            pass
        assert not session.closed


async def test_close_stops_the_background_task(jwks_endpoint: JWKSEndpoint) -> None:
    client = JWKSClient(jwks_endpoint.url)
    await client.start()
    task = client._refresher
    assert task is not None
    assert not task.done()
    await client.close()
    assert task.done()
    await client.close()  # idempotent


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_age"):
        JWKSClient("http://x", min_max_age=600, default_max_age=300)
    with pytest.raises(ValueError, match="cooldown"):
        JWKSClient("http://x", cooldown=0)
