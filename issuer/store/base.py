"""The Store protocol: the only seam between the service and its database.

Both implementations (``postgres.py``, ``sqlite.py``) pass the same contract
tests. Writes that must not race are single statements or transactions that
make the race impossible; nothing here is check-then-act in Python.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One signing key. Its state (pending, active, …) is derived from these timestamps."""

    kid: str
    alg: str
    public_jwk: dict[str, str]
    private_wrapped: bytes | None = field(repr=False)
    kek_id: str | None
    created_at: datetime
    activates_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClientRecord:
    client_id: str
    name: str
    secret_hash: str | None = field(repr=False)
    scopes: tuple[str, ...]
    first_party: bool
    created_at: datetime
    disabled: bool = False

    @property
    def public(self) -> bool:
        return self.secret_hash is None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    at: datetime
    actor: str
    action: str
    target: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


class KeyScheduleTx(Protocol):
    """Key writes inside one transaction that holds the cross-process key lock."""

    async def list_keys(self) -> list[KeyRecord]: ...
    async def insert_key(self, key: KeyRecord) -> None: ...
    async def revoke_key(self, kid: str, at: datetime) -> bool: ...
    async def destroy_private_key(self, kid: str) -> None: ...
    async def replace_wrapped_key(self, kid: str, wrapped: bytes, kek_id: str) -> None: ...
    async def add_audit(self, event: AuditEvent) -> None: ...


class Store(Protocol):
    dialect: str

    async def close(self) -> None: ...
    async def ping(self) -> None: ...

    # Keys
    async def list_keys(self) -> list[KeyRecord]: ...
    def key_schedule(self) -> AbstractAsyncContextManager[KeyScheduleTx]:
        """Serialize key-schedule changes across workers and replicas (advisory or write lock)."""
        ...

    # Clients
    async def create_client(self, client: ClientRecord) -> None: ...
    async def get_client(self, client_id: str) -> ClientRecord | None: ...
    async def list_clients(self) -> list[ClientRecord]: ...

    # Audit
    async def add_audit(self, event: AuditEvent) -> None: ...
    async def list_audit(self, after: int = 0, limit: int = 100) -> list[AuditEvent]: ...
