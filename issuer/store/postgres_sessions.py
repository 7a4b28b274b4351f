"""Users, clients, refresh-token families, the deny list and login counters on PostgreSQL.

A session transaction first locks the refresh family's row (``FOR UPDATE``), so
every rotation, reuse check and revocation of one family runs one at a time.
Writes to ``revocation_events`` take an advisory lock held to commit, so
sequence numbers become visible in order and a feed cursor never skips one.
Locks are taken in the order written down in :mod:`issuer.store.base`.
"""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

from issuer.clock import Clock
from issuer.errors import ConflictError
from issuer.store import rows
from issuer.store.base import (
    AuditEvent,
    ClientRecord,
    FamilyRecord,
    RefreshTokenRecord,
    RevocationEntry,
    Rotated,
    Rotation,
    UserRecord,
)
from issuer.store.rows import as_is, numbered

if TYPE_CHECKING:
    from issuer.store.pgpool import BoundedPool
    from issuer.store.postgres import PostgresTx
    from issuer.store.postgres_rotation import RotationBatcher

PG_REVOCATION_LOCK = 0x15_5E_ED_03
CLIENTS_CHANNEL = "issuer_clients"


_FIND_REFRESH = numbered(rows.FIND_REFRESH)
_FIND_REFRESH_GRANT = numbered(rows.FIND_REFRESH_GRANT)


