"""One hierarchy for every error a client can see.

Each error carries its OAuth 2.0 ``error`` code (RFC 6749 §5.2, RFC 6750 §3.1,
RFC 7009, RFC 7662) and HTTP status; ``issuer.http.middleware`` renders them as
JSON with ``Cache-Control: no-store``. The description is shown to the client,
so it never contains a secret, a token or a password.
"""

from __future__ import annotations


class IssuerError(Exception):
    """Base class: an error the client is told about."""

    error = "server_error"
    status = 500
    description = "internal error"

    def __init__(self, description: str | None = None) -> None:
        if description is not None:
            self.description = description
        super().__init__(self.description)

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequestError(IssuerError):
    """RFC 6749 §5.2: malformed, missing or repeated parameter."""

    error = "invalid_request"
    status = 400
    description = "the request is malformed"


class InvalidClientError(IssuerError):
    """RFC 6749 §5.2: client authentication failed."""

    error = "invalid_client"
    status = 401
    description = "client authentication failed"

    def headers(self) -> dict[str, str]:
        # RFC 6749 §5.2: 401 with the scheme the client tried (we always offer Basic).
        return {"WWW-Authenticate": 'Basic realm="issuer", charset="UTF-8"'}


class InvalidGrantError(IssuerError):
    """RFC 6749 §5.2: bad credentials, or an expired/revoked/reused refresh token."""

    error = "invalid_grant"
    status = 400
    description = "the grant is invalid, expired or revoked"


class UnauthorizedClientError(IssuerError):
    """RFC 6749 §5.2: the client may not use this grant type."""

    error = "unauthorized_client"
    status = 400
    description = "this client may not use this grant type"


class UnsupportedGrantTypeError(IssuerError):
    """RFC 6749 §5.2."""

    error = "unsupported_grant_type"
    status = 400
    description = "unsupported grant_type"


class InvalidScopeError(IssuerError):
    """RFC 6749 §5.2: scope unknown or beyond what the client may have."""

    error = "invalid_scope"
    status = 400
    description = "the requested scope is invalid or exceeds what is allowed"


class InvalidTokenError(IssuerError):
    """RFC 6750 §3.1: the bearer token is missing, malformed, expired or revoked."""

    error = "invalid_token"
    status = 401
    description = "the access token is missing, invalid or expired"

    def headers(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": (
                f'Bearer realm="issuer", error="{self.error}", '
                f'error_description="{self.description}"'
            )
        }


class MissingTokenError(InvalidTokenError):
    """RFC 6750 §3.1: no credentials at all: no error code in the challenge."""

    description = "an access token is required"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="issuer"'}


class InsufficientScopeError(IssuerError):
    """RFC 6750 §3.1: the token lacks the scope the resource needs."""

    error = "insufficient_scope"
    status = 403
    description = "the access token lacks the required scope"

    def __init__(self, scope: str, description: str | None = None) -> None:
        super().__init__(description)
        self.scope = scope

    def headers(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": (
                f'Bearer realm="issuer", error="{self.error}", scope="{self.scope}"'
            )
        }


class NotFoundError(IssuerError):
    """A named resource (key, user, client) does not exist."""

    error = "not_found"
    status = 404
    description = "not found"


class ConflictError(IssuerError):
    """The request conflicts with the current state (e.g. a duplicate name)."""

    error = "conflict"
    status = 409
    description = "conflict with the current state"


class TooManyRequestsError(IssuerError):
    """Login throttling: try again after ``retry_after`` seconds.

    Not RFC 8628's ``slow_down``, which tells a device-flow client to poll less
    often; no RFC gives ``too_many_attempts`` a meaning of its own.
    """

    error = "too_many_attempts"
    status = 429
    description = "too many failed attempts; try again later"

    def __init__(self, retry_after: int, description: str | None = None) -> None:
        super().__init__(description)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class TemporarilyUnavailableError(IssuerError):
    """RFC 6749 §4.1.2.1: the service cannot serve the request right now."""

    error = "temporarily_unavailable"
    status = 503
    description = "the service is temporarily unavailable"


class DatabaseUnavailableError(TemporarilyUnavailableError):
    """The database is unreachable, too slow or busy beyond its bounds: retry shortly.

    Raised by the stores in place of the driver's connection errors and timeouts, so
    a database outage answers ``503`` with ``Retry-After`` rather than a 500.
    """

    description = "the database is unavailable; retry shortly"
    retry_after = 2

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class AccessDeniedError(IssuerError):
    """RFC 6749 §4.1.2.1: the user (or the server) refused the request."""

    error = "access_denied"
    status = 403
    description = "the request was refused"


class UnsupportedResponseTypeError(IssuerError):
    """RFC 6749 §4.1.2.1."""

    error = "unsupported_response_type"
    status = 400
    description = "only response_type=code is supported"


class LoginRequiredError(IssuerError):
    """OpenID Connect Core §3.1.2.6: prompt=none, and the user is not signed in."""

    error = "login_required"
    status = 400
    description = "the user is not signed in"


class ConsentRequiredError(IssuerError):
    """OpenID Connect Core §3.1.2.6: prompt=none, and the user has not consented."""

    error = "consent_required"
    status = 400
    description = "the user has not consented to this client"


class RequestNotSupportedError(IssuerError):
    """OpenID Connect Core §3.1.2.6: request objects are not supported."""

    error = "request_not_supported"
    status = 400
    description = "request objects are not supported"


class RequestUriNotSupportedError(IssuerError):
    """OpenID Connect Core §3.1.2.6: request_uri is not supported."""

    error = "request_uri_not_supported"
    status = 400
    description = "request_uri is not supported"


class ConfigError(Exception):
    """Bad configuration: start-up stops with this one-line message."""


class StoreError(Exception):
    """A persistence failure that is not the client's fault."""


class MigrationError(StoreError):
    """A migration could not be applied (or an applied one was changed)."""
