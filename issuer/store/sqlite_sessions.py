"""Users, refresh-token families, the deny list and login counters on SQLite.

Every session write runs in ``BEGIN IMMEDIATE``: SQLite's write lock serializes
it against every other writer, in this process and in the other workers, so a
spent check and the spend happen as one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiosqlite

from issuer.errors import ConflictError
from issuer.store.base import (
    AuditEvent,
    FamilyRecord,
    RefreshTokenRecord,
    RevocationEntry,
    UserRecord,
)

if TYPE_CHECKING:
    from issuer.store.sqlite import SQLiteTx


def ts(when: datetime | None) -> float | None:
    return None if when is None else when.timestamp()


def dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def dt_(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _user(row: sqlite3.Row) -> UserRecord:
    return UserRecord(
        user_id=row["user_id"],
        username=row["username"],
        username_key=row["username_key"],
        password_hash=row["password_hash"],
        roles=tuple(row["roles"].split()),
        disabled=bool(row["disabled"]),
        created_at=dt_(row["created_at"]),
        updated_at=dt_(row["updated_at"]),
    )


def _token(row: sqlite3.Row) -> RefreshTokenRecord:
    return RefreshTokenRecord(
        token_hash=row["token_hash"],
        family_id=row["family_id"],
        generation=row["generation"],
        parent_hash=row["parent_hash"],
        scope=tuple(row["scope"].split()),
        issued_at=dt_(row["issued_at"]),
        idle_expires_at=dt_(row["idle_expires_at"]),
        spent_at=dt(row["spent_at"]),
    )


def _family(row: sqlite3.Row) -> FamilyRecord:
    return FamilyRecord(
        family_id=row["family_id"],
        user_id=row["user_id"],
        client_id=row["client_id"],
        created_at=dt_(row["created_at"]),
        expires_at=dt_(row["f_expires_at"]),
        revoked_at=dt(row["f_revoked_at"]),
    )


_FIND_REFRESH = """
SELECT t.*, f.user_id, f.client_id, f.created_at, f.expires_at AS f_expires_at,
       f.revoked_at AS f_revoked_at
FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id
WHERE t.token_hash = ?
"""


_LOGIN_FAILURES = "SELECT count FROM login_failures WHERE kind = ? AND key = ? AND window_start = ?"


class SQLiteSessionTx:
    """Statements inside one open write transaction (the caller holds the connection lock)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def fetchone(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with self.db.execute(sql, tuple(args)) as cur:
            return await cur.fetchone()

    async def execute(self, sql: str, args: Iterable[Any] = ()) -> int:
        async with self.db.execute(sql, tuple(args)) as cur:
            return cur.rowcount

    async def add_audit(self, event: AuditEvent) -> None:
        await self.execute(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            (ts(event.at), event.actor, event.action, event.target, json.dumps(event.detail)),
        )

    async def login_failures(self, kind: str, key: str, window_start: datetime) -> int:
        row = await self.fetchone(_LOGIN_FAILURES, (kind, key, ts(window_start)))
        return 0 if row is None else int(row["count"])

    async def add_login_failure(self, kind: str, key: str, window_start: datetime) -> int:
        # Old windows go as new ones start, so the table stays small.
        await self.execute(
            "DELETE FROM login_failures WHERE kind = ? AND key = ? AND window_start < ?",
            (kind, key, ts(window_start)),
        )
        row = await self.fetchone(
            "INSERT INTO login_failures (kind, key, window_start, count) VALUES (?, ?, ?, 1)"
            " ON CONFLICT (kind, key, window_start) DO UPDATE SET count = count + 1"
            " RETURNING count",
            (kind, key, ts(window_start)),
        )
        assert row is not None
        return int(row["count"])

    async def clear_login_failures(self, kind: str, key: str) -> None:
        await self.execute("DELETE FROM login_failures WHERE kind = ? AND key = ?", (kind, key))

    async def lock_refresh(self, token_hash: str) -> tuple[RefreshTokenRecord, FamilyRecord] | None:
        # The whole transaction holds SQLite's write lock already.
        row = await self.fetchone(_FIND_REFRESH, (token_hash,))
        return None if row is None else (_token(row), _family(row))

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self.fetchone("SELECT * FROM users WHERE user_id = ?", (user_id,))
        return None if row is None else _user(row)

    async def insert_family(self, family: FamilyRecord) -> None:
        await self.execute(
            "INSERT INTO refresh_families (family_id, user_id, client_id, created_at,"
            " expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                family.family_id,
                family.user_id,
                family.client_id,
                ts(family.created_at),
                ts(family.expires_at),
                ts(family.revoked_at),
            ),
        )

    async def insert_refresh(self, token: RefreshTokenRecord) -> None:
        await self.execute(
            "INSERT INTO refresh_tokens (token_hash, family_id, generation, parent_hash, scope,"
            " issued_at, idle_expires_at, spent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                token.token_hash,
                token.family_id,
                token.generation,
                token.parent_hash,
                " ".join(token.scope),
                ts(token.issued_at),
                ts(token.idle_expires_at),
                ts(token.spent_at),
            ),
        )

    async def spend_refresh(self, token_hash: str, at: datetime) -> bool:
        row = await self.fetchone(
            "UPDATE refresh_tokens SET spent_at = ? WHERE token_hash = ? AND spent_at IS NULL"
            " RETURNING token_hash",
            (ts(at), token_hash),
        )
        return row is not None

    async def spend_child_of(
        self, family_id: str, parent_hash: str, at: datetime
    ) -> RefreshTokenRecord | None:
        row = await self.fetchone(
            "UPDATE refresh_tokens SET spent_at = ?"
            " WHERE family_id = ? AND parent_hash = ? AND spent_at IS NULL RETURNING *",
            (ts(at), family_id, parent_hash),
        )
        return None if row is None else _token(row)

    async def record_access_token(self, jti: str, family_id: str, exp: datetime) -> None:
        await self.execute(
            "INSERT INTO family_access_tokens (jti, family_id, exp) VALUES (?, ?, ?)",
            (jti, family_id, ts(exp)),
        )

    async def family_of_access_token(self, jti: str) -> str | None:
        row = await self.fetchone(
            "SELECT family_id FROM family_access_tokens WHERE jti = ?", (jti,)
        )
        return None if row is None else str(row["family_id"])

    async def revoke_family(self, family_id: str, at: datetime, leeway: int) -> bool:
        n = await self.execute(
            "UPDATE refresh_families SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL",
            (ts(at), family_id),
        )
        await self.execute(
            "INSERT INTO revocation_events (kind, subject, at, drop_after)"
            " SELECT 'jti', jti, exp, exp + ? FROM family_access_tokens"
            " WHERE family_id = ? AND exp + ? > ?"
            " ON CONFLICT (kind, subject, at) DO NOTHING",
            (leeway, family_id, leeway, ts(at)),
        )
        return n == 1

    async def revoke_user_families(self, user_id: str, at: datetime) -> int:
        return await self.execute(
            "UPDATE refresh_families SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
            (ts(at), user_id),
        )

    async def add_revocation(
        self, kind: str, subject: str, at: datetime, drop_after: datetime
    ) -> None:
        await self.execute(
            "INSERT INTO revocation_events (kind, subject, at, drop_after) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (kind, subject, at) DO NOTHING",
            (kind, subject, ts(at), ts(drop_after)),
        )


