"""The Store protocol: the only seam between the service and its database.

Both implementations (``postgres.py``, ``sqlite.py``) pass the same contract
tests (``tests/store/``). Writes that must not race are single statements or
transactions that make the race impossible; nothing here is check-then-act in
Python. A service operation that writes more than one row does it in one unit
of work, ``async with store.transaction() as tx:``, so an audit row commits
with the change it records, or neither does.

Lock order
----------
Every transaction takes its locks in this order, and only in this order, so no
two transactions ever wait on each other (PostgreSQL; SQLite has one write lock,
taken at ``BEGIN IMMEDIATE``, which serializes every writer in every process):

1. login-counter rows (``login_failures``; a login's own unit of work), by kind
   in the order ``username``, ``pair``, ``address`` (``services/throttle.py``),
   then the ``users`` or ``clients`` row a login or an admin change updates;
2. refresh-family rows, ``FOR UPDATE``, several at once always sorted by
   ``family_id`` (``lock_families``, ``revoke_user_families``); one family at
   a time through ``lock_refresh``, which then re-reads the token row so a
   transaction that waited sees the token as the winner left it, or through
   ``rotate_refresh``, which never waits for it (``SKIP LOCKED``: a family
   another transaction holds is left to the caller's ``lock_refresh`` path; the
   PostgreSQL statement that makes several rotations at once takes their
   families in no set order, which is safe because it never waits);
3. the revocation-feed advisory lock (``PG_REVOCATION_LOCK``, taken by
   ``revoke_family`` and ``add_revocation``), held to commit so feed sequence
   numbers become visible in order. Nothing is locked after it.

A transaction that revokes several families (a logout naming a second session)
therefore locks all of them first (step 2) and only then writes feed entries
(step 3). The key-schedule lock (``PG_KEY_LOCK``) is taken alone.

Time is read after the locks are held: services call their clock inside the
``async with``, after ``lock_refresh``/``lock_families``, never before it (a
request that waited must not judge the winner's writes by a time from before
its wait). ``rotate_refresh`` is given the clock and reads it once it has its
connection (PostgreSQL: its one statement then takes the family's lock without
waiting, or gives up) or SQLite's write lock.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from issuer.clock import Clock


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One signing key. Its state (pending, active, …) is derived from these timestamps."""

    kid: str
    alg: str
    public_jwk: dict[str, str]
    private_wrapped: bytes | None = field(repr=False)
    kek_id: str | None
    created_at: datetime
    activates_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClientRecord:
    client_id: str
    name: str
    secret_hash: str | None = field(repr=False)
    scopes: tuple[str, ...]
    first_party: bool
    created_at: datetime
    disabled: bool = False
    # Browser login (RFC 6749 §3.1.2, OpenID Connect RP-Initiated Logout §3, CORS).
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    web_origins: tuple[str, ...] = ()

    @property
    def public(self) -> bool:
        return self.secret_hash is None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    at: datetime
    actor: str
    action: str
    target: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


class KeyScheduleTx(Protocol):
    """Key writes inside one transaction that holds the cross-process key lock."""

    async def list_keys(self) -> list[KeyRecord]: ...
    async def insert_key(self, key: KeyRecord) -> None: ...
    async def revoke_key(self, kid: str, at: datetime) -> bool: ...
    async def add_revocation(
        self, kind: str, subject: str, at: datetime, drop_after: datetime
    ) -> None:
        """A revocation-feed entry in the same transaction (kind ``kid`` for a revoked key)."""
        ...

    async def destroy_private_key(self, kid: str) -> None: ...
    async def replace_wrapped_key(self, kid: str, wrapped: bytes, kek_id: str) -> None: ...
    async def add_audit(self, event: AuditEvent) -> None: ...


