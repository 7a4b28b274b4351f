"""The verified-token cache: a repeat is a lookup, yet every check that can change still runs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from issuer.jose.keys import GeneratedKey
from issuer.verifier import (
    BadSignatureError,
    ExpiredTokenError,
    JWKSClient,
    ManualClock,
    RevocationFeed,
    RevokedTokenError,
    UnknownKeyError,
    Verifier,
)

from .conftest import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    ISSUER,
    NOW,
    FeedEndpoint,
    JWKSEndpoint,
    mint,
)


@pytest.fixture
async def feed(feed_endpoint: FeedEndpoint, clock: ManualClock) -> AsyncIterator[RevocationFeed]:
    feed = RevocationFeed(feed_endpoint.url, CLIENT_ID, CLIENT_SECRET, interval=30, clock=clock)
    yield feed
    await feed.close()


@pytest.fixture
def guarded(jwks_client: JWKSClient, feed: RevocationFeed, clock: ManualClock) -> Verifier:
    return Verifier(
        issuer=ISSUER, audience=AUDIENCE, jwks=jwks_client, revocations=feed, clock=clock
    )


async def test_a_repeat_is_served_from_the_cache_with_a_copy_of_the_claims(
    verifier: Verifier, rsa_key: GeneratedKey
) -> None:
    token = mint(rsa_key)
    # A handler that changes its claims changes only its copy, on a miss and on a hit.
    for _ in range(3):
        claims = await verifier.verify(token)
        assert claims["sub"] == "user-1"
        claims["sub"] = "mallory"
    assert verifier.cached_tokens == 1


async def test_a_cached_token_still_expires(
    verifier: Verifier, rsa_key: GeneratedKey, clock: ManualClock
) -> None:
    token = mint(rsa_key, ttl=600)
    await verifier.verify(token)
    clock.advance(600 + 59)  # inside the 60 s leeway
    await verifier.verify(token)
    clock.advance(1)
    with pytest.raises(ExpiredTokenError):
        await verifier.verify(token)


async def test_a_cached_token_revoked_on_the_feed_is_refused(
    guarded: Verifier, feed: RevocationFeed, feed_endpoint: FeedEndpoint, rsa_key: GeneratedKey
) -> None:
    token = mint(rsa_key, jti="j-1")
    await guarded.verify(token)
    feed_endpoint.items.append({"jti": "j-1", "exp": NOW + 600})
    await feed.poll()
    with pytest.raises(RevokedTokenError):
        await guarded.verify(token)


async def test_a_key_revoked_on_the_feed_is_refused_whatever_the_jwks_cache_says(
    guarded: Verifier,
    feed: RevocationFeed,
    feed_endpoint: FeedEndpoint,
    jwks_endpoint: JWKSEndpoint,
    rsa_key: GeneratedKey,
) -> None:
    cached, fresh = mint(rsa_key, jti="seen"), mint(rsa_key, jti="forged-with-stolen-key")
    await guarded.verify(cached)
    # The JWKS cache is fresh for another five minutes and still has the key.
    assert guarded.jwks.cached_key(rsa_key.kid, NOW) is not None
    feed_endpoint.items.append({"kid": rsa_key.kid, "revoked_at": NOW})
    await feed.poll()
    hits = jwks_endpoint.hits
    for token in (cached, fresh):
        with pytest.raises(RevokedTokenError):
            await guarded.verify(token)
    assert jwks_endpoint.hits == hits  # refused without asking the issuer again


async def test_a_key_that_leaves_the_set_drops_its_cached_tokens(
    verifier: Verifier,
    jwks_client: JWKSClient,
    jwks_endpoint: JWKSEndpoint,
    rsa_key: GeneratedKey,
    next_rsa_key: GeneratedKey,
) -> None:
    token = mint(rsa_key)
    await verifier.verify(token)
    jwks_endpoint.keys = [next_rsa_key.public_jwk]
    await jwks_client.refresh()
    with pytest.raises(UnknownKeyError):
        await verifier.verify(token)


async def test_the_cache_is_keyed_on_the_whole_token(
    verifier: Verifier, rsa_key: GeneratedKey
) -> None:
    token = mint(rsa_key)
    await verifier.verify(token)
    head, _, signature = token.rpartition(".")
    tampered = head + "." + signature[:-2] + ("AA" if signature[-2:] != "AA" else "BA")
    with pytest.raises(BadSignatureError):
        await verifier.verify(tampered)


async def test_the_cache_is_bounded(
    jwks_client: JWKSClient, rsa_key: GeneratedKey, clock: ManualClock
) -> None:
    small = Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks_client, cache_size=2, clock=clock)
    for n in range(5):
        await small.verify(mint(rsa_key, jti=f"j{n}"))
    assert small.cached_tokens == 2
    off = Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks_client, cache_size=0, clock=clock)
    await off.verify(mint(rsa_key))
    assert off.cached_tokens == 0
    with pytest.raises(ValueError, match="cache_size"):
        Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks_client, cache_size=-1)
