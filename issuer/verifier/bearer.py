"""Bearer tokens in HTTP (RFC 6750), framework-free: every adapter answers with these bytes.

The aiohttp middleware, the ASGI (Starlette, FastAPI) and the WSGI (Flask,
Django) adapters only move headers in and a :class:`Challenge` out, so they
answer a request exactly alike:

- no token (no ``Authorization``, or another scheme): 401 with a bare
  ``WWW-Authenticate: Bearer`` and no error code (RFC 6750 §3.1);
- a malformed header or two of them: 400 ``invalid_request``;
- a token that does not verify: 401 ``invalid_token`` with a description;
- a token without the needed scope or role: 403 ``insufficient_scope``;
- every error with ``Cache-Control: no-store`` and a JSON body.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from issuer.verifier.errors import TokenError

_DESCRIPTIONS = {
    "expired": "The access token expired",
    "not_yet_valid": "The access token is not valid yet",
    "revoked": "The access token was revoked",
    "keys_unavailable": "The access token cannot be verified right now",
}
NO_TOKEN = "A bearer access token is required"  # noqa: S105 - a message, not a secret
INSUFFICIENT = "The access token lacks the privileges this resource needs"


@dataclass(frozen=True, slots=True)
class Challenge:
    """An error answer: status, headers (in order) and the JSON body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class BearerError(Exception):
    """The request must be answered with :attr:`challenge` (adapters render it)."""

    def __init__(self, challenge: Challenge) -> None:
        super().__init__(challenge.status)
        self.challenge = challenge


def challenge(
    status: int, realm: str | None, error: str | None, description: str, **params: str
) -> Challenge:
    # RFC 6750 §3: no error code at all when the request carried no token.
    parts = [f'realm="{realm}"'] if realm else []
    if error:
        parts.append(f'error="{error}"')
    parts.extend(f'{name}="{value}"' for name, value in params.items())
    www_authenticate = "Bearer " + ", ".join(parts) if parts else "Bearer"
    body: dict[str, str] = {"error": error} if error else {}
    body["error_description"] = description
    return Challenge(
        status,
        (
            ("WWW-Authenticate", www_authenticate),
            ("Cache-Control", "no-store"),
            ("Content-Type", "application/json"),
        ),
        json.dumps(body).encode(),
    )


def bearer_token(values: Sequence[str], realm: str | None = None) -> str:
    """The token from the request's ``Authorization`` field values, or a :class:`BearerError`.

    A WSGI server joins repeated fields with a comma, which no bearer token
    contains (RFC 6750 §2.1 ``b64token``), so a comma counts as two headers.
    """
    if not values:
        raise BearerError(challenge(401, realm, None, NO_TOKEN))
    if len(values) > 1 or "," in values[0]:
        raise BearerError(
            challenge(400, realm, "invalid_request", "More than one Authorization header")
        )
    scheme, _, token = values[0].partition(" ")
    if scheme.lower() != "bearer":
        # Another scheme (Basic, ...) is as good as no token (RFC 6750 §3.1).
        raise BearerError(challenge(401, realm, None, NO_TOKEN))
    token = token.strip(" ")
    if not token or " " in token:
        raise BearerError(
            challenge(400, realm, "invalid_request", "Malformed Authorization header")
        )
    return token


def refused(exc: TokenError, realm: str | None = None) -> BearerError:
    """401 invalid_token for a token that did not verify; the reason stays in the log, not here."""
    description = _DESCRIPTIONS.get(exc.reason, "The access token is invalid")
    return BearerError(challenge(401, realm, "invalid_token", description))


def has_scopes(claims: Mapping[str, Any], needed: Collection[str]) -> bool:
    scope = claims.get("scope")
    return isinstance(scope, str) and set(needed) <= set(scope.split(" "))


def has_roles(claims: Mapping[str, Any], needed: Collection[str]) -> bool:
    granted = claims.get("roles")
    return isinstance(granted, list) and set(needed) <= set(granted)


def require(
    claims: Mapping[str, Any],
    *,
    scopes: Collection[str] = (),
    roles: Collection[str] = (),
    realm: str | None = None,
) -> None:
    """403 insufficient_scope unless the token has every scope and every role asked for."""
    if scopes and not has_scopes(claims, scopes):
        raise BearerError(
            challenge(403, realm, "insufficient_scope", INSUFFICIENT, scope=" ".join(scopes))
        )
    if roles and not has_roles(claims, roles):
        raise BearerError(challenge(403, realm, "insufficient_scope", INSUFFICIENT))


__all__ = [
    "BearerError",
    "Challenge",
    "bearer_token",
    "challenge",
    "has_roles",
    "has_scopes",
    "refused",
    "require",
]
