"""The front doors: ``await Verifier(...).verify(token)`` and ``SyncVerifier(...).verify(token)``.

Both share one policy, one header cache and one verified-token cache; they
differ only in how they wait for a JWKS fetch (a task on the event loop, or a
thread that blocks while another one fetches).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from issuer.verifier.clock import UnixClock, system_clock
from issuer.verifier.core import (
    DEFAULT_MAX_LIFETIME,
    HeaderCache,
    Policy,
    PreparedToken,
    complete_parts,
    prepare_parts,
)
from issuer.verifier.errors import RevokedTokenError
from issuer.verifier.keys import VerificationKey
from issuer.verifier.revocation import KeyRevocationChecker, RevocationChecker

if TYPE_CHECKING:  # named in the base classes below as strings (aiohttp is an extra)
    from issuer.verifier.jwks import JWKSClient  # noqa: F401
    from issuer.verifier.sync import SyncJWKSClient  # noqa: F401

DEFAULT_CACHE_SIZE = 2048


class KeyLookup(Protocol):
    def cached_key(self, kid: str, now: float) -> VerificationKey | None: ...


# A token that verified: (claims, kid, key, valid_from, valid_until), the last two the
# window of ``now`` its claims allow. A tuple: built on every cold verify, and a class
# instance costs several times as much to build.
_Verified = tuple[dict[str, Any], str, VerificationKey, float, float]


J = TypeVar("J", bound=KeyLookup)


class _Base(Generic[J]):
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: J,
        algorithms: Iterable[str] = ("RS256",),
        leeway: float = 60.0,
        max_lifetime: float | None = DEFAULT_MAX_LIFETIME,
        revocations: RevocationChecker | None = None,
        clock: UnixClock = system_clock,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.jwks = jwks
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0 (0 turns the verified-token cache off)")
        self.policy = Policy(
            issuer=issuer,
            audience=audience,
            algorithms=frozenset(algorithms),
            leeway=leeway,
            max_lifetime=max_lifetime,
        )
        self.revocations = revocations
        self._key_revoked: Callable[[str], bool] | None = (
            revocations.key_revoked if isinstance(revocations, KeyRevocationChecker) else None
        )
        self._clock = clock
        self._headers = HeaderCache(self.policy)
        self.cache_size = cache_size
        # Keyed on the whole token text: two spellings of one token are two entries, and no
        # prefix or partial hash can make a forged token hit a verified one.
        self._verified: dict[str | bytes, _Verified] = {}
        self._lock = threading.Lock()

    def _verify_offline(self, token: str | bytes, now: float) -> dict[str, Any] | PreparedToken:
        """The claims, if the token needs no I/O (verified before, or its key is in the
        fresh cached set); otherwise the prepared token, whose key must be fetched.

        One method for the whole no-I/O path, shared by both verifiers: it runs on
        every request, and each call layer costs a noticeable share of a verify.
        """
        jwks = self.jwks
        try:
            hit = self._verified.get(token)
        except TypeError:  # not a string at all: prepare() says why
            hit = None
        if hit is not None:
            claims = self._cached(token, hit, now, jwks)
            if claims is not None:
                return claims
        alg, kid, signing_input, p, s = prepare_parts(token, self.policy, self._headers)
        if self._key_revoked is not None and self._key_revoked(kid):
            raise RevokedTokenError("the key that signed this token was revoked")
        key = jwks.cached_key(kid, now)
        if key is None:
            return PreparedToken(alg, kid, signing_input, p, s)
        return self._complete(token, alg, kid, signing_input, p, s, key, now)

    def _cached(
        self, token: str | bytes, hit: _Verified, now: float, jwks: KeyLookup
    ) -> dict[str, Any] | None:
        """The claims of a token verified before, if every check that can change still holds."""
        claims, kid, key, valid_from, valid_until = hit
        if (
            valid_from <= now < valid_until
            # The key must still be the one in the fresh key set: a key that left the set
            # (or a set that went stale) sends the token back through the full path.
            and jwks.cached_key(kid, now) is key
            and (self._key_revoked is None or not self._key_revoked(kid))
        ):
            if self.revocations is not None:
                self.revocations.check(claims)
            return dict(claims)
        with self._lock:
            self._verified.pop(token, None)
        return None

    def _complete(
        self,
        token: str | bytes,
        alg: str,
        kid: str,
        signing_input: bytes,
        p: bytes,
        s: bytes,
        key: VerificationKey,
        now: float,
    ) -> dict[str, Any]:
        # The window is the ``now`` for which the claim checks that depend on it still hold.
        claims, (start, until) = complete_parts(alg, signing_input, p, s, key, self.policy, now)
        if self.revocations is not None:
            self.revocations.check(claims)
        if self.cache_size:
            entry = (claims, kid, key, start, until)
            # acquire/release rather than ``with``, which costs more than the insert.
            lock = self._lock
            lock.acquire()
            try:
                verified = self._verified
                if len(verified) >= self.cache_size:
                    del verified[next(iter(verified))]  # the oldest entry
                verified[token] = entry
            finally:
                lock.release()
            return dict(claims)
        return claims

    def forget(self) -> None:
        """Empty the verified-token cache."""
        with self._lock:
            self._verified.clear()

    @property
    def cached_tokens(self) -> int:
        return len(self._verified)


class Verifier(_Base["JWKSClient"]):
    """Verifies this issuer's RFC 9068 access tokens offline against a cached JWKS (async).

    The hot path (fresh JWKS, known kid) never awaits I/O: a remembered header,
    one signature check, one payload parse, the claim checks, a dict lookup in
    the revocation list. A token seen before costs one dict lookup plus the
    checks that can change: its time window, its key still in the set and not
    revoked, and the revocation list. ``cache_size`` bounds that cache (0: off).
    """

    async def verify(self, token: str | bytes) -> dict[str, Any]:
        """The token's claims, or exactly one :class:`~issuer.verifier.TokenError` subclass."""
        result = self._verify_offline(token, self._clock())
        if not isinstance(result, PreparedToken):
            return result
        r = result
        key = await self.jwks.get_key(r.kid)
        return self._complete(
            token, r.alg, r.kid, r.signing_input, r.payload, r.signature, key, self._clock()
        )


class SyncVerifier(_Base["SyncJWKSClient"]):
    """:class:`Verifier` for threads (Flask, Django, any WSGI server); safe to share.

    A thread that needs a JWKS fetch blocks while one thread fetches for all of
    them; every other thread keeps verifying from the cache meanwhile.
    """

    def verify(self, token: str | bytes) -> dict[str, Any]:
        """The token's claims, or exactly one :class:`~issuer.verifier.TokenError` subclass."""
        result = self._verify_offline(token, self._clock())
        if not isinstance(result, PreparedToken):
            return result
        r = result
        key = self.jwks.get_key(r.kid)
        return self._complete(
            token, r.alg, r.kid, r.signing_input, r.payload, r.signature, key, self._clock()
        )


__all__ = ["DEFAULT_CACHE_SIZE", "SyncVerifier", "Verifier"]
