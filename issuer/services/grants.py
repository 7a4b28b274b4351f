"""Token grants (RFC 6749 §4): client_credentials (§4.4); access tokens per RFC 9068."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from issuer.clock import Clock
from issuer.config import Settings
from issuer.errors import UnauthorizedClientError
from issuer.jose.tokens import (
    AccessClaims,
    AccessTokenRequest,
    Signer,
    access_claims_json,
    access_token_claims,
)
from issuer.keyring import Keyring
from issuer.services.scopes import grant_scope
from issuer.store.base import ClientRecord


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """RFC 6749 §5.1."""

    access_token: str = field(repr=False)
    expires_in: int
    scope: str
    claims: AccessClaims = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)  # OpenID Connect Core §3.1.3.3

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        if self.id_token is not None:
            body["id_token"] = self.id_token
        return body


def issue_access_token(
    keyring: Keyring,
    settings: Settings,
    clock: Clock,
    *,
    subject: str,
    client_id: str,
    scope: tuple[str, ...],
    roles: tuple[str, ...] | None = None,
) -> TokenResponse:
    now = clock.now()
    return sign_access_token(
        keyring.signer(now),
        settings,
        now,
        subject=subject,
        client_id=client_id,
        scope=scope,
        roles=roles,
    )


def sign_access_token(
    signer: Signer,
    settings: Settings,
    now: datetime,
    *,
    subject: str,
    client_id: str,
    scope: tuple[str, ...],
    roles: tuple[str, ...] | None = None,
    jti: str | None = None,
) -> TokenResponse:
    """The token with a signer and a time chosen beforehand, and its jti if given (a
    refresh records the jti in the same write that spends the refresh token)."""
    claims = access_token_claims(
        AccessTokenRequest(
            issuer=settings.issuer,
            subject=subject,
            audience=settings.audience,
            client_id=client_id,
            scope=" ".join(scope),
            now=int(now.timestamp()),
            ttl=settings.access_token_ttl,
            roles=roles,
        ),
        jti,
    )
    return TokenResponse(
        access_token=signer.sign_json(access_claims_json(claims)),
        expires_in=settings.access_token_ttl,
        scope=claims["scope"],
        claims=claims,
    )


def client_credentials(
    keyring: Keyring,
    settings: Settings,
    clock: Clock,
    client: ClientRecord,
    requested_scope: str | None,
) -> TokenResponse:
    """RFC 6749 §4.4: a confidential client gets a token for itself (sub = client_id)."""
    if client.public:
        raise UnauthorizedClientError("public clients cannot use client_credentials")
    scope = grant_scope(requested_scope, client.scopes)
    return issue_access_token(
        keyring, settings, clock, subject=client.client_id, client_id=client.client_id, scope=scope
    )
