"""A JWKS cache for resource services (RFC 7517 §5), HTTP-cache correct.

- Conditional refetch with ``If-None-Match`` (RFC 9110 §13.1.2); ``304`` only
  renews freshness, the parsed keys are kept.
- Freshness from ``Cache-Control: max-age`` minus ``Age`` (RFC 9111 §4.2),
  clamped to ``[min_max_age, max_max_age]``; a background task refreshes once
  ``refresh_ahead`` of that lifetime is left, so requests rarely wait.
- An unknown ``kid`` triggers at most one fetch per ``cooldown``, shared by all
  concurrent callers (single flight): a flood of made-up kids costs one request.
- When the issuer is unreachable or answers garbage, the cached keys stay in
  use for ``stale_if_error`` seconds past their freshness (RFC 5861 §4), with
  one warning in the log; after that, verification fails closed with
  :class:`KeySetUnavailableError`.
- Keys are parsed once per JWKS change (an identical body is not reparsed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

import aiohttp

from issuer.verifier.clock import UnixClock, system_clock
from issuer.verifier.errors import KeySetUnavailableError, UnknownKeyError
from issuer.verifier.keys import VerificationKey, load_jwks
from issuer.verifier.lifecycle import Background

log = logging.getLogger("issuer.verifier.jwks")

Sleep = Callable[[float], Awaitable[None]]
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|$|=)", re.IGNORECASE)


class JWKSFetchError(Exception):
    """The JWKS endpoint did not answer with a usable key set (internal, never raised out)."""


def freshness_lifetime(headers: Mapping[str, str], default: float) -> float:
    """Seconds a response stays fresh: max-age minus Age (RFC 9111 §4.2.1, §4.2.3)."""
    cache_control = ",".join(v for k, v in headers.items() if k.lower() == "cache-control")
    if _NO_CACHE.search(cache_control):
        return 0.0
    match = _MAX_AGE.search(cache_control)
    if match is None:
        return default
    lifetime = float(match.group(1))
    age = headers.get("Age", "")
    if age.isdigit():
        lifetime -= float(age)
    return max(lifetime, 0.0)


async def read_limited(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The response body, refused (ValueError) once it passes ``max_bytes``."""
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise ValueError("response body is too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise ValueError("response body is too large")
        chunks.append(chunk)
    return b"".join(chunks)


class JWKSClient(Background):
    """Fetches and caches one issuer's JWKS; use as ``async with JWKSClient(uri) as jwks``."""

    def __init__(
        self,
        jwks_uri: str,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: UnixClock = system_clock,
        sleep: Sleep = asyncio.sleep,
        default_max_age: float = 300.0,
        min_max_age: float = 30.0,
        max_max_age: float = 3600.0,
        refresh_ahead: float = 0.2,
        cooldown: float = 30.0,
        stale_if_error: float = 3600.0,
        timeout: float = 5.0,
        max_bytes: int = 512 * 1024,
        background_refresh: bool = True,
    ) -> None:
        if not 0 < min_max_age <= default_max_age <= max_max_age:
            raise ValueError("need 0 < min_max_age <= default_max_age <= max_max_age")
        if not 0 <= refresh_ahead < 1:
            raise ValueError("refresh_ahead is a fraction of max-age in [0, 1)")
        if cooldown <= 0 or stale_if_error < 0 or timeout <= 0:
            raise ValueError("cooldown and timeout must be positive, stale_if_error >= 0")
        self.jwks_uri = jwks_uri
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._sleep = sleep
        self._default_max_age = default_max_age
        self._min_max_age = min_max_age
        self._max_max_age = max_max_age
        self._refresh_ahead = refresh_ahead
        self.cooldown = cooldown
        self.stale_if_error = stale_if_error
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_bytes = max_bytes
        self._background_refresh = background_refresh

        self._keys: dict[str, VerificationKey] = {}
        self._loaded = False
        self._etag: str | None = None
        self._digest: bytes | None = None
        self._fresh_until = -math.inf
        self._refresh_at = -math.inf
        self._next_on_demand = -math.inf
        self._failing = False
        self._closed_logged = False
        self._inflight: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._started = False
        self.fetches = 0
        """Requests sent so far (200, 304 or failed): for metrics and tests."""

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Fetch once (failures are logged, not raised) and start the background refresh.

        Calling it again while started does nothing.
        """
        if self._started:
            return
        self._started = True
        await self.refresh()
        if self._background_refresh and self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_loop(), name="jwks-refresh")

    async def close(self) -> None:
        """Stop the background task, drop an in-flight fetch, close an owned session."""
        for task in (self._refresher, self._inflight):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._refresher = self._inflight = None
        self._started = False
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    # -- lookups -----------------------------------------------------------------

    @property
    def keys(self) -> Mapping[str, VerificationKey]:
        """The keys as last fetched (whether fresh, stale or past use)."""
        return MappingProxyType(self._keys)

    def cached_key(self, kid: str, now: float) -> VerificationKey | None:
        """The fast path: the key for ``kid`` if the cached set is fresh, else None."""
        if now < self._fresh_until:
            return self._keys.get(kid)
        return None

    async def get_key(self, kid: str) -> VerificationKey:
        """The key for ``kid``, fetching when the set is stale or the kid is new."""
        now = self._clock()
        if now < self._fresh_until:
            key = self._keys.get(kid)
            if key is not None:
                return key
            # A kid we have never seen: refetch, at most once per cooldown.
            await self._fetch_on_demand(now)
        elif not self._failing or now >= self._next_on_demand:
            # Merely stale: an ordinary refresh (shared by concurrent callers). It does not
            # spend the unknown-kid cooldown, or an emergency rotation arriving just after
            # it would be refused for a whole cooldown; a failing issuer is still retried
            # at most once per cooldown.
            await self.refresh()
        now = self._clock()
        if now >= self._fresh_until + self.stale_if_error:
            if self._loaded and not self._closed_logged:
                self._closed_logged = True
                log.error(
                    "JWKS %s could not be refreshed for longer than stale-if-error (%.0f s): "
                    "refusing all tokens until it answers",
                    self.jwks_uri,
                    self.stale_if_error,
                )
            raise KeySetUnavailableError("the issuer's key set is unavailable")
        key = self._keys.get(kid)
        if key is None:
            raise UnknownKeyError("no key with this kid")
        return key

    # -- fetching ----------------------------------------------------------------

    async def refresh(self) -> None:
        """Fetch now (or join the fetch in flight). Never raises for HTTP trouble."""
        task = self._inflight
        if task is None:
            task = asyncio.create_task(self._fetch(), name="jwks-fetch")
            self._inflight = task
            task.add_done_callback(self._clear_inflight)
        # shield: one caller giving up (cancelled) must not cancel the shared fetch.
        await asyncio.shield(task)

    def _clear_inflight(self, task: asyncio.Task[None]) -> None:
        if self._inflight is task:
            self._inflight = None

    async def _fetch_on_demand(self, now: float) -> None:
        if self._inflight is not None:
            await self.refresh()
            return
        if now < self._next_on_demand:
            return
        self._next_on_demand = now + self.cooldown
        await self.refresh()

    def refresh_due(self) -> float:
        """Seconds until the background task should fetch again (0 when overdue)."""
        if self._failing or not self._loaded:
            return self.cooldown
        return max(0.0, self._refresh_at - self._clock())

    async def _refresh_loop(self) -> None:
        while True:
            # A floor of one second keeps a misbehaving clock from spinning the loop.
            await self._sleep(max(self.refresh_due(), 1.0))
            await self.refresh()

    async def _fetch(self) -> None:
        now = self._clock()
        headers = {"Accept": "application/jwk-set+json, application/json"}
        conditional = self._loaded and self._etag is not None
        if conditional:
            assert self._etag is not None
            headers["If-None-Match"] = self._etag
        self.fetches += 1
        try:
            if self._session is None:
                self._session = aiohttp.ClientSession()
                self._owns_session = True
            async with self._session.get(
                self.jwks_uri, headers=headers, timeout=self._timeout
            ) as resp:
                lifetime = freshness_lifetime(resp.headers, self._default_max_age)
                if resp.status == 304 and conditional:
                    self._mark_fresh(now, lifetime)
                    return
                if resp.status != 200:
                    raise JWKSFetchError(f"HTTP {resp.status}")
                body = await read_limited(resp, self._max_bytes)
                etag = resp.headers.get("ETag")
            digest = hashlib.sha256(body).digest()
            if digest != self._digest or not self._loaded:
                try:
                    keys = load_jwks(body)
                except Exception as exc:  # garbage from the issuer: keep the old keys
                    raise JWKSFetchError(f"not a JWKS ({type(exc).__name__})") from None
                self._keys = keys
                self._digest = digest
                self._loaded = True
            self._etag = etag
            self._mark_fresh(now, lifetime)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # network, timeout, HTTP status, garbage: all the same here
            self._on_failure(now, exc)

    def _mark_fresh(self, now: float, lifetime: float) -> None:
        lifetime = min(max(lifetime, self._min_max_age), self._max_max_age)
        self._fresh_until = now + lifetime
        self._refresh_at = now + lifetime * (1 - self._refresh_ahead)
        if self._failing:
            log.info("JWKS %s answers again", self.jwks_uri)
        self._failing = False
        self._closed_logged = False

    def _on_failure(self, now: float, exc: Exception) -> None:
        # Requests do not retry a failing issuer more than once per cooldown either.
        self._next_on_demand = max(self._next_on_demand, now + self.cooldown)
        if self._failing:
            return
        self._failing = True
        reason = str(exc) or type(exc).__name__
        if self._loaded:
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
