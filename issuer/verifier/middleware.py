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

from issuer.verifier.bearer import BearerError, Challenge, bearer_token, refused, require
from issuer.verifier.errors import TokenError
from issuer.verifier.lifecycle import running
from issuer.verifier.verifier import Verifier

CLAIMS_KEY = web.RequestKey[dict[str, Any]]("claims")
_PUBLIC_ATTR = "__issuer_verifier_public__"
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


def render(challenge: Challenge) -> web.Response:
    """A :class:`~issuer.verifier.bearer.Challenge` as an aiohttp response."""
    return web.Response(status=challenge.status, body=challenge.body, headers=challenge.headers)


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
        try:
            token = bearer_token(request.headers.getall("Authorization", []), realm)
            try:
                claims = await verifier.verify(token)
            except TokenError as exc:
                raise refused(exc, realm) from None
        except BearerError as exc:
            return render(exc.challenge)
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
        async with running(verifier, "aiohttp"):
            yield

    app.cleanup_ctx.append(verifier_ctx)


def _guard(scopes: tuple[str, ...], roles: tuple[str, ...]) -> Callable[[Handler], Handler]:
    def decorator(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                require(claims_of(request), scopes=scopes, roles=roles)
            except BearerError as exc:
                return render(exc.challenge)
            return await handler(request)

        return guarded

    return decorator


def require_scope(*scopes: str) -> Callable[[Handler], Handler]:
    """Answer 403 insufficient_scope unless the token's ``scope`` has every one of ``scopes``."""
    return _guard(scopes, ())


def require_role(*roles: str) -> Callable[[Handler], Handler]:
    """Answer 403 insufficient_scope unless the token's ``roles`` has every one of ``roles``."""
    return _guard((), roles)


__all__ = [
    "CLAIMS_KEY",
    "bearer_middleware",
    "claims_of",
    "public",
    "require_role",
    "require_scope",
    "setup",
]