class PostgresSessionTx:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add_audit(self, event: AuditEvent) -> None:
        await self.conn.execute(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
            event.at,
            event.actor,
            event.action,
            event.target,
            json.dumps(event.detail),
        )

    # Clients and users
    async def create_client(self, client: ClientRecord) -> None:
        try:
            await self.conn.execute(
                "INSERT INTO clients (client_id, name, secret_hash, scopes, first_party,"
                " disabled, created_at, redirect_uris, post_logout_redirect_uris, web_origins)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                client.client_id,
                client.name,
                client.secret_hash,
                " ".join(client.scopes),
                client.first_party,
                client.disabled,
                client.created_at,
                " ".join(client.redirect_uris),
                " ".join(client.post_logout_redirect_uris),
                " ".join(client.web_origins),
            )
        except asyncpg.UniqueViolationError:
            raise ConflictError(f"a client named {client.name!r} exists already") from None

    async def set_client_disabled(self, client_id: str, disabled: bool) -> ClientRecord | None:
        row = await self.conn.fetchrow(
            "UPDATE clients SET disabled = $1 WHERE client_id = $2 RETURNING *", disabled, client_id
        )
        # Delivered on commit: every worker's client cache forgets the row at once.
        await self.conn.execute("SELECT pg_notify($1, $2)", CLIENTS_CHANNEL, client_id)
        return None if row is None else rows.client(row, as_is)

    async def create_user(self, user: UserRecord) -> None:
        try:
            await self.conn.execute(
                "INSERT INTO users (user_id, username, username_key, password_hash, roles,"
                " disabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                user.user_id,
                user.username,
                user.username_key,
                user.password_hash,
                " ".join(user.roles),
                user.disabled,
                user.created_at,
                user.updated_at,
            )
        except asyncpg.UniqueViolationError:
            raise ConflictError("a user with this username exists already") from None

    async def update_user(
        self,
        user_id: str,
        at: datetime,
        *,
        roles: tuple[str, ...] | None = None,
        disabled: bool | None = None,
        password_hash: str | None = None,
    ) -> UserRecord | None:
        row = await self.conn.fetchrow(
            "UPDATE users SET roles = coalesce($1, roles), disabled = coalesce($2, disabled),"
            " password_hash = coalesce($3, password_hash), updated_at = $4"
            " WHERE user_id = $5 RETURNING *",
            None if roles is None else " ".join(roles),
            disabled,
            password_hash,
            at,
            user_id,
        )
        return None if row is None else rows.user(row, as_is)

    # Failed-login counters
    async def login_failures(self, kind: str, key: str, window_start: datetime) -> int:
        count = await self.conn.fetchval(numbered(rows.LOGIN_FAILURES), kind, key, window_start)
        return int(count or 0)

    async def add_login_failure(self, kind: str, key: str, window_start: datetime) -> int:
        await self.conn.execute(numbered(rows.DROP_OLD_LOGIN_FAILURES), kind, key, window_start)
        count = await self.conn.fetchval(numbered(rows.ADD_LOGIN_FAILURE), kind, key, window_start)
        return int(count)

    async def clear_login_failures(self, kind: str, key: str) -> None:
        await self.conn.execute(numbered(rows.CLEAR_LOGIN_FAILURES), kind, key)

    # Sessions
    async def lock_refresh(self, token_hash: str) -> tuple[RefreshTokenRecord, FamilyRecord] | None:
        family_id = await self.conn.fetchval(
            "SELECT f.family_id FROM refresh_tokens t"
            " JOIN refresh_families f ON f.family_id = t.family_id"
            " WHERE t.token_hash = $1 FOR UPDATE OF f",
            token_hash,
        )
        if family_id is None:
            return None
        # Under READ COMMITTED a statement that waited for the lock still returns the
        # other rows as they were before the wait: read the token again, in a new
        # statement, so a waiter sees the spend the lock holder committed.
        return await self.find_refresh(token_hash)

    async def find_refresh(self, token_hash: str) -> tuple[RefreshTokenRecord, FamilyRecord] | None:
        row = await self.conn.fetchrow(_FIND_REFRESH, token_hash)
        return None if row is None else (rows.token(row, as_is), rows.family(row, as_is))

    async def lock_families(self, family_ids: set[str]) -> None:
        await self.conn.execute(
            "SELECT 1 FROM refresh_families WHERE family_id = ANY($1::text[])"
            " ORDER BY family_id FOR UPDATE",
            sorted(family_ids),
        )

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self.conn.fetchrow("SELECT * FROM users WHERE user_id = $1", user_id)
        return None if row is None else rows.user(row, as_is)

    async def insert_family(self, family: FamilyRecord) -> None:
        await self.conn.execute(
            "INSERT INTO refresh_families (family_id, user_id, client_id, created_at,"
            " expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)",
            family.family_id,
            family.user_id,
            family.client_id,
            family.created_at,
            family.expires_at,
            family.revoked_at,
        )

    async def insert_refresh(self, token: RefreshTokenRecord) -> None:
        await self.conn.execute(
            "INSERT INTO refresh_tokens (token_hash, family_id, generation, parent_hash, scope,"
            " issued_at, idle_expires_at, spent_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            token.token_hash,
            token.family_id,
            token.generation,
            token.parent_hash,
            " ".join(token.scope),
            token.issued_at,
            token.idle_expires_at,
            token.spent_at,
        )

    async def spend_refresh(self, token_hash: str, at: datetime) -> bool:
        row = await self.conn.fetchrow(
            "UPDATE refresh_tokens SET spent_at = $1 WHERE token_hash = $2 AND spent_at IS NULL"
            " RETURNING token_hash",
            at,
            token_hash,
        )
        return row is not None

    async def spend_child_of(
        self, family_id: str, parent_hash: str, at: datetime
    ) -> RefreshTokenRecord | None:
        row = await self.conn.fetchrow(
            "UPDATE refresh_tokens SET spent_at = $1"
            " WHERE family_id = $2 AND parent_hash = $3 AND spent_at IS NULL RETURNING *",
            at,
            family_id,
            parent_hash,
        )
        return None if row is None else rows.token(row, as_is)

    async def record_access_token(self, jti: str, family_id: str, exp: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO family_access_tokens (jti, family_id, exp) VALUES ($1, $2, $3)",
            jti,
            family_id,
            exp,
        )

    async def family_of_access_token(self, jti: str) -> str | None:
        value = await self.conn.fetchval(
            "SELECT family_id FROM family_access_tokens WHERE jti = $1", jti
        )
        return None if value is None else str(value)

    async def revoke_family(self, family_id: str, at: datetime, leeway: int) -> bool:
        status = await self.conn.execute(
            "UPDATE refresh_families SET revoked_at = $1"
            " WHERE family_id = $2 AND revoked_at IS NULL",
            at,
            family_id,
        )
        await self.conn.execute("SELECT pg_advisory_xact_lock($1)", PG_REVOCATION_LOCK)
        await self.conn.execute(
            "INSERT INTO revocation_events (kind, subject, at, drop_after)"
            " SELECT 'jti', jti, exp, exp + $1 FROM family_access_tokens"
            " WHERE family_id = $2 AND exp + $1 > $3"
            " ORDER BY exp, jti"
            " ON CONFLICT (kind, subject, at) DO NOTHING",
            timedelta(seconds=leeway),
            family_id,
            at,
        )
        return bool(status == "UPDATE 1")

    async def revoke_user_families(self, user_id: str, at: datetime) -> int:
        # Lock in a fixed order, as lock_refresh does one at a time.
        rows = await self.conn.fetch(
            "SELECT family_id FROM refresh_families WHERE user_id = $1 AND revoked_at IS NULL"
            " ORDER BY family_id FOR UPDATE",
            user_id,
        )
        status = await self.conn.execute(
            "UPDATE refresh_families SET revoked_at = $1 WHERE family_id = ANY($2::text[])",
            at,
            [r["family_id"] for r in rows],
        )
        return int(status.split()[-1])

    async def add_revocation(
        self, kind: str, subject: str, at: datetime, drop_after: datetime
    ) -> None:
        await self.conn.execute("SELECT pg_advisory_xact_lock($1)", PG_REVOCATION_LOCK)
        await self.conn.execute(
            "INSERT INTO revocation_events (kind, subject, at, drop_after) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (kind, subject, at) DO NOTHING",
            kind,
            subject,
            at,
            drop_after,
        )


