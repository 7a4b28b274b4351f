"""Every hostile token in attacks.py is refused with its precise TokenError subclass."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from issuer.jose.keys import GeneratedKey, generate_key
from issuer.verifier import JWKSClient, ManualClock, RevocationList, TokenError, Verifier

from .attacks import EXPECTED_ERRORS, REVOKED_JTI, attack_tokens
from .conftest import AUDIENCE, ISSUER, NOW, JWKSEndpoint, mint

# Built once for the module: RSA key generation is the slow part.
_KEY = generate_key("RS256")
_ATTACKER_URL = "http://attacker.invalid/"
_CASES = attack_tokens(_KEY, ISSUER, AUDIENCE, NOW, _ATTACKER_URL)


class Attacker:
    """A server that counts every request: jku/x5u must never make us call it."""

    def __init__(self) -> None:
        self.hits = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.json_response({"keys": []})


@pytest.fixture
async def attacker(aiohttp_server: AiohttpServer) -> Attacker:
    attacker = Attacker()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", attacker.handle)
    server = await aiohttp_server(app)
    attacker.url = str(server.make_url("/"))
    return attacker


@pytest.fixture
async def strict_verifier(
    jwks_endpoint: JWKSEndpoint, clock: ManualClock
) -> AsyncIterator[Verifier]:
    jwks_endpoint.keys = [_KEY.public_jwk]
    revocations = RevocationList()
    revocations.apply([{"jti": REVOKED_JTI, "exp": NOW + 600}])
    async with JWKSClient(jwks_endpoint.url, clock=clock, background_refresh=False) as jwks:
        yield Verifier(
            issuer=ISSUER, audience=AUDIENCE, jwks=jwks, clock=clock, revocations=revocations
        )


def test_every_case_has_an_expected_error() -> None:
    ids = [case for case, _ in _CASES]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(EXPECTED_ERRORS)


async def test_the_baseline_token_is_accepted(strict_verifier: Verifier) -> None:
    # Without this, every attack below could "pass" because nothing verifies at all.
    claims = await strict_verifier.verify(mint(_KEY))
    assert claims["sub"] == "user-1"


@pytest.mark.parametrize(("case", "token"), _CASES, ids=[case for case, _ in _CASES])
async def test_attack_is_refused(strict_verifier: Verifier, case: str, token: str) -> None:
    with pytest.raises(TokenError) as info:
        await strict_verifier.verify(token)
    assert type(info.value) is EXPECTED_ERRORS[case]


async def test_token_named_keys_are_never_fetched(
    attacker: Attacker, jwks_endpoint: JWKSEndpoint, clock: ManualClock
) -> None:
    cases = dict(attack_tokens(_KEY, ISSUER, AUDIENCE, NOW, attacker.url))
    jwks_endpoint.keys = [_KEY.public_jwk]
    async with JWKSClient(jwks_endpoint.url, clock=clock, background_refresh=False) as jwks:
        verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks, clock=clock)
        for case in ("jku-attacker", "jku-real-kid", "x5u-attacker", "jwk-header-attacker-kid"):
            with pytest.raises(TokenError):
                await verifier.verify(cases[case])
    assert attacker.hits == 0
    # Unknown kids cost at most one JWKS refetch per cooldown, and never the attacker's URL.
    assert jwks_endpoint.hits <= 2


def test_attack_builders_sign_with_the_given_key(rsa_key: GeneratedKey) -> None:
    # The table is reusable with another key (the server's tests pass their own):
    # cases that need a real signature must carry that key's kid.
    cases = dict(attack_tokens(rsa_key, ISSUER, AUDIENCE, NOW, _ATTACKER_URL))
    header = json.loads(base64.urlsafe_b64decode(cases["exp-missing"].split(".")[0] + "=="))
    assert header["kid"] == rsa_key.kid
    assert len(cases) == len(_CASES)
