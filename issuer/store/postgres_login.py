"""Browser login on PostgreSQL: the session transaction plus the login statements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import asyncpg

from issuer.store.login_base import BrowserSessionRecord, ConsentRecord, InteractionRecord
from issuer.store.login_sql import LoginStatements
from issuer.store.postgres_sessions import PostgresSessionTx

if TYPE_CHECKING:
    from issuer.store.postgres import PostgresTx


class PostgresLoginTx(LoginStatements, PostgresSessionTx):
    postgres = True

    async def _rows(self, sql: str, *args: Any) -> list[Mapping[str, Any]]:
        return list(await self.conn.fetch(self._sql(sql), *args))

    async def _exec(self, sql: str, *args: Any) -> None:
        await self.conn.execute(self._sql(sql), *args)


class PostgresLoginStore:
    """Mixed into :class:`issuer.store.postgres.PostgresStore`."""

    pool: asyncpg.Pool

    if TYPE_CHECKING:

        def transaction(self) -> AbstractAsyncContextManager[PostgresTx]: ...

    def login(self) -> AbstractAsyncContextManager[PostgresLoginTx]:
        return self._login()

    @asynccontextmanager
    async def _login(self) -> AsyncIterator[PostgresLoginTx]:
        async with self.transaction() as tx:
            yield PostgresLoginTx(tx.conn)

    @asynccontextmanager
    async def _reader(self) -> AsyncIterator[PostgresLoginTx]:
        async with self.pool.acquire() as conn:
            yield PostgresLoginTx(conn)

    async def get_browser_session(self, session_hash: str) -> BrowserSessionRecord | None:
        async with self._reader() as tx:
            return await tx.get_browser_session(session_hash)

    async def get_interaction(self, interaction_id: str) -> InteractionRecord | None:
        async with self._reader() as tx:
            return await tx.get_interaction(interaction_id)

    async def get_consent(self, user_id: str, client_id: str) -> ConsentRecord | None:
        async with self._reader() as tx:
            return await tx.get_consent(user_id, client_id)

    async def list_consents(self, user_id: str) -> list[ConsentRecord]:
        async with self._reader() as tx:
            return await tx.list_consents(user_id)

    async def origin_registered(self, origin: str) -> bool:
        async with self._reader() as tx:
            return await tx.origin_registered(origin)
