"""RevocationFeed against a real local feed endpoint; RevocationList semantics."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator

import pytest

from issuer.jose.keys import GeneratedKey
from issuer.verifier import (
    JWKSClient,
    ManualClock,
    RevocationFeed,
    RevocationList,
    RevokedTokenError,
    Verifier,
)

from .conftest import AUDIENCE, CLIENT_ID, CLIENT_SECRET, ISSUER, NOW, FeedEndpoint, mint
from .test_jwks_client import SteppedSleep


@pytest.fixture
async def feed(feed_endpoint: FeedEndpoint, clock: ManualClock) -> AsyncIterator[RevocationFeed]:
    feed = RevocationFeed(feed_endpoint.url, CLIENT_ID, CLIENT_SECRET, interval=30, clock=clock)
    yield feed
    await feed.close()


def test_revocation_list_semantics() -> None:
    revocations = RevocationList()
    skipped = revocations.apply(
        [
            {"jti": "j1", "exp": NOW + 600},
            {"sub": "u1", "revoked_before": NOW},
            {"sub": "u1", "revoked_before": NOW - 100},  # an older cut-off does not undo a newer
            {"jti": 5, "exp": NOW},
            {"what": "ever"},
            "junk",
        ]
    )
    assert skipped == 3
    with pytest.raises(RevokedTokenError):
        revocations.check({"jti": "j1", "sub": "u2", "iat": NOW})
    with pytest.raises(RevokedTokenError):
        revocations.check({"jti": "j2", "sub": "u1", "iat": NOW})  # iat <= cut-off
    with pytest.raises(RevokedTokenError):
        revocations.check({"jti": "j2", "sub": "u1"})  # no iat: cannot show it is newer
    revocations.check({"jti": "j2", "sub": "u1", "iat": NOW + 1})
    revocations.check({"jti": "j2", "sub": "u2", "iat": NOW})


def test_revocation_list_prunes_what_can_no_longer_matter() -> None:
    revocations = RevocationList(max_token_lifetime=3600, grace=300)
    revocations.apply(
        [
            {"jti": "old", "exp": NOW - 301},
            {"jti": "new", "exp": NOW - 299},
            {"sub": "old", "revoked_before": NOW - 3901},
            {"sub": "new", "revoked_before": NOW},
        ]
    )
    revocations.prune(NOW)
    assert set(revocations.denied) == {"new"}
    assert set(revocations.cutoffs) == {"new"}


async def test_poll_reads_every_page_from_the_beginning_then_follows_the_cursor(
    feed: RevocationFeed, feed_endpoint: FeedEndpoint
) -> None:
    feed_endpoint.items = [{"jti": f"j{n}", "exp": NOW + 600} for n in range(5)]
    await feed.poll()
    assert feed_endpoint.afters == [None, "2", "4", "5"]
    assert set(feed.revocations.denied) == {f"j{n}" for n in range(5)}
    feed_endpoint.items.append({"sub": "u1", "revoked_before": NOW})
    await feed.poll()
    assert feed_endpoint.afters[4:] == ["5", "6"]
    assert feed.revocations.cutoffs == {"u1": NOW}


@pytest.mark.parametrize("failure", ["status", "garbage", "wrong-shape", "bad-credentials"])
async def test_an_unreadable_feed_keeps_the_last_list_and_warns_once(
    feed: RevocationFeed,
    feed_endpoint: FeedEndpoint,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    feed_endpoint.items = [{"jti": "j1", "exp": NOW + 600}]
    await feed.poll()
    if failure == "status":
        feed_endpoint.status = 503
    elif failure == "garbage":
        feed_endpoint.body = b"<html>"
    elif failure == "wrong-shape":
        feed_endpoint.body = b'{"items": {}, "next": 1}'
    else:
        feed.state.authorization = "Basic " + base64.b64encode(b"resource%3Aapi:wrong").decode()
    caplog.set_level(logging.INFO, logger="issuer.verifier.revocation")
    for _ in range(3):
        await feed.poll()
    assert set(feed.revocations.denied) == {"j1"}
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


async def test_an_unreachable_feed_recovers(
    feed: RevocationFeed, feed_endpoint: FeedEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="issuer.verifier.revocation")
    feed_endpoint.status = 503
    await feed.poll()
    feed_endpoint.status = 200
    feed_endpoint.items = [{"jti": "j1", "exp": NOW + 600}]
    await feed.poll()
    assert "j1" in feed.revocations.denied
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]


async def test_malformed_items_are_skipped_with_a_warning(
    feed: RevocationFeed, feed_endpoint: FeedEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    feed_endpoint.items = [{"jti": "j1"}, {"jti": "j2", "exp": NOW + 600}]
    await feed.poll()
    assert set(feed.revocations.denied) == {"j2"}
    assert "skipped 1" in caplog.text


async def test_expired_entries_are_dropped_as_the_clock_moves(
    feed: RevocationFeed, feed_endpoint: FeedEndpoint, clock: ManualClock
) -> None:
    feed_endpoint.items = [
        {"jti": "short", "exp": NOW + 60},
        {"jti": "long", "exp": NOW + 3600},
        {"sub": "u1", "revoked_before": NOW},
    ]
    await feed.poll()
    clock.advance(60 + 301)
    await feed.poll()
    assert set(feed.revocations.denied) == {"long"}
    clock.advance(24 * 3600)
    await feed.poll()
    assert len(feed.revocations) == 0


async def test_the_feed_polls_on_its_interval(
    feed_endpoint: FeedEndpoint, clock: ManualClock
) -> None:
    sleep = SteppedSleep(clock)
    async with RevocationFeed(
        feed_endpoint.url, CLIENT_ID, CLIENT_SECRET, interval=30, clock=clock, sleep=sleep
    ) as feed:
        assert await sleep.next_call() == 30
        feed_endpoint.items = [{"jti": "j1", "exp": NOW + 600}]
        sleep.release.put_nowait(None)
        assert await sleep.next_call() == 30
        assert "j1" in feed.revocations.denied


async def test_verifier_refuses_revoked_tokens(
    feed: RevocationFeed,
    feed_endpoint: FeedEndpoint,
    jwks_client: JWKSClient,
    rsa_key: GeneratedKey,
    clock: ManualClock,
) -> None:
    verifier = Verifier(
        issuer=ISSUER, audience=AUDIENCE, jwks=jwks_client, clock=clock, revocations=feed
    )
    denied = mint(rsa_key, jti="denied")
    cut_off = mint(rsa_key, sub="fired", jti="a")
    later = mint(rsa_key, now=NOW + 10, sub="fired", jti="b")
    for token in (denied, cut_off, later):
        await verifier.verify(token)
    feed_endpoint.items = [
        {"jti": "denied", "exp": NOW + 600},
        {"sub": "fired", "revoked_before": NOW},
    ]
    await feed.poll()
    with pytest.raises(RevokedTokenError):
        await verifier.verify(denied)
    with pytest.raises(RevokedTokenError):
        await verifier.verify(cut_off)
    clock.advance(10)
    assert (await verifier.verify(later))["jti"] == "b"
