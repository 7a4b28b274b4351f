"""Fixtures for the verifier tests: a real RSA key, a settable clock, a real JWKS server."""

from __future__ import annotations

from typing import Any

import pytest

from issuer.jose.keys import GeneratedKey, generate_key
from issuer.jose.tokens import AccessTokenRequest, Signer, access_token_claims
from issuer.verifier import ManualClock

ISSUER = "https://issuer.example"
AUDIENCE = "https://api.example"
NOW = 1_900_000_000


@pytest.fixture(scope="session")
def rsa_key() -> GeneratedKey:
    return generate_key("RS256")


@pytest.fixture(scope="session")
def next_rsa_key() -> GeneratedKey:
    return generate_key("RS256")


def mint(key: GeneratedKey, *, now: int = NOW, ttl: int = 600, **claims: Any) -> str:
    """A token as the issuer signs it, with ``claims`` changed."""
    request = AccessTokenRequest(
        issuer=ISSUER,
        subject="user-1",
        audience=AUDIENCE,
        client_id="client-1",
        scope="read write",
        now=now,
        ttl=ttl,
        roles=("user",),
    )
    body = access_token_claims(request)
    body.update(claims)
    return Signer(key.kid, key.alg, key.private_pem).sign(body)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(float(NOW))
