"""Clients (RFC 6749 §2): registration and authentication.

Client secrets are 256-bit random strings made here, so a fast hash is enough:
a password hash would only slow every token request down (the same reasoning
as for API keys). The stored value is a SHA-256 digest; the comparison is
constant-time, and an unknown client costs the same comparison as a known one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from issuer.clock import Clock
from issuer.config import Settings
from issuer.errors import InvalidClientError, InvalidRequestError, NotFoundError
from issuer.services.registration import registration
from issuer.services.scopes import validate_scopes
from issuer.services.sessions import cut_off_subject
from issuer.store.base import AuditEvent, ClientRecord, Store

if TYPE_CHECKING:
    from issuer.services.clients import ClientCache

MAX_CLIENT_NAME = 200
_DUMMY_HASH = hashlib.sha256(b"no such client").hexdigest()


class ClientSource(Protocol):
    """Where client rows come from: the store, or a worker's :class:`ClientCache`."""

    async def get_client(self, client_id: str) -> ClientRecord | None: ...


def hash_client_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewClient:
    """A created client and its secret, which is shown this once and never stored."""

    client: ClientRecord
    client_secret: str | None = field(repr=False)


async def create_client(
    store: Store,
    clock: Clock,
    *,
    name: str,
    scopes: list[str],
    first_party: bool = False,
    public: bool = False,
    redirect_uris: Iterable[str] = (),
    post_logout_redirect_uris: Iterable[str] = (),
    web_origins: Iterable[str] | None = None,
    actor: str,
) -> NewClient:
    name = name.strip()
    if not name or len(name) > MAX_CLIENT_NAME:
        raise InvalidRequestError(f"a client name is 1 to {MAX_CLIENT_NAME} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        # Control characters garble logs and tables, and PostgreSQL refuses NUL outright.
        raise InvalidRequestError("a client name must not contain control characters")
    redirects, logouts, origins = registration(
        public=public,
        redirect_uris=redirect_uris,
        post_logout_redirect_uris=post_logout_redirect_uris,
        web_origins=web_origins,
    )
    secret = None if public else secrets.token_urlsafe(32)
    client = ClientRecord(
        client_id=secrets.token_urlsafe(16),
        name=name,
        secret_hash=None if secret is None else hash_client_secret(secret),
        scopes=validate_scopes(scopes),
        first_party=first_party,
        created_at=clock.now(),
        redirect_uris=redirects,
        post_logout_redirect_uris=logouts,
        web_origins=origins,
    )
    async with store.transaction() as tx:
        await tx.create_client(client)
        await tx.add_audit(
            AuditEvent(
                client.created_at,
                actor,
                "client.create",
                client.client_id,
                {
                    "name": name,
                    "scopes": list(client.scopes),
                    "first_party": first_party,
                    "redirect_uris": list(redirects),
                },
            )
        )
    return NewClient(client, secret)


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """Who the client says it is, as the request carried it (RFC 6749 §2.3)."""

    client_id: str
    client_secret: str | None = field(repr=False)
    method: str  # client_secret_basic | client_secret_post | none


async def authenticate_client(
    store: ClientSource, client_id: str, client_secret: str | None
) -> ClientRecord:
    """The client, if ``client_secret`` is right (or the client is public and sent none)."""
    client = await store.get_client(client_id)
    if client is None or client.disabled:
        # Same work as a real check, so response time does not tell which ids exist.
        hmac.compare_digest(_DUMMY_HASH, hash_client_secret(client_secret or ""))
        raise InvalidClientError()
    if client.secret_hash is None:
        if client_secret is not None:
            raise InvalidClientError("this client is public and has no secret")
        return client
    if client_secret is None:
        raise InvalidClientError()
    if not hmac.compare_digest(client.secret_hash, hash_client_secret(client_secret)):
        raise InvalidClientError()
    return client


async def find_client(store: Store, ref: str) -> ClientRecord:
    """A client by its client_id or, failing that, its unique name."""
    client = await store.get_client(ref)
    if client is None:
        client = next((c for c in await store.list_clients() if c.name == ref), None)
    if client is None:
        raise NotFoundError("no such client")
    return client


async def set_client_disabled(
    store: Store,
    settings: Settings,
    clock: Clock,
    ref: str,
    *,
    disabled: bool,
    actor: str,
    cache: ClientCache | None = None,
) -> ClientRecord:
    """Disable (or enable) a client. Disabling also cuts off every token it holds:
    a client-credentials token's ``sub`` is the client_id, so one feed entry covers them.
    This worker's ``cache`` forgets the client at once; other workers' caches through
    the change notification or within the key refresh interval."""
    client = await find_client(store, ref)
    # One unit of work: a disabled client whose cut-off never reached the feed would
    # keep passing offline verifiers.
    async with store.transaction() as tx:
        updated = await tx.set_client_disabled(client.client_id, disabled)
        if updated is None:
            raise NotFoundError("no such client")
        action = "client.disable" if disabled else "client.enable"
        await tx.add_audit(AuditEvent(clock.now(), actor, action, client.client_id))
        if disabled:
            await cut_off_subject(
                tx, settings, clock, client.client_id, actor=actor, action="client.revoke_tokens"
            )
    if cache is not None:
        cache.forget(client.client_id)
    return updated


async def authenticate_confidential_client(
    store: ClientSource, client_id: str, client_secret: str | None
) -> ClientRecord:
    """As :func:`authenticate_client`, refusing public clients (RFC 7662 §2.1)."""
    client = await authenticate_client(store, client_id, client_secret)
    if client.public:
        raise InvalidClientError("this endpoint needs a confidential client")
    return client


async def list_clients(store: Store) -> list[ClientRecord]:
    return list(await store.list_clients())


def client_json(client: ClientRecord) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "scopes": list(client.scopes),
        "first_party": client.first_party,
        "public": client.public,
        "disabled": client.disabled,
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
        "web_origins": list(client.web_origins),
        "created_at": client.created_at.isoformat().replace("+00:00", "Z"),
    }