class SQLiteUserStore:
    """Mixed into :class:`issuer.store.sqlite.SQLiteStore`."""

    if TYPE_CHECKING:

        def transaction(self, *, write: bool = True) -> AbstractAsyncContextManager[SQLiteTx]: ...
        def read(self) -> AbstractAsyncContextManager[SQLiteTx]: ...

    async def create_user(self, user: UserRecord) -> None:
        try:
            async with self.transaction() as tx:
                await tx.execute(
                    "INSERT INTO users (user_id, username, username_key, password_hash, roles,"
                    " disabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        user.user_id,
                        user.username,
                        user.username_key,
                        user.password_hash,
                        " ".join(user.roles),
                        int(user.disabled),
                        ts(user.created_at),
                        ts(user.updated_at),
                    ),
                )
        except sqlite3.IntegrityError:
            raise ConflictError("a user with this username exists already") from None

    async def get_user(self, user_id: str) -> UserRecord | None:
        async with self.read() as tx:
            row = await tx.fetchone("SELECT * FROM users WHERE user_id = ?", (user_id,))
        return None if row is None else _user(row)

    async def get_user_by_key(self, username_key: str) -> UserRecord | None:
        async with self.read() as tx:
            row = await tx.fetchone("SELECT * FROM users WHERE username_key = ?", (username_key,))
        return None if row is None else _user(row)

    async def list_users(self, after: str | None = None, limit: int = 100) -> list[UserRecord]:
        async with self.read() as tx:
            rows = await tx.fetchall(
                "SELECT * FROM users WHERE username_key > ? ORDER BY username_key LIMIT ?",
                (after or "", limit),
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
        async with self.transaction() as tx:
            row = await tx.fetchone(
                "UPDATE users SET roles = coalesce(?, roles), disabled = coalesce(?, disabled),"
                " password_hash = coalesce(?, password_hash), updated_at = ?"
                " WHERE user_id = ? RETURNING *",
                (
                    None if roles is None else " ".join(roles),
                    None if disabled is None else int(disabled),
                    password_hash,
                    ts(at),
                    user_id,
                ),
            )
        return None if row is None else _user(row)

    def sessions(self) -> AbstractAsyncContextManager[SQLiteSessionTx]:
        return self._sessions()

    @asynccontextmanager
    async def _sessions(self) -> AsyncIterator[SQLiteSessionTx]:
        async with self.transaction() as tx:
            yield SQLiteSessionTx(tx.db)

    async def find_refresh(self, token_hash: str) -> tuple[RefreshTokenRecord, FamilyRecord] | None:
        async with self.read() as tx:
            row = await tx.fetchone(_FIND_REFRESH, (token_hash,))
        return None if row is None else (_token(row), _family(row))

    async def is_revoked(self, jti: str, sub: str, iat: float) -> bool:
        async with self.read() as tx:
            row = await tx.fetchone(
                "SELECT 1 FROM revocation_events WHERE (kind = 'jti' AND subject = ?)"
                " OR (kind = 'sub' AND subject = ? AND at >= ?) LIMIT 1",
                (jti, sub, iat),
            )
        return row is not None

    async def list_revocations(
        self, after: int, now: datetime, limit: int
    ) -> tuple[list[RevocationEntry], int]:
        async with self.read() as tx:
            rows = await tx.fetchall(
                "SELECT seq, kind, subject, at FROM revocation_events"
                " WHERE seq > ? AND drop_after > ? ORDER BY seq LIMIT ?",
                (after, ts(now), limit),
            )
            top = await tx.fetchone("SELECT max(seq) AS top FROM revocation_events")
        entries = [RevocationEntry(r["seq"], r["kind"], r["subject"], dt_(r["at"])) for r in rows]
        return entries, int(top["top"] or 0) if top is not None else 0

    async def login_failures(self, kind: str, key: str, window_start: datetime) -> int:
        async with self.read() as tx:
            row = await tx.fetchone(_LOGIN_FAILURES, (kind, key, ts(window_start)))
        return 0 if row is None else int(row["count"])

    async def purge_expired(self, now: datetime, keep: timedelta) -> int:
        old = ts(now - keep)
        deleted = 0
        async with self.transaction() as tx:
            for sql, args in (
                ("DELETE FROM revocation_events WHERE drop_after <= ?", (ts(now),)),
                ("DELETE FROM family_access_tokens WHERE exp < ?", (old,)),
                (
                    "DELETE FROM family_access_tokens WHERE family_id IN"
                    " (SELECT family_id FROM refresh_families WHERE expires_at <= ?)",
                    (ts(now),),
                ),
                (
                    "DELETE FROM refresh_tokens WHERE family_id IN"
                    " (SELECT family_id FROM refresh_families WHERE expires_at <= ?)",
                    (ts(now),),
                ),
                ("DELETE FROM refresh_families WHERE expires_at <= ?", (ts(now),)),
                ("DELETE FROM login_failures WHERE window_start < ?", (old,)),
            ):
                deleted += await tx.execute(sql, args)
        return deleted
