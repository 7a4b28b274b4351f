"""The async JWKS client: the policy of :class:`issuer.verifier.cache.JWKSCache` over aiohttp.

The cache rules (max-age, refresh-ahead, unknown-kid cooldown, stale-if-error,
ETag) live in :mod:`issuer.verifier.cache`; this module sends the requests it
asks for, shares one fetch between concurrent callers (single flight) and runs
the background refresh as a task. :mod:`issuer.verifier.sync` is the same over
the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

import aiohttp

from issuer.verifier.cache import Fetch, JWKSCache, freshness_lifetime
from issuer.verifier.clock import UnixClock, system_clock
from issuer.verifier.keys import VerificationKey
from issuer.verifier.lifecycle import Background

Sleep = Callable[[float], Awaitable[None]]

__all__ = ["JWKSClient", "Sleep", "freshness_lifetime", "lower_headers", "read_limited"]


def lower_headers(resp: aiohttp.ClientResponse) -> dict[str, str]:
    """Response headers by lower-case name, repeated fields joined with ``,``."""
    out: dict[str, str] = {}
    for name, value in resp.headers.items():
        key = name.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


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
        framework: str = "aiohttp",
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.cache = JWKSCache(
            jwks_uri,
            default_max_age=default_max_age,
            min_max_age=min_max_age,
            max_max_age=max_max_age,
            refresh_ahead=refresh_ahead,
            cooldown=cooldown,
            stale_if_error=stale_if_error,
            max_bytes=max_bytes,
            framework=framework,
        )
        self.jwks_uri = self.cache.jwks_uri
        # The fast path, once per verify (the key for ``kid`` if the cached set is fresh,
        # else None): the cache's own method, bound here rather than called through one.
        self.cached_key: Callable[[str, float], VerificationKey | None] = self.cache.cached_key
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._sleep = sleep
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._background_refresh = background_refresh
        self._inflight: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._started = False

    @property
    def cooldown(self) -> float:
        return self.cache.cooldown

    @property
    def stale_if_error(self) -> float:
        return self.cache.stale_if_error

    @property
    def fetches(self) -> int:
        """Requests sent so far (200, 304 or failed): for metrics and tests."""
        return self.cache.fetches

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
        return self.cache.keys

    async def get_key(self, kid: str) -> VerificationKey:
        """The key for ``kid``, fetching when the set is stale or the kid is new."""
        if self.cache.should_fetch(kid, self._clock(), in_flight=self._inflight is not None):
            await self.refresh()
        return self.cache.key_after_fetch(kid, self._clock())

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

    def refresh_due(self) -> float:
        """Seconds until the background task should fetch again (0 when overdue)."""
        return self.cache.refresh_due(self._clock())

    async def _refresh_loop(self) -> None:
        while True:
            # A floor of one second keeps a misbehaving clock from spinning the loop.
            await self._sleep(max(self.refresh_due(), 1.0))
            await self.refresh()

    async def _fetch(self) -> None:
        fetch: Fetch = self.cache.start_fetch(self._clock())
        try:
            if self._session is None:
                self._session = aiohttp.ClientSession()
                self._owns_session = True
            async with self._session.get(
                fetch.url, headers=dict(fetch.headers), timeout=self._timeout
            ) as resp:
                status, headers = resp.status, lower_headers(resp)
                body = await read_limited(resp, self.cache.max_bytes) if status == 200 else b""
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # network, timeout, a body too large: all the same here
            self.cache.fail(fetch, exc)
            return
        self.cache.receive(fetch, status, headers, body)
