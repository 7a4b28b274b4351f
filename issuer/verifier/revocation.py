"""Revocation for offline verifiers: a deny list polled from the issuer's feed.

The issuer keeps revoked access tokens (logout, admin action) on a deny list
until they expire (the RFC 7009 idea, pushed to resource services instead of
asked per token). ``GET /revocations?after=CURSOR``, authenticated with
``client_secret_basic`` (RFC 6749 §2.3.1), answers::

    {"items": [{"jti": "...", "exp": 1700000000},
               {"sub": "...", "revoked_before": 1700000000}],
     "next": "<opaque cursor>"}

               {"kid": "...", "revoked_at": 1700000000}],

A ``jti`` item deny-lists one token until its ``exp``; a ``sub`` item cuts off
every token of that subject issued at or before ``revoked_before``; a ``kid``
item says the signing key ``kid`` was revoked (compromised) at ``revoked_at``:
every token it signed is refused from then on, whatever the cached JWKS says.
The client passes ``next`` back as ``after``; no ``after`` means from the
beginning. Revocation thus reaches offline verifiers within one poll interval.

:class:`RevocationList` and :class:`FeedState` are the feed without I/O; the
async :class:`RevocationFeed` (aiohttp) here and the sync one in
:mod:`issuer.verifier.sync` drive them.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote_plus, urlencode

from issuer.verifier.cache import check_url, user_agent
from issuer.verifier.errors import RevokedTokenError

log = logging.getLogger("issuer.verifier.revocation")


class RevocationChecker(Protocol):
    """What :class:`~issuer.verifier.Verifier` asks after the signature and claims passed."""

    def check(self, claims: Mapping[str, Any]) -> None:
        """Raise :class:`RevokedTokenError` when the token is revoked."""
        ...


@runtime_checkable
class KeyRevocationChecker(Protocol):
    """A revocation checker that also knows revoked signing keys (the feed's ``kid`` items)."""

    def key_revoked(self, kid: str) -> bool: ...


def _number(value: Any) -> float | None:
    if type(value) in (int, float) and math.isfinite(value):
        return float(value)
    return None


class RevocationList:
    """Deny-listed jtis and per-subject cut-offs. Pure: no I/O, ``now`` is an argument.

    Entries are dropped once they can no longer matter: a jti after its ``exp``
    plus ``grace`` (a verifier's leeway may still accept it until then), a
    cut-off after ``max_token_lifetime`` plus ``grace`` (every token issued
    before it has expired by then). Revoked keys are never dropped: they are
    few, and a key that comes back in a stale JWKS must stay refused.
    """

    def __init__(self, *, max_token_lifetime: float = 24 * 3600.0, grace: float = 300.0) -> None:
        self.max_token_lifetime = max_token_lifetime
        self.grace = grace
        self.denied: dict[str, float] = {}
        self.cutoffs: dict[str, float] = {}
        self.revoked_keys: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.denied) + len(self.cutoffs) + len(self.revoked_keys)

    def apply(self, items: Iterable[Any]) -> int:
        """Add feed items; returns how many were not understood (and skipped)."""
        skipped = 0
        for item in items:
            if not isinstance(item, dict):
                skipped += 1
                continue
            jti, exp = item.get("jti"), _number(item.get("exp"))
            sub, before = item.get("sub"), _number(item.get("revoked_before"))
            kid, revoked_at = item.get("kid"), _number(item.get("revoked_at"))
            if isinstance(jti, str) and jti and exp is not None:
                self.denied[jti] = max(exp, self.denied.get(jti, exp))
            elif isinstance(sub, str) and sub and before is not None:
                self.cutoffs[sub] = max(before, self.cutoffs.get(sub, before))
            elif isinstance(kid, str) and kid and revoked_at is not None:
                self.revoked_keys[kid] = min(revoked_at, self.revoked_keys.get(kid, revoked_at))
            else:
                skipped += 1
        return skipped

    def prune(self, now: float) -> None:
        self.denied = {j: e for j, e in self.denied.items() if e + self.grace > now}
        horizon = now - self.max_token_lifetime - self.grace
        self.cutoffs = {s: b for s, b in self.cutoffs.items() if b > horizon}

    def key_revoked(self, kid: str) -> bool:
        return kid in self.revoked_keys

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


class FeedState:
    """The feed client without I/O: the next request, the cursor, the pages applied."""

    def __init__(
        self,
        feed_uri: str,
        client_id: str,
        client_secret: str,
        *,
        max_token_lifetime: float = 24 * 3600.0,
        max_pages: int = 100,
        max_bytes: int = 4 * 1024 * 1024,
        framework: str = "python",
    ) -> None:
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        self.feed_uri = check_url(feed_uri, "the revocation feed URL")
        self.client_id = client_id
        # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
        pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
        self.authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        self.revocations = RevocationList(max_token_lifetime=max_token_lifetime)
        self.max_pages = max_pages
        self.max_bytes = max_bytes
        self.framework = framework
        self.cursor: str | None = None
        self.failing = False
        self.last_success: float | None = None

    def __repr__(self) -> str:
        return f"FeedState({self.feed_uri!r}, client_id={self.client_id!r})"

    def request(self) -> tuple[str, dict[str, str]]:
        """The URL of the next page and the request headers."""
        url = self.feed_uri
        if self.cursor is not None:
            url += ("&" if "?" in url else "?") + urlencode({"after": self.cursor})
        headers = {
            "Authorization": self.authorization,
            "Accept": "application/json",
            "User-Agent": user_agent(self.framework),
        }
        return url, headers

    def receive(self, status: int, body: bytes) -> bool:
        """Apply one page; True when it had items (there may be more)."""
        if status != 200:
            raise RevocationFeedError(f"HTTP {status}")
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

    def succeeded(self, now: float) -> None:
        self.revocations.prune(now)
        self.last_success = now
        if self.failing:
            log.info("revocation feed %s answers again", self.feed_uri)
        self.failing = False

    def failed(self, now: float, exc: BaseException) -> None:
        """Keep the last known list and log one warning per outage."""
        self.revocations.prune(now)
        if not self.failing:
            self.failing = True
            log.warning(
                "revocation feed %s could not be read (%s): keeping the last known "
                "list of %d entries",
                self.feed_uri,
                str(exc) or type(exc).__name__,
                len(self.revocations),
            )
