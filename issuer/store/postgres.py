"""The PostgreSQL store, through an asyncpg pool: the choice for more than one replica.

Key-schedule changes take a transaction-scoped advisory lock, so replicas that
all run the scheduler never both create a successor; a NOTIFY on commit tells
every replica's keyring to reload at once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from issuer.store import rows
from issuer.store.base import AuditEvent, ClientRecord, KeyRecord
from issuer.store.login_sql import LoginStatements
from issuer.store.migrate import PG_MIGRATION_LOCK, SCHEMA_TABLE_POSTGRES, load_migrations, pending
from issuer.store.pgpool import BoundedPool
from issuer.store.postgres_login import PostgresLoginStore
from issuer.store.postgres_rotation import RotationBatcher
from issuer.store.postgres_sessions import PostgresSessionTx, PostgresUserStore
from issuer.store.rows import KEY_COLUMNS, as_is

PG_KEY_LOCK = 0x15_5E_ED_02
KEYS_CHANNEL = "issuer_keys"
# Migrations are not bound by ISSUER_DB_STATEMENT_TIMEOUT (an index build may take long).
MIGRATION_TIMEOUT = 3600.0


class PostgresTx(LoginStatements, PostgresSessionTx):
    """Statements on one connection inside an open transaction."""

    postgres = True

    # LoginStatements' primitives
    async def _rows(self, sql: str, *args: Any) -> list[Mapping[str, Any]]:
        return list(await self.conn.fetch(self._sql(sql), *args))

    async def _exec(self, sql: str, *args: Any) -> None:
        await self.conn.execute(self._sql(sql), *args)

    async def list_keys(self) -> list[KeyRecord]:
        found = await self.conn.fetch(
            f"SELECT {KEY_COLUMNS} FROM signing_keys ORDER BY activates_at, created_at, kid"  # noqa: S608
        )
        return [rows.key(r, as_is) for r in found]

    async def insert_key(self, key: KeyRecord) -> None:
        await self.conn.execute(
            f"INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",  # noqa: S608
            key.kid,
            key.alg,
            json.dumps(key.public_jwk),
            key.private_wrapped,
            key.kek_id,
            key.created_at,
            key.activates_at,
            key.revoked_at,
        )

    async def revoke_key(self, kid: str, at: datetime) -> bool:
        status = await self.conn.execute(
            "UPDATE signing_keys SET revoked_at = $1, private_wrapped = NULL"
            " WHERE kid = $2 AND revoked_at IS NULL",
            at,
            kid,
        )
        return bool(status == "UPDATE 1")

    async def add_revocation(
        self, kind: str, subject: str, at: datetime, drop_after: datetime
    ) -> None:
        await PostgresSessionTx(self.conn).add_revocation(kind, subject, at, drop_after)

    async def destroy_private_key(self, kid: str) -> None:
        await self.conn.execute(
            "UPDATE signing_keys SET private_wrapped = NULL WHERE kid = $1", kid
        )

    async def replace_wrapped_key(self, kid: str, wrapped: bytes, kek_id: str) -> None:
        await self.conn.execute(
            "UPDATE signing_keys SET private_wrapped = $1, kek_id = $2"
            " WHERE kid = $3 AND private_wrapped IS NOT NULL",
            wrapped,
            kek_id,
            kid,
        )


class PostgresStore(PostgresUserStore, PostgresLoginStore):
    dialect = "postgres"  # also the name of its migrations folder, issuer/sql/postgres

    def __init__(self, pool: BoundedPool, dsn: str, session_state: set[int]) -> None:
        self.pool = pool
        self.rotations = RotationBatcher(pool)
        self.dsn = dsn
        # Server pids of pooled connections that hold session state (the migration's
        # session advisory lock) until their next release: only those pay the reset.
        self._session_state = session_state

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        max_size: int = 10,
        acquire_timeout: float = 2.0,
        statement_timeout: float = 5.0,
    ) -> PostgresStore:
        session_state: set[int] = set()

        async def reset(conn: asyncpg.Connection) -> None:
            # asyncpg has already rolled back an open transaction and dropped listeners;
            # its default reset adds a round trip per release (UNLISTEN *, RESET ALL,
            # pg_advisory_unlock_all(), CLOSE ALL) for state no pooled connection holds
            # here: LISTEN has a connection of its own (issuer/notify.py), no statement
            # sets a session variable or opens a cursor, and the one session lock
            # (migrate) marks its connection.
            pid = conn.get_server_pid()
            if pid in session_state:
                session_state.discard(pid)
                await conn.execute(conn.get_reset_query())

        pool = await BoundedPool.create(
            dsn,
            max_size=max_size,
            acquire_timeout=acquire_timeout,
            statement_timeout=statement_timeout,
            reset=reset,
        )
        return cls(pool, dsn, session_state)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTx]:
        async with self.pool.transaction() as conn:
            yield PostgresTx(conn)

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def migrate(self) -> list[str]:
        available = load_migrations(self.dialect)
        async with self.pool.acquire() as conn:
            # Session lock: held across the per-migration transactions below. Should its
            # unlock fail, the full reset on release drops it.
            self._session_state.add(conn.get_server_pid())
            slow = MIGRATION_TIMEOUT
            await conn.execute("SELECT pg_advisory_lock($1)", PG_MIGRATION_LOCK, timeout=slow)
            try:
                await conn.execute(SCHEMA_TABLE_POSTGRES, timeout=slow)
                done = await conn.fetch("SELECT version, checksum FROM schema_migrations")
                todo = pending(available, {r["version"]: r["checksum"] for r in done})
                for mig in todo:
                    async with conn.transaction():
                        await conn.execute(mig.sql, timeout=slow)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum)"
                            " VALUES ($1, $2, $3)",
                            mig.version,
                            mig.name,
                            mig.checksum,
                        )
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", PG_MIGRATION_LOCK)
        return [f"{m.version:04d}_{m.name}" for m in todo]

    # Keys
    async def list_keys(self) -> list[KeyRecord]:
        async with self.pool.acquire() as conn:
            return await PostgresTx(conn).list_keys()

    def key_schedule(self) -> AbstractAsyncContextManager[PostgresTx]:
        return self._key_schedule()

    @asynccontextmanager
    async def _key_schedule(self) -> AsyncIterator[PostgresTx]:
        async with self.transaction() as tx:
            await tx.conn.execute("SELECT pg_advisory_xact_lock($1)", PG_KEY_LOCK)
            yield tx
            # Delivered on commit only; every replica's keyring reloads at once.
            await tx.conn.execute("SELECT pg_notify($1, '')", KEYS_CHANNEL)

    # Clients
    async def create_client(self, client: ClientRecord) -> None:
        async with self.transaction() as tx:
            await tx.create_client(client)

    async def get_client(self, client_id: str) -> ClientRecord | None:
        row = await self.pool.fetchrow("SELECT * FROM clients WHERE client_id = $1", client_id)
        return None if row is None else rows.client(row, as_is)

    async def set_client_disabled(self, client_id: str, disabled: bool) -> ClientRecord | None:
        async with self.transaction() as tx:
            return await tx.set_client_disabled(client_id, disabled)

    async def list_clients(self) -> list[ClientRecord]:
        found = await self.pool.fetch("SELECT * FROM clients ORDER BY created_at, name")
        return [rows.client(r, as_is) for r in found]

    # Audit
    async def add_audit(self, event: AuditEvent) -> None:
        async with self.transaction() as tx:
            await tx.add_audit(event)

    async def list_audit(self, after: int = 0, limit: int = 100) -> list[AuditEvent]:
        found = await self.pool.fetch(
            "SELECT * FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2", after, limit
        )
        return [rows.audit(r, as_is) for r in found]
