"""Browser login on SQLite: the store's reads; writes go through ``transaction()``,
whose :class:`issuer.store.sqlite.SQLiteTx` carries the login statements."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from issuer.store.login_base import BrowserSessionRecord, ConsentRecord, InteractionRecord

if TYPE_CHECKING:
    from issuer.store.sqlite import SQLiteTx


class SQLiteLoginStore:
    """Mixed into :class:`issuer.store.sqlite.SQLiteStore`."""

    if TYPE_CHECKING:

        def transaction(self, *, write: bool = True) -> AbstractAsyncContextManager[SQLiteTx]: ...
        def read(self) -> AbstractAsyncContextManager[SQLiteTx]: ...

    def login(self) -> AbstractAsyncContextManager[SQLiteTx]:
        return self.transaction()

    async def get_browser_session(self, session_hash: str) -> BrowserSessionRecord | None:
        async with self.read() as tx:
            return await tx.get_browser_session(session_hash)

    async def get_interaction(self, interaction_id: str) -> InteractionRecord | None:
        async with self.read() as tx:
            return await tx.get_interaction(interaction_id)

    async def get_consent(self, user_id: str, client_id: str) -> ConsentRecord | None:
        async with self.read() as tx:
            return await tx.get_consent(user_id, client_id)

    async def list_consents(self, user_id: str) -> list[ConsentRecord]:
        async with self.read() as tx:
            return await tx.list_consents(user_id)

    async def origin_registered(self, origin: str) -> bool:
        async with self.read() as tx:
            return await tx.origin_registered(origin)
