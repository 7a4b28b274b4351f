"""Verifiers that survive every rotation: issue and verify continuously through three
scheduled rotations, an immediate rotation and a revocation, with real time and real HTTP.

The issuer's intervals are scaled down 200-fold (rotation every 4 s instead of ~13 min,
publish lead 2 s instead of 400 s, JWKS max-age 1 s). Every verifier's own time constants
are scaled with them: this library's through its parameters; PyJWT's ``PyJWKClient``
keeps its defaults (300 s JWKS cache, 30 s unknown-kid cooldown) but reads a clock that
runs 200 times faster. The naive verifier fetches the JWKS once a real minute, ignoring
Cache-Control and unknown kids, as many hand-written ones do: against the scaled schedule
it shows, compressed, what it does in production on every emergency rotation and revocation.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer, unused_port

from issuer.app import create_app
from issuer.appkeys import context_key
from issuer.clock import SystemClock
from issuer.config import Settings
from issuer.context import Context
from issuer.services.accounts import create_client
from issuer.verifier import JWKSClient, TokenError, Verifier

pytestmark = pytest.mark.slow
SCALE = 200.0


class ScaledTime:
    """Stands in for the ``time`` module of PyJWT's JWKS client: monotonic, 200x faster."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def monotonic(self) -> float:
        return self.start + (time.monotonic() - self.start) * SCALE


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # The verifiers are under test here, not the stores (both pass the same schedule tests).
    return f"sqlite:///{tmp_path}/issuer.db"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "key_rotation_interval": 4,
        "key_publish_lead": 2,
        "jwks_max_age": 1,
        "access_token_ttl": 2,
        "clock_leeway": 1,
        "key_refresh_interval": 1,
    }


class NaiveVerifier:
    """Fetches the JWKS once a minute and verifies with whatever it has."""

    def __init__(self, http: ClientSession, uri: str) -> None:
        self.http, self.uri = http, uri
        self.keys: dict[str, Any] = {}
        self.fetched_at = -1e9

    async def verify(self, token: str, issuer: str, audience: str) -> None:
        if time.monotonic() - self.fetched_at >= 60:
            async with self.http.get(self.uri) as resp:
                doc = await resp.json(content_type=None)
            self.keys = {k["kid"]: jwt.PyJWK(k).key for k in doc["keys"]}
            self.fetched_at = time.monotonic()
        kid = jwt.get_unverified_header(token)["kid"]
        if kid not in self.keys:
            raise LookupError(f"unknown kid {kid}")
        jwt.decode(token, self.keys[kid], algorithms=["RS256"], audience=audience, issuer=issuer)


@dataclass
class Tally:
    verified: Counter[str] = field(default_factory=Counter)
    refused: dict[str, list[str]] = field(default_factory=dict)

    def refuse(self, who: str, why: str) -> None:
        self.refused.setdefault(who, []).append(why)


