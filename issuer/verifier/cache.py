"""The JWKS cache policy without I/O (RFC 7517 §5, RFC 9111, RFC 5861), after h11's split.

:class:`JWKSCache` holds the keys and decides; a transport (aiohttp in
:mod:`issuer.verifier.jwks`, the standard library in :mod:`issuer.verifier.sync`)
sends the request it is given and reports what came back. Both transports
therefore share one policy:

- Conditional refetch with ``If-None-Match`` (RFC 9110 §13.1.2); ``304`` only
  renews freshness, the parsed keys are kept.
- Freshness from ``Cache-Control: max-age`` minus ``Age`` (RFC 9111 §4.2),
  clamped to ``[min_max_age, max_max_age]``; the background refresh runs once
  ``refresh_ahead`` of that lifetime is left, so requests rarely wait.
- An unknown ``kid`` triggers at most one fetch per ``cooldown``; the transport
  shares one fetch between concurrent callers (single flight).
- When the issuer is unreachable or answers garbage, the cached keys stay in
  use for ``stale_if_error`` seconds past their freshness, with one warning in
  the log; after that, verification fails closed with
  :class:`KeySetUnavailableError`.
- Keys are parsed once per JWKS change (an identical body is not reparsed).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlsplit

from issuer import __version__
from issuer.verifier.errors import KeySetUnavailableError, UnknownKeyError
from issuer.verifier.keys import VerificationKey, load_jwks

log = logging.getLogger("issuer.verifier.jwks")

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|$|=)", re.IGNORECASE)


def user_agent(framework: str) -> str:
    """``issuer-verifier/VERSION (framework)``: operators see who fetches the JWKS and feed."""
    return f"issuer-verifier/{__version__} ({framework})"


def check_url(url: str, what: str) -> str:
    """Refuse a URL that would carry keys or revocations in clear text.

    Only ``https://`` is accepted, except for a loopback host (a sidecar or a
    test): a JWKS fetched over plain HTTP lets anyone on the path substitute
    their own keys (RFC 8725 §3.10 asks for a trusted source of keys).
    """
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return url
    raise ValueError(f"{what} must be an https:// URL (http:// only for a loopback host): {url!r}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def freshness_lifetime(headers: Mapping[str, str], default: float) -> float:
    """Seconds a response stays fresh: max-age minus Age (RFC 9111 §4.2.1, §4.2.3).

    Header names compare case-insensitively; repeated fields are joined with ``,``.
    """
    cache_control = ",".join(v for k, v in headers.items() if k.lower() == "cache-control")
    if _NO_CACHE.search(cache_control):
        return 0.0
    match = _MAX_AGE.search(cache_control)
    if match is None:
        return default
    lifetime = float(match.group(1))
    age = next((v for k, v in headers.items() if k.lower() == "age"), "")
    if age.isdigit():
        lifetime -= float(age)
    return max(lifetime, 0.0)


class JWKSFetchError(Exception):
    """The JWKS endpoint did not answer with a usable key set (internal, never raised out)."""


@dataclass(frozen=True, slots=True)
class Fetch:
    """One request the transport must send: GET ``url`` with ``headers``."""

    url: str
    headers: Mapping[str, str]
    started: float
    conditional: bool


class JWKSCache:
    """One issuer's key set and the rules for when to fetch it. No I/O, ``now`` is given.

    Not locked: an async transport uses it from one event loop; the sync
    transport calls its mutating methods under its own lock.
    """

    def __init__(
        self,
        jwks_uri: str,
        *,
        default_max_age: float = 300.0,
        min_max_age: float = 30.0,
        max_max_age: float = 3600.0,
        refresh_ahead: float = 0.2,
        cooldown: float = 30.0,
        stale_if_error: float = 3600.0,
        max_bytes: int = 512 * 1024,
        framework: str = "python",
    ) -> None:
        if not 0 < min_max_age <= default_max_age <= max_max_age:
            raise ValueError("need 0 < min_max_age <= default_max_age <= max_max_age")
        if not 0 <= refresh_ahead < 1:
            raise ValueError("refresh_ahead is a fraction of max-age in [0, 1)")
        if cooldown <= 0 or stale_if_error < 0:
            raise ValueError("cooldown must be positive, stale_if_error >= 0")
        self.jwks_uri = check_url(jwks_uri, "the JWKS URL")
        self.default_max_age = default_max_age
        self.min_max_age = min_max_age
        self.max_max_age = max_max_age
        self.refresh_ahead = refresh_ahead
        self.cooldown = cooldown
        self.stale_if_error = stale_if_error
        self.max_bytes = max_bytes
        self.framework = framework

        self.keys: Mapping[str, VerificationKey] = MappingProxyType({})
        self.loaded = False
        self.etag: str | None = None
        self._digest: bytes | None = None
        self.fresh_until = -math.inf
        self._refresh_at = -math.inf
        self._next_on_demand = -math.inf
        self.failing = False
        self._closed_logged = False
        self.fetches = 0
        """Requests sent so far (200, 304 or failed): for metrics and tests."""

    # -- decisions ---------------------------------------------------------------

    def cached_key(self, kid: str, now: float) -> VerificationKey | None:
        """The fast path: the key for ``kid`` if the cached set is fresh, else None."""
        if now < self.fresh_until:
            return self.keys.get(kid)
        return None

    def should_fetch(self, kid: str, now: float, *, in_flight: bool) -> bool:
        """Must a caller that wants ``kid`` fetch (or join the fetch in flight) first?

        A kid never seen in a fresh set fetches at most once per cooldown (a flood
        of made-up kids costs one request). A merely stale set is an ordinary
        refresh: it does not spend the unknown-kid cooldown, or an emergency
        rotation arriving just after it would be refused for a whole cooldown; a
        failing issuer is still retried at most once per cooldown.
        """
        if now < self.fresh_until:
            if kid in self.keys:
                return False
            if in_flight:
                return True
            if now < self._next_on_demand:
                return False
            self._next_on_demand = now + self.cooldown
            return True
        return in_flight or not self.failing or now >= self._next_on_demand

    def key_after_fetch(self, kid: str, now: float) -> VerificationKey:
        """The key for ``kid`` from what is cached now, or why there is none."""
        if now >= self.fresh_until + self.stale_if_error:
            if self.loaded and not self._closed_logged:
                self._closed_logged = True
                log.error(
                    "JWKS %s could not be refreshed for longer than stale-if-error (%.0f s): "
                    "refusing all tokens until it answers",
                    self.jwks_uri,
                    self.stale_if_error,
                )
            raise KeySetUnavailableError("the issuer's key set is unavailable")
        key = self.keys.get(kid)
        if key is None:
            raise UnknownKeyError("no key with this kid")
        return key

    def refresh_due(self, now: float) -> float:
        """Seconds until the background refresh should fetch again (0 when overdue)."""
        if self.failing or not self.loaded:
            return self.cooldown
        return max(0.0, self._refresh_at - now)

    # -- one fetch ---------------------------------------------------------------

    def start_fetch(self, now: float) -> Fetch:
        headers = {
            "Accept": "application/jwk-set+json, application/json",
            "User-Agent": user_agent(self.framework),
        }
        conditional = self.loaded and self.etag is not None
        if conditional:
            assert self.etag is not None
            headers["If-None-Match"] = self.etag
        self.fetches += 1
        return Fetch(self.jwks_uri, headers, now, conditional)

    def receive(self, fetch: Fetch, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """The answer (lower-case header names). Never raises: trouble counts as a failure."""
        try:
            lifetime = freshness_lifetime(headers, self.default_max_age)
            if status == 304 and fetch.conditional:
                self._mark_fresh(fetch.started, lifetime)
                return
            if status != 200:
                raise JWKSFetchError(f"HTTP {status}")
            if len(body) > self.max_bytes:
                raise JWKSFetchError("response body is too large")
            digest = hashlib.sha256(body).digest()
            if digest != self._digest or not self.loaded:
                try:
                    keys = load_jwks(body)
                except Exception as exc:  # garbage from the issuer: keep the old keys
                    raise JWKSFetchError(f"not a JWKS ({type(exc).__name__})") from None
                self.keys = MappingProxyType(keys)
                self._digest = digest
                self.loaded = True
            self.etag = headers.get("etag")
            self._mark_fresh(fetch.started, lifetime)
        except JWKSFetchError as exc:
            self.fail(fetch, exc)

    def fail(self, fetch: Fetch, exc: BaseException) -> None:
        """The request failed (network, timeout, a body too large, ...)."""
        now = fetch.started
        # Requests do not retry a failing issuer more than once per cooldown either.
        self._next_on_demand = max(self._next_on_demand, now + self.cooldown)
        if self.failing:
            return
        self.failing = True
        reason = str(exc) or type(exc).__name__
        if self.loaded:
            log.warning(
                "JWKS %s could not be fetched (%s): using the cached keys for up to %.0f s "
                "past their freshness (stale-if-error)",
                self.jwks_uri,
                reason,
                self.stale_if_error,
            )
        else:
            log.warning(
                "JWKS %s could not be fetched (%s): no keys cached, tokens are refused",
                self.jwks_uri,
                reason,
            )

    def _mark_fresh(self, now: float, lifetime: float) -> None:
        lifetime = min(max(lifetime, self.min_max_age), self.max_max_age)
        self.fresh_until = now + lifetime
        self._refresh_at = now + lifetime * (1 - self.refresh_ahead)
        if self.failing:
            log.info("JWKS %s answers again", self.jwks_uri)
        self.failing = False
        self._closed_logged = False
