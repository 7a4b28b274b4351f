"""Users, clients, refresh-token families, the deny list and login counters on SQLite.

Every write runs in ``BEGIN IMMEDIATE``: SQLite's write lock serializes it
against every other writer, in this process and in the other workers, so a
spent check and the spend happen as one, and a transaction that waited for the
lock reads rows as the previous writer committed them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiosqlite

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
from issuer.store.rows import epoch as ts
from issuer.store.rows import from_epoch as dt_

if TYPE_CHECKING:
    from issuer.store.sqlite import SQLiteTx


class SQLiteSessionTx:
    """Statements inside one open write transaction (the caller holds the connection lock)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def fetchall(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self.db.execute(sql, tuple(args)) as cur:
            return list(await cur.fetchall())

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

    # Clients and users
    async def create_client(self, client: ClientRecord) -> None:
        try:
            await self.execute(
                "INSERT INTO clients (client_id, name, secret_hash, scopes, first_party,"
                " disabled, created_at, redirect_uris, post_logout_redirect_uris, web_origins)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    client.client_id,
                    client.name,
                    client.secret_hash,
                    " ".join(client.scopes),
                    int(client.first_party),
                    int(client.disabled),
                    ts(client.created_at),
                    " ".join(client.redirect_uris),
                    " ".join(client.post_logout_redirect_uris),
                    " ".join(client.web_origins),
                ),
            )
        except sqlite3.IntegrityError:
            raise ConflictError(f"a client named {client.name!r} exists already") from None

    async def set_client_disabled(self, client_id: str, disabled: bool) -> ClientRecord | None:
        row = await self.fetchone(
            "UPDATE clients SET disabled = ? WHERE client_id = ? RETURNING *",
            (int(disabled), client_id),
        )
        return None if row is None else rows.client(row, dt_)

    async def create_user(self, user: UserRecord) -> None:
        try:
            await self.execute(
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

    async def update_user(
        self,
        user_id: str,
        at: datetime,
        *,
        roles: tuple[str, ...] | None = None,
        disabled: bool | None = None,
        password_hash: str | None = None,
    ) -> UserRecord | None:
        row = await self.fetchone(
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
        return None if row is None else rows.user(row, dt_)

    # Failed-login counters
    async def login_failures(self, kind: str, key: str, window_start: datetime) -> int:
        row = await self.fetchone(rows.LOGIN_FAILURES, (kind, key, ts(window_start)))
        return 0 if row is None else int(row["count"])

    async def add_login_failure(self, kind: str, key: str, window_start: datetime) -> int:
        await self.execute(rows.DROP_OLD_LOGIN_FAILURES, (kind, key, ts(window_start)))
        row = await self.fetchone(rows.ADD_LOGIN_FAILURE, (kind, key, ts(window_start)))
        assert row is not None
        return int(row["count"])

    async def clear_login_failures(self, kind: str, key: str) -> None:
        await self.execute(rows.CLEAR_LOGIN_FAILURES, (kind, key))

    # Sessions
    async def lock_refresh(self, token_hash: str) -> tuple[RefreshTokenRecord, FamilyRecord] | None:
        # The whole transaction holds SQLite's write lock already.
        row = await self.fetchone(rows.FIND_REFRESH, (token_hash,))
        return None if row is None else (rows.token(row, dt_), rows.family(row, dt_))

    async def lock_families(self, family_ids: set[str]) -> None:
        pass  # the write lock covers every row

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self.fetchone("SELECT * FROM users WHERE user_id = ?", (user_id,))
        return None if row is None else rows.user(row, dt_)

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
        return None if row is None else rows.token(row, dt_)

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

    async def find_refresh(self, token_hash: str) -> tuple[RefreshTokenRecord, FamilyRecord] | None:
        row = await self.fetchone(rows.FIND_REFRESH, (token_hash,))
        return None if row is None else (rows.token(row, dt_), rows.family(row, dt_))

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
        async with self.transaction() as tx:
            await tx.create_user(user)

    async def get_user(self, user_id: str) -> UserRecord | None:
        async with self.read() as tx:
            return await tx.get_user(user_id)

    async def get_user_by_key(self, username_key: str) -> UserRecord | None:
        async with self.read() as tx:
            row = await tx.fetchone("SELECT * FROM users WHERE username_key = ?", (username_key,))
        return None if row is None else rows.user(row, dt_)

    async def list_users(self, after: str | None = None, limit: int = 100) -> list[UserRecord]:
        async with self.read() as tx:
            found = await tx.fetchall(
                "SELECT * FROM users WHERE username_key > ? ORDER BY username_key LIMIT ?",
                (after or "", limit),
            )
        return [rows.user(r, dt_) for r in found]

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
        async with self.read() as tx:
            return await tx.find_refresh(token_hash)

    async def find_refresh_grant(
        self, token_hash: str
    ) -> tuple[RefreshTokenRecord, FamilyRecord, UserRecord] | None:
        async with self.read() as tx:
            row = await tx.fetchone(rows.FIND_REFRESH_GRANT, (token_hash,))
        return None if row is None else rows.refresh_grant(row, dt_)

    async def rotate_refresh(self, rotation: Rotation, clock: Clock) -> Rotated | None:
        async with self.transaction() as tx:
            now = clock.now()  # under the write lock, as lock_refresh's callers read it
            row = await tx.fetchone(rows.FIND_REFRESH_GRANT, (rotation.token_hash,))
            if row is None:
                return None
            token, family, user = rows.refresh_grant(row, dt_)
            scope = token.scope if rotation.scope is None else rotation.scope
            # What PostgreSQL's statement checks (postgres_rotation.ROTATE_REFRESH).
            if (
                family.client_id != rotation.client_id
                or family.revoked_at is not None
                or now >= family.expires_at
                or user.disabled
                or token.spent_at is not None
                or now >= token.idle_expires_at
                or not set(scope) <= set(token.scope)
            ):
                return None
            if not await tx.spend_refresh(rotation.token_hash, now):
                return None
            await tx.insert_refresh(
                RefreshTokenRecord(
                    token_hash=rotation.new_hash,
                    family_id=family.family_id,
                    generation=token.generation + 1,
                    parent_hash=rotation.token_hash,
                    scope=scope,
                    issued_at=now,
                    idle_expires_at=min(now + rotation.idle_ttl, family.expires_at),
                )
            )
            await tx.record_access_token(rotation.jti, family.family_id, rotation.access_exp)
        return Rotated(family.family_id, user.user_id, user.roles, scope)

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
        # One read transaction: the page and the cursor come from one snapshot, so a
        # revocation another worker commits in between is after the cursor, not under it.
        async with self.transaction(write=False) as tx:
            found = await tx.fetchall(rows.LIST_REVOCATIONS, (after, ts(now), limit))
            top = await tx.fetchone(rows.TOP_REVOCATION)
        entries = [RevocationEntry(r["seq"], r["kind"], r["subject"], dt_(r["at"])) for r in found]
        return entries, int(top["top"] or 0) if top is not None else 0

    async def login_failures(self, kind: str, key: str, window_start: datetime) -> int:
        async with self.read() as tx:
            return await tx.login_failures(kind, key, window_start)

    async def purge_expired(self, now: datetime, keep: timedelta) -> int:
        deleted = 0
        async with self.transaction() as tx:
            for sql, arg in rows.purge_statements(ts(now), ts(now - keep)):
                deleted += await tx.execute(sql, (arg,))
        return deleted