class _CoreStore(Protocol):
    dialect: str

    def transaction(self) -> AbstractAsyncContextManager[StoreTx]:
        """One unit of work: committed when the block ends, rolled back if it raises."""
        ...

    async def close(self) -> None: ...
    async def ping(self) -> None: ...

    # Keys
    async def list_keys(self) -> list[KeyRecord]: ...
    def key_schedule(self) -> AbstractAsyncContextManager[KeyScheduleTx]:
        """Serialize key-schedule changes across workers and replicas (advisory or write lock)."""
        ...

    # Clients
    async def create_client(self, client: ClientRecord) -> None: ...
    async def get_client(self, client_id: str) -> ClientRecord | None: ...
    async def list_clients(self) -> list[ClientRecord]: ...
    async def set_client_disabled(self, client_id: str, disabled: bool) -> ClientRecord | None: ...

    # Audit
    async def add_audit(self, event: AuditEvent) -> None: ...
    async def list_audit(self, after: int = 0, limit: int = 100) -> list[AuditEvent]: ...


# -- Users and sessions (refresh-token families, the deny list, login throttling) --


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: str
    username: str
    username_key: str
    password_hash: str = field(repr=False)
    roles: tuple[str, ...]
    disabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class FamilyRecord:
    """The refresh tokens of one login."""

    family_id: str
    user_id: str
    client_id: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RefreshTokenRecord:
    token_hash: str = field(repr=False)
    family_id: str
    generation: int
    parent_hash: str | None = field(repr=False)
    scope: tuple[str, ...]
    issued_at: datetime
    idle_expires_at: datetime
    spent_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Rotation:
    """One refresh as one write (:meth:`_UserStore.rotate_refresh`): spend ``token_hash``,
    issue ``new_hash`` as the family's next generation, record the access token's jti."""

    token_hash: str = field(repr=False)
    new_hash: str = field(repr=False)
    client_id: str
    scope: tuple[str, ...] | None  # asked for (within the token's), or None: the token's
    idle_ttl: timedelta  # the new token's idle deadline: now + this, within the family's life
    jti: str
    access_exp: datetime


@dataclass(frozen=True, slots=True)
class Rotated:
    """What a rotation issued the new tokens for: the access token's claims to be."""

    family_id: str
    user_id: str
    roles: tuple[str, ...]
    scope: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RevocationEntry:
    """A deny-list entry (kind ``jti``, at = exp) or a user cut-off (``sub``, revoked_before)."""

    seq: int
    kind: str
    subject: str
    at: datetime


class StoreTx(Protocol):
    """One unit of work: every write a service makes, inside one transaction
    (SQLite's write lock; PostgreSQL row locks in the order of the module docstring)."""

    # Clients and users
    async def create_client(self, client: ClientRecord) -> None: ...
    async def set_client_disabled(self, client_id: str, disabled: bool) -> ClientRecord | None: ...
    async def create_user(self, user: UserRecord) -> None: ...
    async def update_user(
        self,
        user_id: str,
        at: datetime,
        *,
        roles: tuple[str, ...] | None = None,
        disabled: bool | None = None,
        password_hash: str | None = None,
    ) -> UserRecord | None: ...

    # Failed-login counters per fixed window (services/throttle.py)
    async def login_failures(self, kind: str, key: str, window_start: datetime) -> int: ...
    async def add_login_failure(self, kind: str, key: str, window_start: datetime) -> int:
        """Add one failure to the window's counter (atomic upsert); the new count."""
        ...

    async def clear_login_failures(self, kind: str, key: str) -> None: ...

    # Sessions
    async def lock_refresh(self, token_hash: str) -> tuple[RefreshTokenRecord, FamilyRecord] | None:
        """The token and its family, the family row locked until the transaction ends;
        the token row is read after the lock is held."""
        ...

    async def find_refresh(
        self, token_hash: str
    ) -> tuple[RefreshTokenRecord, FamilyRecord] | None: ...
    async def lock_families(self, family_ids: set[str]) -> None:
        """Lock these families' rows, in sorted order (lock order, step 2)."""
        ...

    async def get_user(self, user_id: str) -> UserRecord | None: ...
    async def insert_family(self, family: FamilyRecord) -> None: ...
    async def insert_refresh(self, token: RefreshTokenRecord) -> None: ...
    async def spend_refresh(self, token_hash: str, at: datetime) -> bool:
        """Mark the token spent if it was not; True if this call spent it."""
        ...

    async def spend_child_of(
        self, family_id: str, parent_hash: str, at: datetime
    ) -> RefreshTokenRecord | None:
        """Spend the unspent token issued for ``parent_hash``, if there is one."""
        ...

    async def record_access_token(self, jti: str, family_id: str, exp: datetime) -> None: ...
    async def family_of_access_token(self, jti: str) -> str | None: ...
    async def revoke_family(self, family_id: str, at: datetime, leeway: int) -> bool:
        """Revoke the family and deny-list its unexpired access tokens; False if already revoked."""
        ...

    async def revoke_user_families(self, user_id: str, at: datetime) -> int: ...
    async def add_revocation(
        self, kind: str, subject: str, at: datetime, drop_after: datetime
    ) -> None: ...
    async def add_audit(self, event: AuditEvent) -> None: ...


