"""aiohttp adapter: Bearer tokens (RFC 6750) in, claims on the request out.

Thin on purpose: the protocol lives in :mod:`issuer.verifier.verifier`; this
module only reads ``Authorization``, renders RFC 6750 §3 errors and stores the
claims under a typed request key.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from issuer.verifier.errors import TokenError
from issuer.verifier.feed import RevocationFeed
from issuer.verifier.verifier import Verifier

CLAIMS_KEY = web.RequestKey[dict[str, Any]]("claims")
_PUBLIC_ATTR = "__issuer_verifier_public__"
_DESCRIPTIONS = {
    "expired": "The access token expired",
    "not_yet_valid": "The access token is not valid yet",
    "revoked": "The access token was revoked",
    "keys_unavailable": "The access token cannot be verified right now",
}
_H = TypeVar("_H", bound=Callable[..., Any])


def public(handler: _H) -> _H:
    """Mark a route handler (function or class-based view) as needing no token."""
    setattr(handler, _PUBLIC_ATTR, True)
    return handler


def claims_of(request: web.Request) -> dict[str, Any]:
    """The verified claims of the request's access token (set by the middleware)."""
    try:
        return request[CLAIMS_KEY]
    except KeyError:
        raise LookupError(
            "no verified claims on this request: is the route public, or the middleware missing?"
        ) from None


def _challenge(
    status: int, realm: str | None, error: str | None, description: str, **params: str
) -> web.Response:
    # RFC 6750 §3: no error code at all when the request carried no token.
    parts = [f'realm="{realm}"'] if realm else []
    if error:
        parts.append(f'error="{error}"')
    parts.extend(f'{name}="{value}"' for name, value in params.items())
    challenge = "Bearer " + ", ".join(parts) if parts else "Bearer"
    body: dict[str, str] = {"error": error} if error else {}
    body["error_description"] = description
    return web.json_response(
        body,
        status=status,
        headers={"WWW-Authenticate": challenge, "Cache-Control": "no-store"},
    )


def bearer_middleware(verifier: Verifier, *, realm: str | None = None) -> Middleware:
    """Require a valid Bearer access token on every route not marked :func:`public`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        match_info = request.match_info
        # 404/405 answers and public routes need no token.
        if match_info.http_exception is not None or getattr(
            match_info.handler, _PUBLIC_ATTR, False
        ):
            return await handler(request)
        values = request.headers.getall("Authorization", [])
        if not values:
            return _challenge(401, realm, None, "A bearer access token is required")
        if len(values) > 1:
            return _challenge(400, realm, "invalid_request", "More than one Authorization header")
        scheme, _, token = values[0].partition(" ")
        if scheme.lower() != "bearer":
            # Another scheme (Basic, ...) is as good as no token (RFC 6750 §3.1).
            return _challenge(401, realm, None, "A bearer access token is required")
        token = token.strip(" ")
        if not token or " " in token:
            return _challenge(400, realm, "invalid_request", "Malformed Authorization header")
        try:
            claims = await verifier.verify(token)
        except TokenError as exc:
            description = _DESCRIPTIONS.get(exc.reason, "The access token is invalid")
            return _challenge(401, realm, "invalid_token", description)
        request[CLAIMS_KEY] = claims
        return await handler(request)

    return middleware


def setup(app: web.Application, verifier: Verifier, *, realm: str | None = None) -> None:
    """Install :func:`bearer_middleware` on ``app`` and run the verifier's I/O with the app.

    The JWKS client (and a :class:`RevocationFeed`, if that is the verifier's
    revocation checker) start when the app starts and close when it stops.
    """
    app.middlewares.append(bearer_middleware(verifier, realm=realm))

    async def verifier_ctx(app: web.Application) -> AsyncIterator[None]:
        feed = verifier.revocations if isinstance(verifier.revocations, RevocationFeed) else None
        await verifier.jwks.start()
        try:
            if feed is not None:
                await feed.start()
            yield
        finally:
            if feed is not None:
                await feed.close()
            await verifier.jwks.close()

    app.cleanup_ctx.append(verifier_ctx)


def _guard(check: Callable[[dict[str, Any]], bool], **params: str) -> Callable[[Handler], Handler]:
    def decorator(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not check(claims_of(request)):
                return _challenge(
                    403,
                    None,
                    "insufficient_scope",
                    "The access token lacks the privileges this resource needs",
                    **params,
                )
            return await handler(request)

        return guarded

    return decorator


def require_scope(*scopes: str) -> Callable[[Handler], Handler]:
    """Answer 403 insufficient_scope unless the token's ``scope`` has every one of ``scopes``."""
    needed = frozenset(scopes)

    def check(claims: dict[str, Any]) -> bool:
        scope = claims.get("scope")
        return isinstance(scope, str) and needed <= set(scope.split(" "))

    return _guard(check, scope=" ".join(scopes))


def require_role(*roles: str) -> Callable[[Handler], Handler]:
    """Answer 403 insufficient_scope unless the token's ``roles`` has every one of ``roles``."""
    needed = frozenset(roles)

    def check(claims: dict[str, Any]) -> bool:
        granted = claims.get("roles")
        return isinstance(granted, list) and needed <= set(granted)

    return _guard(check)


__all__ = [
    "CLAIMS_KEY",
    "bearer_middleware",
    "claims_of",
    "public",
    "require_role",
    "require_scope",
    "setup",
]
