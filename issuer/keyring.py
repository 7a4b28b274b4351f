"""The signing-key schedule: state derived from timestamps, and the key cache (read side).

Every key is one row with ``activates_at`` and ``revoked_at``; a key retires when
the next live key activates, stays published for the token lifetime plus leeway
after that, then expires and its private half is destroyed. Every worker and
replica that reads the same rows derives the same states at the same instant,
so a scheduled rotation needs no coordination at all; only *creating* keys is
serialized, by the store's key-schedule lock (see :mod:`issuer.services.keys`, which
writes the rows; this module only reads them).

    state    when                                            in JWKS  signs
    pending  now < activates_at                              yes      no
    active   activates_at <= now < successor's activates_at  yes      yes
    retired  then, for access-token TTL + leeway             yes      no
    expired  after that (private key destroyed)              no       no
    revoked  revoked_at set (private key destroyed)          no       no
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from issuer.clock import Clock
from issuer.config import Settings
from issuer.errors import TemporarilyUnavailableError
from issuer.jose.keys import KeyUnwrapError
from issuer.jose.tokens import Signer
from issuer.kek import KeyEncryptionKeys
from issuer.store.base import KeyRecord, Store
from issuer.verifier.core import Policy, VerificationKey, load_jwks

log = logging.getLogger(__name__)


class KeyState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"
    EXPIRED = "expired"
    REVOKED = "revoked"


PUBLISHED = frozenset({KeyState.PENDING, KeyState.ACTIVE, KeyState.RETIRED})


@dataclass(frozen=True, slots=True)
class KeyView:
    record: KeyRecord
    state: KeyState
    retires_at: datetime | None
    expires_at: datetime | None

    @property
    def kid(self) -> str:
        return self.record.kid

    def as_json(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat().replace("+00:00", "Z")

        r = self.record
        return {
            "kid": r.kid,
            "alg": r.alg,
            "state": self.state.value,
            "created_at": iso(r.created_at),
            "activates_at": iso(r.activates_at),
            "retires_at": iso(self.retires_at),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(r.revoked_at),
        }


def derive_schedule(
    keys: Sequence[KeyRecord], now: datetime, retention: timedelta
) -> list[KeyView]:
    """Each key's state at ``now``; the order is the rotation order."""
    ordered = sorted(keys, key=lambda k: (k.activates_at, k.created_at, k.kid))
    # A key retires when the next key that ever signed activates. A key revoked after
    # it activated still ended its predecessor's term: leaving it out would stretch
    # the predecessor's term to the next live key and republish an expired key.
    chain = [k for k in ordered if k.revoked_at is None or k.revoked_at >= k.activates_at]
    successor = {a.kid: b.activates_at for a, b in itertools.pairwise(chain)}
    views = []
    for k in ordered:
        retires_at = successor.get(k.kid)
        expires_at = None if retires_at is None else retires_at + retention
        if k.revoked_at is not None:
            state = KeyState.REVOKED
            retires_at = expires_at = None
        elif now < k.activates_at:
            state = KeyState.PENDING
        elif retires_at is None or now < retires_at:
            state = KeyState.ACTIVE
        elif expires_at is not None and now < expires_at:
            state = KeyState.RETIRED
        else:
            state = KeyState.EXPIRED
        views.append(KeyView(k, state, retires_at, expires_at))
    return views


def next_change(views: Sequence[KeyView], now: datetime) -> datetime | None:
    """The next instant at which any key's state changes by the clock alone."""
    times = [
        t
        for v in views
        if v.state is not KeyState.REVOKED
        for t in (v.record.activates_at, v.retires_at, v.expires_at)
        if t is not None and t > now
    ]
    return min(times, default=None)


@dataclass(frozen=True, slots=True)
class Plan:
    """What the scheduler must write: keys to create (by activation time), keys to destroy."""

    create_at: tuple[datetime, ...] = ()
    destroy: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.create_at or self.destroy)


def plan_maintenance(
    views: Sequence[KeyView], now: datetime, interval: timedelta, lead: timedelta
) -> Plan:
    active = next((v for v in views if v.state is KeyState.ACTIVE), None)
    create = []
    if active is None:
        # Nothing signs (first start, or every key revoked): a key must sign now.
        create.append(now)
    if not any(v.state is KeyState.PENDING for v in views):
        # Keep a successor published at least one publish lead before it signs.
        base = now if active is None else active.record.activates_at
        create.append(max(base + interval, now + lead))
    destroy = tuple(
        v.kid
        for v in views
        if v.state in (KeyState.EXPIRED, KeyState.REVOKED) and v.record.private_wrapped is not None
    )
    return Plan(tuple(create), destroy)


@dataclass(frozen=True, slots=True)
class JWKSDocument:
    body: bytes
    etag: str


@dataclass(slots=True)
class Snapshot:
    """What one worker serves between two changes of the key rows."""

    records: tuple[KeyRecord, ...]
    views: list[KeyView]
    valid_until: datetime | None
    jwks: JWKSDocument
    verification_keys: dict[str, VerificationKey]
    policy: Policy
    signers: dict[str, Signer] = field(default_factory=dict)
    # Derived once from the fields above: every token request and JWKS request reads them.
    signer: Signer | None = None  # the active key's


