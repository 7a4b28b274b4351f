"""The async revocation feed: :class:`issuer.verifier.revocation.FeedState` polled over aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import aiohttp

from issuer.verifier.clock import UnixClock, system_clock
from issuer.verifier.jwks import Sleep, read_limited
from issuer.verifier.lifecycle import Background
from issuer.verifier.revocation import FeedState, RevocationList


class RevocationFeed(Background):
    """Polls the issuer's revocation feed into a :class:`RevocationList`."""

    def __init__(
        self,
        feed_uri: str,
        client_id: str,
        client_secret: str,
        *,
        interval: float = 30.0,
        max_token_lifetime: float = 24 * 3600.0,
        session: aiohttp.ClientSession | None = None,
        clock: UnixClock = system_clock,
        sleep: Sleep = asyncio.sleep,
        timeout: float = 5.0,
        max_pages: int = 100,
        max_bytes: int = 4 * 1024 * 1024,
        framework: str = "aiohttp",
    ) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("interval and timeout must be positive")
        self.state = FeedState(
            feed_uri,
            client_id,
            client_secret,
            max_token_lifetime=max_token_lifetime,
            max_pages=max_pages,
            max_bytes=max_bytes,
            framework=framework,
        )
        self.feed_uri = self.state.feed_uri
        self.client_id = client_id
        self.interval = interval
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._sleep = sleep
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._poller: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"RevocationFeed({self.feed_uri!r}, client_id={self.client_id!r})"

    @property
    def revocations(self) -> RevocationList:
        return self.state.revocations

    @property
    def cursor(self) -> str | None:
        return self.state.cursor

    @property
    def last_success(self) -> float | None:
        return self.state.last_success

    async def start(self) -> None:
        """Poll once (failures are logged) and keep polling every ``interval`` seconds.

        Calling it again while started does nothing.
        """
        if self._poller is not None:
            return
        await self.poll()
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_loop(), name="revocation-feed")

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    def check(self, claims: Mapping[str, Any]) -> None:
        self.state.revocations.check(claims)

    def key_revoked(self, kid: str) -> bool:
        return kid in self.state.revocations.revoked_keys

    async def _poll_loop(self) -> None:
        while True:
            await self._sleep(self.interval)
            await self.poll()

    async def poll(self) -> None:
        """Read every new page; on failure keep the last known list and log one warning."""
        try:
            for _ in range(self.state.max_pages):
                if not await self._read_page():
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # network, status, garbage: keep what we have
            self.state.failed(self._clock(), exc)
        else:
            self.state.succeeded(self._clock())

    async def _read_page(self) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        url, headers = self.state.request()
        async with self._session.get(url, headers=headers, timeout=self._timeout) as resp:
            status = resp.status
            body = await read_limited(resp, self.state.max_bytes) if status == 200 else b""
        return self.state.receive(status, body)