async def test_no_valid_token_is_refused_through_every_kind_of_rotation(
    settings: Settings,
    aiohttp_server: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scaled = ScaledTime()
    monkeypatch.setattr("jwt.jwks_client.time", scaled)
    monkeypatch.setattr("jwt.jwk_set_cache.time", scaled)
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    server: TestServer = await aiohttp_server(
        create_app(replace(settings, issuer=base), clock=SystemClock()), port=port
    )
    ctx: Context = server.app[context_key]
    jwks_uri = f"{base}/.well-known/jwks.json"
    new = await create_client(ctx.store, ctx.clock, name="svc", scopes=["read"], actor="test")
    assert new.client_secret is not None
    form = {
        "grant_type": "client_credentials",
        "client_id": new.client.client_id,
        "client_secret": new.client_secret,
    }
    audience = settings.audience
    # The library's defaults (30 s floor, 300 s default, 1 h ceiling, 30 s cooldown) / SCALE.
    ours = JWKSClient(
        jwks_uri, min_max_age=0.15, default_max_age=1.5, max_max_age=18, cooldown=0.15
    )
    verifier = Verifier(issuer=base, audience=audience, jwks=ours)
    pyjwt_client = jwt.PyJWKClient(jwks_uri)
    tally = Tally()

    async with ClientSession() as http, ours:
        naive = NaiveVerifier(http, jwks_uri)

        async def issue() -> str:
            async with http.post(f"{base}/token", data=form) as resp:
                assert resp.status == 200, await resp.text()
                body: dict[str, Any] = await resp.json()
                return str(body["access_token"])

        def pyjwt_verify(token: str) -> None:
            key = pyjwt_client.get_signing_key_from_jwt(token)
            jwt.decode(token, key.key, algorithms=["RS256"], audience=audience, issuer=base)

        async def round_trip() -> str:
            token = await issue()
            kid = str(jwt.get_unverified_header(token)["kid"])
            try:
                await verifier.verify(token)
                tally.verified["ours"] += 1
            except TokenError as exc:
                tally.refuse("ours", f"{kid[:8]}: {exc.reason}")
            try:
                await asyncio.to_thread(pyjwt_verify, token)
                tally.verified["pyjwt"] += 1
            except jwt.PyJWTError as exc:
                tally.refuse("pyjwt", f"{kid[:8]}: {exc}")
            try:
                await naive.verify(token, base, audience)
                tally.verified["naive"] += 1
            except (LookupError, jwt.PyJWTError) as exc:
                tally.refuse("naive", f"{kid[:8]}: {exc}")
            return kid

        # Three scheduled rotations, by the clock alone.
        signers: list[str] = []
        deadline = time.monotonic() + 4 * settings.key_rotation_interval + 4
        while len(signers) < 4 and time.monotonic() < deadline:
            kid = await round_trip()
            if not signers or signers[-1] != kid:
                signers.append(kid)
            await asyncio.sleep(0.05)
        assert len(signers) >= 4, f"expected three scheduled rotations, saw signers {signers}"

        assert "ours" not in tally.refused, tally.refused.get("ours")
        assert "pyjwt" not in tally.refused, tally.refused.get("pyjwt")
        scheduled = Tally(Counter(tally.verified), {k: list(v) for k, v in tally.refused.items()})

        # An emergency rotation: the new key signs at once, unannounced; this library
        # refetches on the unknown kid and refuses nothing.
        rotated = await ctx.keys.rotate(immediate=True, actor="test")
        for _ in range(20):
            assert await round_trip() == rotated.kid
            await asyncio.sleep(0.05)
        assert "ours" not in tally.refused, tally.refused.get("ours")

        # A compromised key: revoked, so tokens it signed must stop verifying.
        before = await issue()
        compromised = jwt.get_unverified_header(before)["kid"]
        await ctx.keys.revoke(compromised, actor="test")
        revoked_at = time.monotonic()
        refused_after = naive_accepted = None
        while time.monotonic() - revoked_at < ours.cooldown + 2:
            await round_trip()  # live traffic carries the fresh key's kid
            try:
                await verifier.verify(before)
            except TokenError:
                refused_after = time.monotonic() - revoked_at
                break
            await asyncio.sleep(0.05)
        assert refused_after is not None, "a token of the revoked key still verified"
        assert refused_after <= ours.cooldown + 0.5
        while time.monotonic() - revoked_at < 2:
            try:
                await naive.verify(before, base, audience)
            except (LookupError, jwt.PyJWTError):
                break
            naive_accepted = time.monotonic() - revoked_at
            await asyncio.sleep(0.05)

    def refused(who: str, t: Tally = tally) -> int:
        return len(t.refused.get(who, []))

    pyjwt_after = refused("pyjwt") - refused("pyjwt", scheduled)
    naive_after = refused("naive") - refused("naive", scheduled)
    naive_kept = (
        "no time, but only because it had never fetched that key"
        if naive_accepted is None
        else f"{naive_accepted:.2f} s"
    )
    # The control: a verifier that ignores Cache-Control and unknown kids refuses
    # valid tokens at the scheduled rotations (the keys really change under the
    # verifiers) and every token of the unannounced emergency key, and never knew the
    # revoked (emergency) key at all. Were it to refuse nothing, this test could not
    # tell a good verifier from a bad one.
    naive_scheduled = scheduled.refused.get("naive", [])
    naive_later = tally.refused.get("naive", [])[len(naive_scheduled) :]
    assert naive_scheduled, "the naive verifier missed no rotation: nothing was tested"
    assert all("unknown kid" in why for why in naive_scheduled), naive_scheduled
    assert naive_after >= 20, f"the naive verifier accepted emergency-key tokens: {naive_later}"
    # The 20 emergency-key tokens, then those of the key that signs after the revocation.
    assert naive_later[:20] == [f"{rotated.kid[:8]}: unknown kid {rotated.kid}"] * 20
    assert all("unknown kid" in why for why in naive_later), naive_later
    assert naive_accepted is None
    # PyJWKClient refetches on an unknown kid, so it survives the emergency rotation too.
    assert pyjwt_after == 0, tally.refused.get("pyjwt")
    with capsys.disabled():
        print(
            "\nrotation survival, 3 scheduled rotations: "
            f"this library verified {scheduled.verified['ours']} refused 0; "
            f"PyJWKClient verified {scheduled.verified['pyjwt']} refused 0; "
            f"naive verified {scheduled.verified['naive']} refused {refused('naive', scheduled)}"
            "\n  then an immediate rotation and a revocation: "
            f"this library refused no valid token and the revoked key's token after "
            f"{refused_after:.2f} s; PyJWKClient refused {pyjwt_after} valid tokens; "
            f"naive refused {naive_after} valid tokens and kept accepting the revoked key's "
            f"token for {naive_kept} (it fetches once a real minute)"
        )
