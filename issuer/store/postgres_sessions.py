"""Users, refresh-token families, the deny list and login counters on PostgreSQL.

A session transaction first locks the refresh family's row (``FOR UPDATE``), so
every rotation, reuse check and revocation of one family runs one at a time,
always taking locks in the same order (family, then its tokens): no deadlocks.
Writes to ``revocation_events`` take an advisory lock held to commit, so
sequence numbers become visible in order and a feed cursor never skips one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

from issuer.errors import ConflictError
from issuer.store.base import (
    AuditEvent,
    FamilyRecord,
    RefreshTokenRecord,
    RevocationEntry,
    UserRecord,
)

if TYPE_CHECKING:
    from issuer.store.pgpool import BoundedPool
    from issuer.store.postgres import PostgresTx

PG_REVOCATION_LOCK = 0x15_5E_ED_03


def _user(row: asyncpg.Record) -> UserRecord:
    return UserRecord(
        user_id=row["user_id"],
        username=row["username"],
        username_key=row["username_key"],
        password_hash=row["password_hash"],
        roles=tuple(row["roles"].split()),
        disabled=row["disabled"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _token(row: asyncpg.Record) -> RefreshTokenRecord:
    return RefreshTokenRecord(
        token_hash=row["token_hash"],
        family_id=row["family_id"],
        generation=row["generation"],
        parent_hash=row["parent_hash"],
        scope=tuple(row["scope"].split()),
        issued_at=row["issued_at"],
        idle_expires_at=row["idle_expires_at"],
        spent_at=row["spent_at"],
    )


def _family(row: asyncpg.Record) -> FamilyRecord:
    return FamilyRecord(
        family_id=row["family_id"],
        user_id=row["user_id"],
        client_id=row["client_id"],
        created_at=row["f_created_at"],
        expires_at=row["f_expires_at"],
        revoked_at=row["f_revoked_at"],
    )


_FIND_REFRESH = """
SELECT t.*, f.user_id, f.client_id, f.created_at AS f_created_at,
       f.expires_at AS f_expires_at, f.revoked_at AS f_revoked_at
FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id
WHERE t.token_hash = $1
"""


class PostgresSessionTx:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def lock_refresh(self, token_hash: str) -> tuple[RefreshTokenRecord, FamilyRecord] | None:
        row = await self.conn.fetchrow(_FIND_REFRESH + " FOR UPDATE OF f", token_hash)
        return None if row is None else (_token(row), _family(row))

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self.conn.fetchrow("SELECT * FROM users WHERE user_id = $1", user_id)
        return None if row is None else _user(row)

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
        return None if row is None else _token(row)

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

    async def add_audit(self, event: AuditEvent) -> None:
        await self.conn.execute(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
            event.at,
            event.actor,
            event.action,
            event.target,
            json.dumps(event.detail),
        )


class PostgresUserStore:
    """Mixed into :class:`issuer.store.postgres.PostgresStore`."""

    pool: BoundedPool

    if TYPE_CHECKING:

        def transaction(self) -> AbstractAsyncContextManager[PostgresTx]: ...

    async def create_user(self, user: UserRecord) -> None:
        try:
            await self.pool.execute(
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

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self.pool.fetchrow("SELECT * FROM users WHERE user_id = $1", user_id)
        return None if row is None else _user(row)

    async def get_user_by_key(self, username_key: str) -> UserRecord | None:
        row = await self.pool.fetchrow("SELECT * FROM users WHERE username_key = $1", username_key)
        return None if row is None else _user(row)

    async def list_users(self, after: str | None = None, limit: int = 100) -> list[UserRecord]:
        rows = await self.pool.fetch(
            'SELECT * FROM users WHERE username_key COLLATE "C" > $1'
            ' ORDER BY username_key COLLATE "C" LIMIT $2',
            after or "",
            limit,
        )
        return [_user(r) for r in rows]

    async def update_user(
        self,
        user_id: str,
        at: datetime,
        *,
        roles: tuple[str, ...] | None = None,
        disabled: bool | None = None,
        password_hash: str | None = None,
    ) -> UserRecord | None:
        row = await self.pool.fetchrow(
            "UPDATE users SET roles = coalesce($1, roles), disabled = coalesce($2, disabled),"
            " password_hash = coalesce($3, password_hash), updated_at = $4"
            " WHERE user_id = $5 RETURNING *",
            None if roles is None else " ".join(roles),
            disabled,
            password_hash,
            at,
            user_id,
        )
        return None if row is None else _user(row)

    def sessions(self) -> AbstractAsyncContextManager[PostgresSessionTx]:
        return self._sessions()

    @asynccontextmanager
    async def _sessions(self) -> AsyncIterator[PostgresSessionTx]:
        async with self.transaction() as tx:
            yield PostgresSessionTx(tx.conn)

    async def find_refresh(self, token_hash: str) -> tuple[RefreshTokenRecord, FamilyRecord] | None:
        row = await self.pool.fetchrow(_FIND_REFRESH, token_hash)
        return None if row is None else (_token(row), _family(row))

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
            rows = await conn.fetch(
                "SELECT seq, kind, subject, at FROM revocation_events"
                " WHERE seq > $1 AND drop_after > $2 ORDER BY seq LIMIT $3",
                after,
                now,
                limit,
            )
            top = await conn.fetchval("SELECT max(seq) FROM revocation_events")
        entries = [RevocationEntry(r["seq"], r["kind"], r["subject"], r["at"]) for r in rows]
        return entries, int(top or 0)

    async def count_login_attempt(self, kind: str, key: str, window_start: datetime) -> int:
        async with self.transaction() as tx:
            await tx.conn.execute(
                "DELETE FROM login_failures WHERE kind = $1 AND key = $2 AND window_start < $3",
                kind,
                key,
                window_start,
            )
            count = await tx.conn.fetchval(
                "INSERT INTO login_failures (kind, key, window_start, count)"
                " VALUES ($1, $2, $3, 1) ON CONFLICT (kind, key, window_start)"
                " DO UPDATE SET count = login_failures.count + 1 RETURNING count",
                kind,
                key,
                window_start,
            )
        return int(count)

    async def purge_expired(self, now: datetime, keep: timedelta) -> int:
        old = now - keep
        deleted = 0
        async with self.transaction() as tx:
            for sql, arg in (
                ("DELETE FROM revocation_events WHERE drop_after <= $1", now),
                ("DELETE FROM family_access_tokens WHERE exp < $1", old),
                (
                    "DELETE FROM family_access_tokens WHERE family_id IN"
                    " (SELECT family_id FROM refresh_families WHERE expires_at <= $1)",
                    now,
                ),
                (
                    "DELETE FROM refresh_tokens WHERE family_id IN"
                    " (SELECT family_id FROM refresh_families WHERE expires_at <= $1)",
                    now,
                ),
                ("DELETE FROM refresh_families WHERE expires_at <= $1", now),
                ("DELETE FROM login_failures WHERE window_start < $1", old),
            ):
                status = await tx.conn.execute(sql, arg)
                deleted += int(status.split()[-1])
        return deleted

    async def forget_login_attempt(
        self, kind: str, key: str, window_start: datetime, *, all_: bool = False
    ) -> None:
        if all_:
            await self.pool.execute(
                "DELETE FROM login_failures WHERE kind = $1 AND key = $2", kind, key
            )
        else:
            await self.pool.execute(
                "UPDATE login_failures SET count = greatest(count - 1, 0)"
                " WHERE kind = $1 AND key = $2 AND window_start = $3",
                kind,
                key,
                window_start,
            )