class PostgresUserStore:
    """Mixed into :class:`issuer.store.postgres.PostgresStore`."""

    pool: BoundedPool
    rotations: RotationBatcher

    if TYPE_CHECKING:

        def transaction(self) -> AbstractAsyncContextManager[PostgresTx]: ...

    async def create_user(self, user: UserRecord) -> None:
        async with self.transaction() as tx:
            await tx.create_user(user)

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self.pool.fetchrow("SELECT * FROM users WHERE user_id = $1", user_id)
        return None if row is None else rows.user(row, as_is)

    async def get_user_by_key(self, username_key: str) -> UserRecord | None:
        row = await self.pool.fetchrow("SELECT * FROM users WHERE username_key = $1", username_key)
        return None if row is None else rows.user(row, as_is)

    async def list_users(self, after: str | None = None, limit: int = 100) -> list[UserRecord]:
        found = await self.pool.fetch(
            'SELECT * FROM users WHERE username_key COLLATE "C" > $1'
            ' ORDER BY username_key COLLATE "C" LIMIT $2',
            after or "",
            limit,
        )
        return [rows.user(r, as_is) for r in found]

    async def update_user(
        self,
        user_id: str,
        at: datetime,
        *,
        roles: tuple[str, ...] | None = None,
        disabled: bool | None = None,
        password_hash: str | None = None,
    ) -> UserRecord | None:
        async with self.transaction() as tx:
            return await tx.update_user(
                user_id, at, roles=roles, disabled=disabled, password_hash=password_hash
            )

    async def find_refresh(self, token_hash: str) -> tuple[RefreshTokenRecord, FamilyRecord] | None:
        async with self.pool.acquire() as conn:
            return await PostgresSessionTx(conn).find_refresh(token_hash)

    async def find_refresh_grant(
        self, token_hash: str
    ) -> tuple[RefreshTokenRecord, FamilyRecord, UserRecord] | None:
        row = await self.pool.fetchrow(_FIND_REFRESH_GRANT, token_hash)
        return None if row is None else rows.refresh_grant(row, as_is)

    async def rotate_refresh(self, rotation: Rotation, clock: Clock) -> Rotated | None:
        return await self.rotations.rotate(rotation, clock)

    async def is_revoked(self, jti: str, sub: str, iat: float) -> bool:
        value = await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM revocation_events WHERE (kind = 'jti' AND subject = $1)"
            " OR (kind = 'sub' AND subject = $2 AND at >= to_timestamp($3)))",
            jti,
            sub,
            float(iat),
        )
        return bool(value)

    async def list_revocations(
        self, after: int, now: datetime, limit: int
    ) -> tuple[list[RevocationEntry], int]:
        async with self.pool.transaction(isolation="repeatable_read") as conn:
            # One snapshot (REPEATABLE READ) for the page and the cursor.
            found = await conn.fetch(numbered(rows.LIST_REVOCATIONS), after, now, limit)
            top = await conn.fetchval(rows.TOP_REVOCATION)
        entries = [RevocationEntry(r["seq"], r["kind"], r["subject"], r["at"]) for r in found]
        return entries, int(top or 0)

    async def login_failures(self, kind: str, key: str, window_start: datetime) -> int:
        count = await self.pool.fetchval(numbered(rows.LOGIN_FAILURES), kind, key, window_start)
        return int(count or 0)

    async def purge_expired(self, now: datetime, keep: timedelta) -> int:
        deleted = 0
        async with self.transaction() as tx:
            for sql, arg in rows.purge_statements(now, now - keep):
                status = await tx.conn.execute(numbered(sql), arg)
                deleted += int(status.split()[-1])
        return deleted
