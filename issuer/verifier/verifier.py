"""The async front door: ``await Verifier(...).verify(token)`` -> claims or one TokenError."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from issuer.verifier.clock import UnixClock, system_clock
from issuer.verifier.core import DEFAULT_MAX_LIFETIME, HeaderCache, Policy, complete, prepare
from issuer.verifier.jwks import JWKSClient
from issuer.verifier.revocation import RevocationChecker


class Verifier:
    """Verifies this issuer's RFC 9068 access tokens offline against a cached JWKS.

    The hot path (fresh JWKS, known kid) never awaits I/O: a remembered header,
    one signature check, one payload parse, the claim checks, a dict lookup in
    the revocation list.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: JWKSClient,
        algorithms: Iterable[str] = ("RS256",),
        leeway: float = 60.0,
        max_lifetime: float | None = DEFAULT_MAX_LIFETIME,
        revocations: RevocationChecker | None = None,
        clock: UnixClock = system_clock,
    ) -> None:
        self.policy = Policy(
            issuer=issuer,
            audience=audience,
            algorithms=frozenset(algorithms),
            leeway=leeway,
            max_lifetime=max_lifetime,
        )
        self.jwks = jwks
        self.revocations = revocations
        self._clock = clock
        self._headers = HeaderCache(self.policy)

    async def verify(self, token: str | bytes) -> dict[str, Any]:
        """The token's claims, or exactly one :class:`~issuer.verifier.TokenError` subclass."""
        now = self._clock()
        prepared = prepare(token, self.policy, self._headers)
        key = self.jwks.cached_key(prepared.kid, now)
        if key is None:
            key = await self.jwks.get_key(prepared.kid)
            now = self._clock()
        claims = complete(prepared, key, self.policy, now)
        if self.revocations is not None:
            self.revocations.check(claims)
        return claims