def render_jwks(views: Sequence[KeyView]) -> JWKSDocument:
    # Newest first: a verifier that scans linearly meets the signing key early.
    keys = [v.record.public_jwk for v in reversed(views) if v.state in PUBLISHED]
    body = json.dumps({"keys": keys}, separators=(",", ":")).encode()
    return JWKSDocument(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def _fingerprint(records: Sequence[KeyRecord]) -> tuple[tuple[Any, ...], ...]:
    return tuple(
        (r.kid, r.activates_at, r.revoked_at, r.private_wrapped is not None, r.kek_id)
        for r in records
    )


class Keyring:
    """One worker's cache of the key rows: snapshot, signers, JWKS bytes, verification policy.

    It only reads; :class:`issuer.services.keys.KeyService` changes the rows and then
    calls :meth:`load`.
    """

    def __init__(
        self, store: Store, settings: Settings, kek: KeyEncryptionKeys, clock: Clock
    ) -> None:
        self._store = store
        self._settings = settings
        self._kek = kek
        self._clock = clock
        self._snapshot: Snapshot | None = None
        self._load_lock = asyncio.Lock()
        self._unwrap_failures: set[str] = set()
        self._whole_max_age = timedelta(seconds=settings.jwks_max_age)

    def derived_key(self, purpose: bytes) -> bytes:
        """A key for one ``purpose`` derived from the wrapping KEK (never the KEK itself)."""
        return self._kek.derive(purpose)

    @property
    def retention(self) -> timedelta:
        return timedelta(seconds=self._settings.key_retention)

    def snapshot(self, now: datetime | None = None) -> Snapshot:
        """The current snapshot, re-derived in memory when a state boundary has passed."""
        snap = self._snapshot
        if snap is None:
            raise TemporarilyUnavailableError("signing keys are not loaded yet")
        now = now or self._clock.now()
        if snap.valid_until is not None and now >= snap.valid_until:
            snap = self._build(snap.records, now, snap.signers)
            self._snapshot = snap
        return snap

    @property
    def loaded(self) -> bool:
        return self._snapshot is not None

    def signer(self, now: datetime) -> Signer:
        signer = self.snapshot(now).signer
        if signer is None:
            raise TemporarilyUnavailableError("no signing key is available")
        return signer

    def jwks(self) -> tuple[JWKSDocument, int]:
        """The JWKS and the max-age it may be cached for (never past the next state change)."""
        now = self._clock.now()
        snap = self.snapshot(now)
        max_age = self._settings.jwks_max_age
        until = snap.valid_until
        # Far from the next change (nearly always) the max-age is whole: one comparison.
        if until is not None and until - now < self._whole_max_age:
            max_age = min(max_age, int((until - now).total_seconds()))
        return snap.jwks, max(0, max_age)

    def verification_policy(self) -> Policy:
        """How this issuer checks its own tokens (admin API, introspection)."""
        return self.snapshot().policy

    def views(self, now: datetime | None = None) -> list[KeyView]:
        return list(self.snapshot(now).views)

    def view(self, kid: str) -> KeyView:
        return next(v for v in self.snapshot().views if v.kid == kid)

    def seconds_to_next_change(self) -> float | None:
        """Until the next state boundary; None when nothing is loaded or nothing will change."""
        snap = self._snapshot
        if snap is None or snap.valid_until is None:
            return None
        return (snap.valid_until - self._clock.now()).total_seconds()

    async def load(self) -> bool:
        """Re-read the key rows; rebuild only if they changed. True when rebuilt.

        Loads are serialized: otherwise a load that read the rows before a change
        committed could finish after the load that saw it, and put the old keys
        back (the new key missing from the JWKS, the replaced key signing again).
        """
        async with self._load_lock:
            records = tuple(await self._store.list_keys())
            snap = self._snapshot
            if snap is not None and _fingerprint(snap.records) == _fingerprint(records):
                return False
            self._snapshot = self._build(records, self._clock.now(), snap.signers if snap else {})
            return True

    def _build(
        self, records: tuple[KeyRecord, ...], now: datetime, signers: dict[str, Signer]
    ) -> Snapshot:
        views = derive_schedule(records, now, self.retention)
        jwks = render_jwks(views)
        kept: dict[str, Signer] = {}
        for v in views:
            if v.state not in (KeyState.PENDING, KeyState.ACTIVE):
                continue
            if v.kid in signers:
                kept[v.kid] = signers[v.kid]
            elif (s := self._open_signer(v.record)) is not None:
                kept[v.kid] = s
        settings = self._settings
        active = next((v for v in views if v.state is KeyState.ACTIVE), None)
        return Snapshot(
            records=records,
            views=views,
            valid_until=next_change(views, now),
            jwks=jwks,
            verification_keys=load_jwks(jwks.body),
            # Every alg still published verifies, so changing ISSUER_SIGNING_ALG
            # does not break tokens signed before the change.
            policy=Policy(
                issuer=settings.issuer,
                audience=settings.audience,
                algorithms=frozenset(
                    {settings.signing_alg} | {v.record.alg for v in views if v.state in PUBLISHED}
                ),
                leeway=settings.clock_leeway,
            ),
            signers=kept,
            signer=None if active is None else kept.get(active.kid),
        )

    def _open_signer(self, record: KeyRecord) -> Signer | None:
        if record.private_wrapped is None:
            return None
        try:
            pem = self._kek.unwrap(record.private_wrapped, record.kek_id, record.kid)
        except KeyUnwrapError as exc:
            if record.kid not in self._unwrap_failures:
                log.error("cannot unwrap signing key %s: %s", record.kid, exc)
                self._unwrap_failures.add(record.kid)
            return None
        self._unwrap_failures.discard(record.kid)
        return Signer(record.kid, record.alg, pem)
