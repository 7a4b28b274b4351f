"""Verifier: the async front door, wired to a real JWKS endpoint and a settable clock."""

from __future__ import annotations

from typing import Any

import pytest

from issuer.jose.keys import GeneratedKey
from issuer.verifier import (
    ExpiredTokenError,
    JWKSClient,
    KeySetUnavailableError,
    MalformedTokenError,
    ManualClock,
    UnknownKeyError,
    Verifier,
    WrongAudienceError,
)

from .attacks import compact, good_claims
from .conftest import AUDIENCE, ISSUER, NOW, JWKSEndpoint, mint


async def test_verify_returns_the_claims(verifier: Verifier, rsa_key: GeneratedKey) -> None:
    claims = await verifier.verify(mint(rsa_key, scope="read"))
    assert claims["iss"] == ISSUER
    assert claims["scope"] == "read"
    assert claims["roles"] == ["user"]


async def test_the_clock_decides_expiry(
    verifier: Verifier, rsa_key: GeneratedKey, clock: ManualClock
) -> None:
    token = mint(rsa_key, ttl=600)
    clock.advance(600 + 59)
    await verifier.verify(token)
    clock.advance(1)
    with pytest.raises(ExpiredTokenError):
        await verifier.verify(token)


async def test_a_warm_cache_costs_no_requests(
    verifier: Verifier, jwks_endpoint: JWKSEndpoint, rsa_key: GeneratedKey
) -> None:
    token = mint(rsa_key)
    for _ in range(50):
        await verifier.verify(token)
    assert jwks_endpoint.hits == 1


async def test_a_stale_cache_is_revalidated_on_use(
    verifier: Verifier, jwks_endpoint: JWKSEndpoint, rsa_key: GeneratedKey, clock: ManualClock
) -> None:
    clock.advance(300)
    await verifier.verify(mint(rsa_key, now=NOW + 300))
    assert jwks_endpoint.hits == 2
    assert jwks_endpoint.not_modified == 1


async def test_a_token_from_a_new_key_is_verified_after_one_fetch(
    verifier: Verifier,
    jwks_endpoint: JWKSEndpoint,
    rsa_key: GeneratedKey,
    next_rsa_key: GeneratedKey,
) -> None:
    jwks_endpoint.keys = [rsa_key.public_jwk, next_rsa_key.public_jwk]
    assert (await verifier.verify(mint(next_rsa_key)))["sub"] == "user-1"
    assert (await verifier.verify(mint(next_rsa_key)))["sub"] == "user-1"
    assert jwks_endpoint.hits == 2


async def test_made_up_kids_cost_one_request_per_cooldown(
    verifier: Verifier, jwks_endpoint: JWKSEndpoint, rsa_key: GeneratedKey
) -> None:
    for n in range(100):
        header = {"alg": "RS256", "kid": f"made-up-{n}", "typ": "at+jwt"}
        token = compact(header, good_claims(ISSUER, AUDIENCE, NOW), rsa_key)
        with pytest.raises(UnknownKeyError):
            await verifier.verify(token)
    assert jwks_endpoint.hits == 2


async def test_fails_closed_when_the_issuer_is_gone_too_long(
    verifier: Verifier, jwks_endpoint: JWKSEndpoint, rsa_key: GeneratedKey, clock: ManualClock
) -> None:
    jwks_endpoint.status = 503
    clock.advance(300 + 3599)
    await verifier.verify(mint(rsa_key, now=int(clock())))
    clock.advance(1)
    with pytest.raises(KeySetUnavailableError):
        await verifier.verify(mint(rsa_key, now=int(clock())))


@pytest.mark.parametrize("token", [None, 123, ["a.b.c"], b"\xff.\xff.\xff"])
async def test_non_tokens_are_malformed(verifier: Verifier, token: Any) -> None:
    with pytest.raises(MalformedTokenError):
        await verifier.verify(token)


async def test_audience_and_algorithms_come_from_the_constructor(
    jwks_client: JWKSClient, rsa_key: GeneratedKey, clock: ManualClock
) -> None:
    other = Verifier(issuer=ISSUER, audience="https://other.example", jwks=jwks_client, clock=clock)
    with pytest.raises(WrongAudienceError):
        await other.verify(mint(rsa_key))
    with pytest.raises(ValueError, match="algorithms"):
        Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks_client, algorithms=["HS256"])
