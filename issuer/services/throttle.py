"""Login throttling (OWASP ASVS 2.2.1; RFC 6749 §10.10) that an attacker cannot turn on a user.

Only *failures* are counted, never attempts, so a right password is never refused
for attempts that succeeded. Three counters per fixed window, in the database so
every worker and replica shares them:

- ``pair``: failures of one username from one address (``login_max_failures``, 5).
  The only limit a guesser at one address meets for one user.
- ``username``: failures of one username from all addresses
  (``login_max_failures_per_username``, 100). Past it, an address that has failed
  for this username in the window is refused; an address that has not may still
  try. A distributed guesser is held to one guess per fresh address, and the user,
  who has not failed from their own address, still gets in.
- ``address``: failures from one address for all usernames
  (``login_max_failures_per_address``, 500): a password sprayer, set high enough
  for a NAT or an office behind one address.

The decision is taken twice. Before the password is checked, from the counts as
they are (no argon2 for a request that is refused anyway); and again after, in
the transaction that records the outcome: a failure adds one to each counter and
is refused if the counts *before* it were over a limit; a success is refused by
the same rule. So a burst of parallel guesses, all past the first check, still
learns the answer for no more guesses than the limit allows: the others get 429
whether they were right or wrong, and nothing tells the two apart.

Keys never hold what was typed: the username part is an HMAC of the normalised
username under a key derived from the KEK, whether or not the user exists, so
neither a counter nor its absence says which usernames exist, and a password
typed into the username field is not kept. IPv6 addresses count per /64, the
block one subscriber gets.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from issuer.config import Settings
from issuer.errors import TooManyRequestsError
from issuer.store.base import Store, StoreTx

PAIR = "pair"
USERNAME = "username"
ADDRESS = "address"
# HKDF ``info`` of the key that tags usernames in counters and the audit log.
TAG_PURPOSE = b"login username tag v1"


def username_tag(secret: bytes, username_key: str) -> str:
    """A keyed hash of a normalised username: correlates, but cannot be reversed or guessed
    offline without the KEK (a bare hash of a typed password could be)."""
    return hmac.new(secret, username_key.encode(), hashlib.sha256).hexdigest()[:32]


def address_block(address: str | None) -> str:
    """The unit an address is counted in: an IPv4 address, or an IPv6 /64 (no address,
    as on a Unix socket, is one shared unit)."""
    if address is None:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True, slots=True)
class LoginKeys:
    """The counter keys of one login attempt, in one window."""

    tag: str
    address: str
    window_start: datetime
    retry_after: int

    def counters(self) -> list[tuple[str, str]]:
        return [(USERNAME, self.tag), (PAIR, self.pair), (ADDRESS, self.address)]

    @property
    def pair(self) -> str:
        return f"{self.tag}:{self.address}"


def login_keys(
    secret: bytes, username_key: str, address: str | None, now: datetime, window: int
) -> LoginKeys:
    t = now.timestamp()
    start = math.floor(t / window) * window
    return LoginKeys(
        username_tag(secret, username_key),
        address_block(address),
        datetime.fromtimestamp(start, UTC),
        max(1, math.ceil(start + window - t)),
    )


def _refused(settings: Settings, counts: dict[str, int]) -> bool:
    pair = counts[PAIR]
    return (
        pair >= settings.login_max_failures
        or counts[ADDRESS] >= settings.login_max_failures_per_address
        # Past the username's global cap, only addresses that failed for it are refused.
        or (counts[USERNAME] >= settings.login_max_failures_per_username and pair > 0)
    )


async def check(store: Store, settings: Settings, keys: LoginKeys) -> None:
    """Before the password is checked: 429 if the failures so far are over a limit."""
    counts = {
        kind: await store.login_failures(kind, key, keys.window_start)
        for kind, key in keys.counters()
    }
    if _refused(settings, counts):
        raise TooManyRequestsError(keys.retry_after)


async def record_failure(tx: StoreTx, settings: Settings, keys: LoginKeys) -> bool:
    """Count a failure (in the caller's transaction); True if it came past a limit."""
    before = {
        kind: await tx.add_login_failure(kind, key, keys.window_start) - 1
        for kind, key in keys.counters()
    }
    return _refused(settings, before)


async def admit_success(tx: StoreTx, settings: Settings, keys: LoginKeys) -> bool:
    """A right password (in the caller's transaction): False if failures recorded meanwhile
    put it past a limit; else the pair's failures are forgiven (they were the user's typos),
    never the username's or the address's, which others may have caused."""
    counts = {
        kind: await tx.login_failures(kind, key, keys.window_start) for kind, key in keys.counters()
    }
    if _refused(settings, counts):
        return False
    await tx.clear_login_failures(PAIR, keys.pair)
    return True
