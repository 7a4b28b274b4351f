"""Browser login on PostgreSQL: the store's reads; writes go through ``transaction()``,
whose :class:`issuer.store.postgres.PostgresTx` carries the login statements."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from issuer.store.login_base import BrowserSessionRecord, ConsentRecord, InteractionRecord

if TYPE_CHECKING:
    from issuer.store.postgres import PostgresTx


class PostgresLoginStore:
    """Mixed into :class:`issuer.store.postgres.PostgresStore`."""

    if TYPE_CHECKING:

        def transaction(self) -> AbstractAsyncContextManager[PostgresTx]: ...

    def login(self) -> AbstractAsyncContextManager[PostgresTx]:
        return self.transaction()

    def _reader(self) -> AbstractAsyncContextManager[PostgresTx]:
        # A read-only transaction: one statement each, nothing locked.
        return self.transaction()

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
