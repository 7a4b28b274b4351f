"""ASGI adapter for Starlette (and the base of the FastAPI one): bearer tokens in, claims out.

    auth = BearerAuth(verifier)
    app = Starlette(routes=[...])
    auth.setup(app)            # RFC 6750 error answers; JWKS and feed run with the lifespan

    @auth.requires(scopes=["invoices:read"])
    async def invoices(request: Request) -> Response:
        claims = claims_of(request)

Needs Starlette (``pip install 'issuer[starlette]'`` or ``[fastapi]``) and the
async transport (aiohttp); importing this module without them says so.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

try:
    from starlette.applications import Starlette
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import Response
except ImportError as exc:  # pragma: no cover - exercised by the slim-install test
    raise ImportError(
        "issuer.verifier.asgi needs Starlette: pip install 'issuer[starlette]'"
    ) from exc

from issuer.verifier.bearer import BearerError, Challenge, bearer_token, refused, require
from issuer.verifier.errors import TokenError
from issuer.verifier.lifecycle import running
from issuer.verifier.verifier import Verifier

Endpoint = Callable[[Request], Awaitable[Response]]
_STATE = "issuer_claims"


def render(challenge: Challenge) -> Response:
    """A :class:`~issuer.verifier.bearer.Challenge` as a Starlette response."""
    return Response(challenge.body, status_code=challenge.status, headers=dict(challenge.headers))


async def handle_bearer_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BearerError)
    return render(exc.challenge)


def claims_of(connection: HTTPConnection) -> dict[str, Any]:
    """The verified claims of the request's access token."""
    try:
        claims: dict[str, Any] = getattr(connection.state, _STATE)
    except AttributeError:
        raise LookupError("no verified claims on this request: is the endpoint guarded?") from None
    return claims


class BearerAuth:
    """Bearer-token verification for an ASGI app, answering exactly as the aiohttp middleware."""

    framework = "starlette"

    def __init__(self, verifier: Verifier, *, realm: str | None = None) -> None:
        self.verifier = verifier
        self.realm = realm

    async def authenticate(self, connection: HTTPConnection) -> dict[str, Any]:
        """The claims of the request's token, or a :class:`BearerError` to answer with."""
        token = bearer_token(connection.headers.getlist("authorization"), self.realm)
        try:
            claims = await self.verifier.verify(token)
        except TokenError as exc:
            raise refused(exc, self.realm) from None
        setattr(connection.state, _STATE, claims)
        return claims

    def check(
        self, claims: dict[str, Any], scopes: Collection[str] = (), roles: Collection[str] = ()
    ) -> None:
        require(claims, scopes=scopes, roles=roles, realm=None)

    def requires(
        self, *, scopes: Collection[str] = (), roles: Collection[str] = ()
    ) -> Callable[[Endpoint], Endpoint]:
        """Guard a Starlette endpoint: a valid token with every scope and role listed."""

        def decorator(endpoint: Endpoint) -> Endpoint:
            @functools.wraps(endpoint)
            async def guarded(request: Request) -> Response:
                try:
                    self.check(await self.authenticate(request), scopes, roles)
                except BearerError as exc:
                    return render(exc.challenge)
                return await endpoint(request)

            return guarded

        return decorator

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """The JWKS client and the revocation feed, running (enter in the app's lifespan)."""
        return running(self.verifier, self.framework)

    def setup(self, app: Starlette) -> None:
        """Render :class:`BearerError` and run the verifier's clients with the app's lifespan."""
        app.add_exception_handler(BearerError, handle_bearer_error)
        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Any]:
            async with self.lifespan(), inner(app) as state:
                yield state

        app.router.lifespan_context = lifespan


__all__ = ["BearerAuth", "BearerError", "claims_of", "handle_bearer_error", "render"]
