"""Revocation for offline verifiers: a deny list polled from the issuer's feed.

The issuer keeps revoked access tokens (logout, admin action) on a deny list
until they expire (the RFC 7009 idea, pushed to resource services instead of
asked per token). ``GET /revocations?after=CURSOR``, authenticated with
``client_secret_basic`` (RFC 6749 §2.3.1), answers::

    {"items": [{"jti": "...", "exp": 1700000000},
               {"sub": "...", "revoked_before": 1700000000}],
     "next": "<opaque cursor>"}

A ``jti`` item deny-lists one token until its ``exp``; a ``sub`` item cuts off
every token of that subject issued at or before ``revoked_before``. The client
passes ``next`` back as ``after``; no ``after`` means from the beginning.
Revocation thus reaches offline verifiers within one poll interval.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import quote_plus

import aiohttp

from issuer.verifier.clock import UnixClock, system_clock
from issuer.verifier.errors import RevokedTokenError
from issuer.verifier.jwks import Sleep, read_limited
from issuer.verifier.lifecycle import Background

log = logging.getLogger("issuer.verifier.revocation")


class RevocationChecker(Protocol):
    """What :class:`~issuer.verifier.Verifier` asks after the signature and claims passed."""

    def check(self, claims: Mapping[str, Any]) -> None:
        """Raise :class:`RevokedTokenError` when the token is revoked."""
        ...


def _number(value: Any) -> float | None:
    if type(value) in (int, float) and math.isfinite(value):
        return float(value)
    return None


class RevocationList:
    """Deny-listed jtis and per-subject cut-offs. Pure: no I/O, ``now`` is an argument.

    Entries are dropped once they can no longer matter: a jti after its ``exp``
    plus ``grace`` (a verifier's leeway may still accept it until then), a
    cut-off after ``max_token_lifetime`` plus ``grace`` (every token issued
    before it has expired by then).
    """

    def __init__(self, *, max_token_lifetime: float = 24 * 3600.0, grace: float = 300.0) -> None:
        self.max_token_lifetime = max_token_lifetime
        self.grace = grace
        self.denied: dict[str, float] = {}
        self.cutoffs: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.denied) + len(self.cutoffs)

    def apply(self, items: Iterable[Any]) -> int:
        """Add feed items; returns how many were not understood (and skipped)."""
        skipped = 0
        for item in items:
            if not isinstance(item, dict):
                skipped += 1
                continue
            jti, exp = item.get("jti"), _number(item.get("exp"))
            sub, before = item.get("sub"), _number(item.get("revoked_before"))
            if isinstance(jti, str) and jti and exp is not None:
                self.denied[jti] = max(exp, self.denied.get(jti, exp))
            elif isinstance(sub, str) and sub and before is not None:
                self.cutoffs[sub] = max(before, self.cutoffs.get(sub, before))
            else:
                skipped += 1
        return skipped

    def prune(self, now: float) -> None:
        self.denied = {j: e for j, e in self.denied.items() if e + self.grace > now}
        horizon = now - self.max_token_lifetime - self.grace
        self.cutoffs = {s: b for s, b in self.cutoffs.items() if b > horizon}

    def check(self, claims: Mapping[str, Any]) -> None:
        jti = claims.get("jti")
        if jti is not None and jti in self.denied:
            raise RevokedTokenError("token has been revoked")
        if self.cutoffs:
            sub = claims.get("sub")
            before = self.cutoffs.get(sub) if isinstance(sub, str) else None
            if before is not None:
                iat = _number(claims.get("iat"))
                # No iat means we cannot show it was issued after the cut-off.
                if iat is None or iat <= before:
                    raise RevokedTokenError("the subject's tokens have been revoked")


class RevocationFeedError(Exception):
    """The feed answered something that is not a feed page (internal, never raised out)."""


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
    ) -> None:
        if interval <= 0 or timeout <= 0 or max_pages < 1:
            raise ValueError("interval and timeout must be positive, max_pages at least 1")
        self.feed_uri = feed_uri
        self.client_id = client_id
        # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
        pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
        self._authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        self.interval = interval
        self.revocations = RevocationList(max_token_lifetime=max_token_lifetime)
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._sleep = sleep
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_pages = max_pages
        self._max_bytes = max_bytes
        self.cursor: str | None = None
        self._failing = False
        self._poller: asyncio.Task[None] | None = None
        self.last_success: float | None = None

    def __repr__(self) -> str:
        return f"RevocationFeed({self.feed_uri!r}, client_id={self.client_id!r})"

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
        self.revocations.check(claims)

    async def _poll_loop(self) -> None:
        while True:
            await self._sleep(self.interval)
            await self.poll()

    async def poll(self) -> None:
        """Read every new page; on failure keep the last known list and log one warning."""
        try:
            for _ in range(self._max_pages):
                if not await self._read_page():
                    break
            self.revocations.prune(self._clock())
            self.last_success = self._clock()
            if self._failing:
                log.info("revocation feed %s answers again", self.feed_uri)
            self._failing = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # network, status, garbage: keep what we have
            self.revocations.prune(self._clock())
            if not self._failing:
                self._failing = True
                log.warning(
                    "revocation feed %s could not be read (%s): keeping the last known "
                    "list of %d entries",
                    self.feed_uri,
                    str(exc) or type(exc).__name__,
                    len(self.revocations),
                )

    async def _read_page(self) -> bool:
        """One page; True when it had items (there may be more)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        params = {} if self.cursor is None else {"after": self.cursor}
        headers = {"Authorization": self._authorization, "Accept": "application/json"}
        async with self._session.get(
            self.feed_uri, params=params, headers=headers, timeout=self._timeout
        ) as resp:
            if resp.status != 200:
                raise RevocationFeedError(f"HTTP {resp.status}")
            body = await read_limited(resp, self._max_bytes)
        try:
            page = json.loads(body)
        except ValueError:
            raise RevocationFeedError("page is not JSON") from None
        items = page.get("items") if isinstance(page, dict) else None
        cursor = page.get("next") if isinstance(page, dict) else None
        if not isinstance(items, list) or not isinstance(cursor, str):
            raise RevocationFeedError("page has no items list or next cursor")
        skipped = self.revocations.apply(items)
        if skipped:
            log.warning("revocation feed %s: skipped %d malformed items", self.feed_uri, skipped)
        moved = cursor != self.cursor
        self.cursor = cursor
        return bool(items) and moved
