"""The embedded store: one SQLite file through aiosqlite.

One connection per process, in autocommit mode with explicit transactions.
An asyncio lock keeps one coroutine's transaction from interleaving with
another's statements on the shared connection; ``BEGIN IMMEDIATE`` takes
SQLite's write lock, which serializes writers across worker processes.
WAL lets readers in other processes go on while one process writes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from issuer import logs
from issuer.errors import DatabaseUnavailableError, InvalidRequestError
from issuer.store import rows
from issuer.store.base import AuditEvent, ClientRecord, KeyRecord
from issuer.store.login_sql import LoginStatements
from issuer.store.migrate import (
    SCHEMA_TABLE_SQLITE,
    load_migrations,
    pending,
    sqlite_statements,
)
from issuer.store.rows import KEY_COLUMNS, from_epoch
from issuer.store.rows import epoch as ts
from issuer.store.sqlite_login import SQLiteLoginStore
from issuer.store.sqlite_sessions import SQLiteSessionTx, SQLiteUserStore


def translate(exc: Exception) -> Exception | None:
    """The error to raise instead of sqlite3's ``exc``, or None to let it through."""
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
        # Another process held the write lock past ISSUER_DB_STATEMENT_TIMEOUT.
        logs.overload(
            "database_unavailable",
            "database unavailable (SQLite: %s): answering 503 temporarily_unavailable",
            str(exc)[:60],
        )
        return DatabaseUnavailableError()
    if isinstance(exc, TimeoutError):
        logs.overload(
            "database_unavailable",
            "database unavailable (SQLite connection busy past ISSUER_DB_ACQUIRE_TIMEOUT): "
            "answering 503 temporarily_unavailable",
        )
        return DatabaseUnavailableError()
    if isinstance(exc, UnicodeEncodeError | OverflowError):
        # A lone surrogate that got past the request parsers, an integer over 64 bits.
        return InvalidRequestError("a value in the request cannot be stored")
    return None


@asynccontextmanager
async def translated_errors() -> AsyncIterator[None]:
    try:
        yield
    except Exception as exc:
        better = translate(exc)
        if better is None:
            raise
        raise better from None


def sqlite_path(url: str) -> Path:
    """``sqlite:///./var/x.db`` -> ``./var/x.db``; ``sqlite:////abs/x.db`` -> ``/abs/x.db``."""
    return Path(url.removeprefix("sqlite:///"))


