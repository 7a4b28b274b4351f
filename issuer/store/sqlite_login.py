"""Browser login on SQLite: the session transaction plus the login statements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

from issuer.store.login_base import BrowserSessionRecord, ConsentRecord, InteractionRecord
from issuer.store.login_sql import LoginStatements
from issuer.store.sqlite_sessions import SQLiteSessionTx

if TYPE_CHECKING:
    from issuer.store.sqlite import SQLiteTx


class SQLiteLoginTx(LoginStatements, SQLiteSessionTx):
    postgres = False

    async def _rows(self, sql: str, *args: Any) -> list[Mapping[str, Any]]:
        async with self.db.execute(self._sql(sql), args) as cur:
            return [dict(zip(r.keys(), r, strict=True)) for r in await cur.fetchall()]

    async def _exec(self, sql: str, *args: Any) -> None:
        await self.db.execute(self._sql(sql), args)


class SQLiteLoginStore:
    """Mixed into :class:`issuer.store.sqlite.SQLiteStore`."""

    if TYPE_CHECKING:

        def transaction(self, *, write: bool = True) -> AbstractAsyncContextManager[SQLiteTx]: ...
        def read(self) -> AbstractAsyncContextManager[SQLiteTx]: ...

    def login(self) -> AbstractAsyncContextManager[SQLiteLoginTx]:
        return self._login()

    @asynccontextmanager
    async def _login(self) -> AsyncIterator[SQLiteLoginTx]:
        async with self.transaction() as tx:
            yield SQLiteLoginTx(tx.db)

    @asynccontextmanager
    async def _reader(self) -> AsyncIterator[SQLiteLoginTx]:
        async with self.read() as tx:
            yield SQLiteLoginTx(tx.db)

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
