"""Bearer authentication (RFC 6750 §2.1) and the admin API's scope and role check."""

from __future__ import annotations

from aiohttp import web

from issuer.appkeys import claims_key, context_key
from issuer.errors import InsufficientScopeError, InvalidTokenError, MissingTokenError
from issuer.jose.tokens import AccessClaims
from issuer.services.bearer import verify_bearer

ADMIN_SCOPE = "issuer:admin"
# Open on the admin listener: probes, the scrape, the API description.
OPEN_PATHS = frozenset({"/livez", "/readyz", "/metrics", "/openapi.json"})


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization")
    if header is None:
        raise MissingTokenError()
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidTokenError("expected Authorization: Bearer <token>")
    return token.strip()


async def authenticate(request: web.Request) -> AccessClaims:
    """The claims of the request's bearer token, verified offline and not revoked; 401 otherwise."""
    ctx = request.app[context_key]
    return await verify_bearer(ctx.store, ctx.keyring, ctx.clock, bearer_token(request))


async def require_admin(request: web.Request) -> None:
    """The admin listener's check, run by its edge before every handler."""
    if request.path in OPEN_PATHS:
        return
    claims = await authenticate(request)
    if ADMIN_SCOPE not in str(claims.get("scope", "")).split():
        raise InsufficientScopeError(ADMIN_SCOPE, f"this API needs the {ADMIN_SCOPE} scope")
    if claims.get("sub") != claims.get("client_id"):
        # A user's token: the client may hold the scope (a first-party admin console),
        # but only users given the role may use it, or every user of that client
        # would be an administrator.
        roles = claims.get("roles")
        if not isinstance(roles, list) or ADMIN_SCOPE not in roles:
            raise InsufficientScopeError(
                ADMIN_SCOPE, f"this user lacks the {ADMIN_SCOPE} role for this API"
            )
    request[claims_key] = claims


def actor(request: web.Request) -> str:
    """Who the audit log names for an admin request."""
    return f"token:{request[claims_key].get('sub', '?')}"