class _UserStore(Protocol):
    """Users, sessions, the feed and login counters (part of :class:`Store`)."""

    async def create_user(self, user: UserRecord) -> None: ...
    async def get_user(self, user_id: str) -> UserRecord | None: ...
    async def get_user_by_key(self, username_key: str) -> UserRecord | None: ...
    async def list_users(self, after: str | None = None, limit: int = 100) -> list[UserRecord]: ...
    async def update_user(
        self,
        user_id: str,
        at: datetime,
        *,
        roles: tuple[str, ...] | None = None,
        disabled: bool | None = None,
        password_hash: str | None = None,
    ) -> UserRecord | None: ...

    async def find_refresh(
        self, token_hash: str
    ) -> tuple[RefreshTokenRecord, FamilyRecord] | None: ...
    async def find_refresh_grant(
        self, token_hash: str
    ) -> tuple[RefreshTokenRecord, FamilyRecord, UserRecord] | None:
        """The token, its family and the family's user, in one read and without a lock."""
        ...

    async def rotate_refresh(self, rotation: Rotation, clock: Clock) -> Rotated | None:
        """A refresh's whole write in one transaction, the clock read once the family is
        held: if the token is unspent and before its idle deadline, its family belongs to
        ``client_id``, is neither revoked nor expired, its user is not disabled, and the
        scope asked for is within the token's, spend it, insert its successor, record the
        jti, and return what the access token is for. Otherwise, and on PostgreSQL also
        when another transaction holds the family's lock (not waited for), change nothing
        and return None: the caller then decides under ``lock_refresh``."""
        ...

    async def is_revoked(self, jti: str, sub: str, iat: float) -> bool:
        """Is ``jti`` deny-listed, or is ``sub`` cut off at or after ``iat``?"""
        ...

    async def list_revocations(
        self, after: int, now: datetime, limit: int
    ) -> tuple[list[RevocationEntry], int]:
        """Live entries after ``after`` in order, and the highest sequence number seen."""
        ...

    async def login_failures(self, kind: str, key: str, window_start: datetime) -> int:
        """The failures counted under ``key`` in the window (0 when none)."""
        ...

    async def purge_expired(self, now: datetime, keep: timedelta) -> int:
        """Delete what can no longer matter: feed entries past ``drop_after``, families past
        their absolute lifetime (with their tokens), and access-token records and login
        counters older than ``keep``. Returns the number of rows deleted."""
        ...


class Store(_CoreStore, _UserStore, Protocol):
    """The whole store: clients, keys, audit, users, sessions, the feed."""


# Former names, kept while callers move over.
UserStore = Store
SessionTx = StoreTx