class SQLiteTx(LoginStatements, SQLiteSessionTx):
    """Statements inside one open transaction (the caller holds the connection lock)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        super().__init__(db)
        self.scrub = False  # a private key was destroyed: checkpoint the WAL after commit

    # LoginStatements' primitives
    async def _rows(self, sql: str, *args: Any) -> list[Mapping[str, Any]]:
        async with self.db.execute(self._sql(sql), args) as cur:
            return [dict(zip(r.keys(), r, strict=True)) for r in await cur.fetchall()]

    async def _exec(self, sql: str, *args: Any) -> None:
        await self.db.execute(self._sql(sql), args)

    # KeyScheduleTx
    async def list_keys(self) -> list[KeyRecord]:
        found = await self.fetchall(
            f"SELECT {KEY_COLUMNS} FROM signing_keys ORDER BY activates_at, created_at, kid"  # noqa: S608
        )
        return [rows.key(r, from_epoch) for r in found]

    async def insert_key(self, key: KeyRecord) -> None:
        await self.execute(
            f"INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            (
                key.kid,
                key.alg,
                json.dumps(key.public_jwk),
                key.private_wrapped,
                key.kek_id,
                ts(key.created_at),
                ts(key.activates_at),
                ts(key.revoked_at),
            ),
        )

    async def revoke_key(self, kid: str, at: datetime) -> bool:
        n = await self.execute(
            "UPDATE signing_keys SET revoked_at = ?, private_wrapped = NULL"
            " WHERE kid = ? AND revoked_at IS NULL",
            (ts(at), kid),
        )
        self.scrub = True
        return n == 1

    async def add_revocation(
        self, kind: str, subject: str, at: datetime, drop_after: datetime
    ) -> None:
        await SQLiteSessionTx(self.db).add_revocation(kind, subject, at, drop_after)

    async def destroy_private_key(self, kid: str) -> None:
        await self.execute("UPDATE signing_keys SET private_wrapped = NULL WHERE kid = ?", (kid,))
        self.scrub = True

    async def replace_wrapped_key(self, kid: str, wrapped: bytes, kek_id: str) -> None:
        await self.execute(
            "UPDATE signing_keys SET private_wrapped = ?, kek_id = ?"
            " WHERE kid = ? AND private_wrapped IS NOT NULL",
            (wrapped, kek_id, kid),
        )


class SQLiteStore(SQLiteUserStore, SQLiteLoginStore):
    dialect = "sqlite"

    def __init__(self, db: aiosqlite.Connection, *, acquire_timeout: float = 2.0) -> None:
        self._db = db
        self._lock = asyncio.Lock()
        self.acquire_timeout = acquire_timeout

    @classmethod
    async def open(
        cls, url: str, *, acquire_timeout: float = 2.0, statement_timeout: float = 5.0
    ) -> SQLiteStore:
        path = sqlite_path(url)
        # The file holds wrapped private keys and secret hashes: keep it to this user.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Made 0600 here whatever the directory's mode (an image's /app/var may exist
        # already); SQLite gives the -wal and -shm files the database file's mode.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = await aiosqlite.connect(path, isolation_level=None, timeout=statement_timeout)
        db.row_factory = sqlite3.Row
        try:
            for pragma in (
                "PRAGMA journal_mode = WAL",
                "PRAGMA synchronous = NORMAL",
                # How long a statement waits for another process's write lock; past it,
                # "database is locked" answers 503 (see translate).
                f"PRAGMA busy_timeout = {int(statement_timeout * 1000)}",
                "PRAGMA foreign_keys = ON",
                # Freed pages are zeroed, so destroyed private keys leave no copy in the file.
                "PRAGMA secure_delete = ON",
            ):
                await db.execute(pragma)
        except BaseException:
            # Not a database (a directory, another file): stop the connection's thread.
            await db.close()
            raise
        return cls(db, acquire_timeout=acquire_timeout)

    async def close(self) -> None:
        await self._db.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[None]:
        """This worker's one connection, waited for within ISSUER_DB_ACQUIRE_TIMEOUT."""
        async with translated_errors():
            async with asyncio.timeout(self.acquire_timeout):
                await self._lock.acquire()
            try:
                yield
            finally:
                self._lock.release()

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[SQLiteTx]:
        async with self._connection():
            await self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            tx = SQLiteTx(self._db)
            try:
                yield tx
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            else:
                await self._db.execute("COMMIT")
                if tx.scrub:
                    # The WAL still holds the page as it was before the blob was cleared;
                    # copy it back and truncate the log (best effort: readers may hold it).
                    await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SQLiteTx]:
        async with self._connection():
            yield SQLiteTx(self._db)

    async def ping(self) -> None:
        async with self.read() as tx:
            await tx.fetchone("SELECT 1")

    async def migrate(self) -> list[str]:
        available = load_migrations(self.dialect)
        async with self.transaction() as tx:
            await tx.execute(SCHEMA_TABLE_SQLITE)
            rows = await tx.fetchall("SELECT version, checksum FROM schema_migrations")
            todo = pending(available, {r["version"]: r["checksum"] for r in rows})
            for mig in todo:
                for statement in sqlite_statements(mig.sql):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
                    (mig.version, mig.name, mig.checksum),
                )
        return [f"{m.version:04d}_{m.name}" for m in todo]

    # Keys
    async def list_keys(self) -> list[KeyRecord]:
        async with self.read() as tx:
            return await tx.list_keys()

    def key_schedule(self) -> AbstractAsyncContextManager[SQLiteTx]:
        return self.transaction()

    # Clients
    async def create_client(self, client: ClientRecord) -> None:
        async with self.transaction() as tx:
            await tx.create_client(client)

    async def get_client(self, client_id: str) -> ClientRecord | None:
        async with self.read() as tx:
            row = await tx.fetchone("SELECT * FROM clients WHERE client_id = ?", (client_id,))
        return None if row is None else rows.client(row, from_epoch)

    async def set_client_disabled(self, client_id: str, disabled: bool) -> ClientRecord | None:
        async with self.transaction() as tx:
            return await tx.set_client_disabled(client_id, disabled)

    async def list_clients(self) -> list[ClientRecord]:
        async with self.read() as tx:
            found = await tx.fetchall("SELECT * FROM clients ORDER BY created_at, name")
        return [rows.client(r, from_epoch) for r in found]

    # Audit
    async def add_audit(self, event: AuditEvent) -> None:
        async with self.transaction() as tx:
            await tx.add_audit(event)

    async def list_audit(self, after: int = 0, limit: int = 100) -> list[AuditEvent]:
        async with self.read() as tx:
            found = await tx.fetchall(
                "SELECT * FROM audit_log WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
            )
        return [rows.audit(r, from_epoch) for r in found]
