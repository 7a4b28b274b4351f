"""Login throttling (OWASP ASVS 2.2.1; RFC 6749 §10.10): per username and per address.

Counters live in the database, one row per (kind, key, fixed window), so every
worker and replica counts the same attempts. An attempt is counted *before*
the password is checked (one atomic upsert that returns the new count), so a
burst of parallel guesses cannot all slip past the check; a successful login
then takes its attempt back. Throttling answers 429 until the window ends and
never locks an account for good; unknown usernames are throttled alike, so the
answer tells nothing about which usernames exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from issuer.clock import Clock
from issuer.config import Settings
from issuer.errors import TooManyRequestsError
from issuer.store.base import Store, StoreTx

USERNAME = "username"
ADDRESS = "address"


@dataclass(frozen=True, slots=True)
class Attempt:
    username_key: str
    address: str | None
    window_start: datetime


async def begin_attempt(
    store: Store, clock: Clock, settings: Settings, username_key: str, address: str | None
) -> Attempt:
    """Count one attempt; 429 with Retry-After when a limit is passed."""
    now = clock.now().timestamp()
    window = settings.login_window
    start = math.floor(now / window) * window
    attempt = Attempt(username_key, address, datetime.fromtimestamp(start, UTC))
    async with store.transaction() as tx:
        over = await tx.count_login_attempt(USERNAME, username_key, attempt.window_start) > (
            settings.login_max_failures
        )
        if address is not None:
            per_address = await tx.count_login_attempt(ADDRESS, address, attempt.window_start)
            over = over or per_address > settings.login_max_failures_per_address
    if over:
        raise TooManyRequestsError(math.ceil(start + window - now))
    return attempt


async def attempt_succeeded(tx: StoreTx, attempt: Attempt) -> None:
    """A right password: the username starts afresh; the address only gets this attempt back
    (inside the login's unit of work)."""
    await tx.forget_login_attempt(USERNAME, attempt.username_key, attempt.window_start, all_=True)
    if attempt.address is not None:
        await tx.forget_login_attempt(ADDRESS, attempt.address, attempt.window_start)
