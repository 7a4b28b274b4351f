"""What browser login needs from a store: sessions, interactions, codes, consents.

Both stores implement :class:`LoginStore`; a :class:`LoginTx` is the store's
unit of work (:class:`issuer.store.base.StoreTx`) that can also spend a code,
so a code exchange and the refresh family it starts commit together.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from issuer.store.base import Store, StoreTx


@dataclass(frozen=True, slots=True)
class BrowserSessionRecord:
    session_hash: str = field(repr=False)
    user_id: str
    auth_time: datetime
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class InteractionRecord:
    """An authorization request waiting for the user, bound to one browser."""

    interaction_id: str
    browser_hash: str = field(repr=False)
    client_id: str
    request: dict[str, Any]
    created_at: datetime
    expires_at: datetime
    user_id: str | None = None
    session_hash: str | None = field(default=None, repr=False)
    auth_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuthorizationCodeRecord:
    code_hash: str = field(repr=False)
    client_id: str
    user_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    code_challenge: str
    nonce: str | None
    auth_time: datetime
    session_hash: str | None = field(repr=False)
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    family_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    user_id: str
    client_id: str
    scope: tuple[str, ...]
    granted_at: datetime


class LoginReads(Protocol):
    async def get_browser_session(self, session_hash: str) -> BrowserSessionRecord | None: ...
    async def get_interaction(self, interaction_id: str) -> InteractionRecord | None: ...
    async def get_consent(self, user_id: str, client_id: str) -> ConsentRecord | None: ...
    async def list_consents(self, user_id: str) -> list[ConsentRecord]: ...
    async def origin_registered(self, origin: str) -> bool:
        """Does any enabled client list ``origin`` among its web origins?"""
        ...


class LoginTx(StoreTx, LoginReads, Protocol):
    async def purge_login(self, now: datetime, keep: timedelta) -> int: ...

    async def insert_browser_session(self, session: BrowserSessionRecord) -> None: ...
    async def end_browser_session(self, session_hash: str, at: datetime) -> list[str]:
        """End the session; the ids of the refresh families it started."""
        ...

    async def insert_interaction(self, interaction: InteractionRecord) -> None: ...
    async def set_interaction_login(
        self, interaction_id: str, user_id: str, session_hash: str, auth_time: datetime
    ) -> None: ...
    async def delete_interaction(self, interaction_id: str) -> bool:
        """True if this call deleted it (an interaction completes once)."""
        ...

    async def insert_code(self, code: AuthorizationCodeRecord) -> None: ...
    async def lock_code(self, code_hash: str) -> AuthorizationCodeRecord | None:
        """The code, its row locked until the transaction ends."""
        ...

    async def spend_code(self, code_hash: str, at: datetime) -> bool: ...
    async def set_code_family(self, code_hash: str, family_id: str) -> None: ...
    async def link_session_family(self, family_id: str, session_hash: str) -> None: ...
    async def move_session_families(self, from_hash: str, to_hash: str) -> None:
        """Hand the refresh families one browser session started to another."""
        ...

    async def save_consent(self, consent: ConsentRecord) -> None: ...
    async def delete_consent(self, user_id: str, client_id: str) -> bool: ...
    async def live_families(self, user_id: str, client_id: str) -> list[str]:
        """The user's unrevoked refresh families at this client, in a fixed order."""
        ...


class LoginStore(LoginReads, Protocol):
    def login(self) -> AbstractAsyncContextManager[LoginTx]:
        """One write transaction over sessions, codes and refresh families."""
        ...


class BrowserLoginStore(Store, LoginStore, Protocol):
    """Everything browser login touches: clients, users, sessions and its own tables."""


def browser_login_store(store: Store) -> BrowserLoginStore:
    """Both stores implement :class:`BrowserLoginStore` (checked by mypy in the tests)."""
    return cast(BrowserLoginStore, store)
