"""Flask adapter: a decorator that lets a view run only for a valid token.

    auth = FlaskBearer(verifier)       # a SyncVerifier: no event loop in a WSGI worker
    auth.init_app(app)

    @app.get("/invoices")
    @auth.required(scopes=["invoices:read"])
    def invoices():
        claims = current_claims()

Errors are answered exactly as the aiohttp middleware answers (RFC 6750 §3).
The JWKS refresh and the revocation feed run on daemon threads, started by
the first request each worker process serves (threads do not survive a fork).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from typing import Any, ParamSpec, TypeVar

try:
    from flask import Flask, Response, g, request
except ImportError as exc:  # pragma: no cover - exercised by the slim-install test
    raise ImportError("issuer.verifier.flask needs Flask: pip install 'issuer[flask]'") from exc

from issuer.verifier.bearer import BearerError, Challenge
from issuer.verifier.verifier import SyncVerifier
from issuer.verifier.wsgi import authenticate, start_background, stop_background

P = ParamSpec("P")
R = TypeVar("R")
_G_CLAIMS = "issuer_claims"


def render(challenge: Challenge) -> Response:
    return Response(challenge.body, status=challenge.status, headers=list(challenge.headers))


def current_claims() -> dict[str, Any]:
    """The verified claims of the current request's token (inside a guarded view)."""
    claims: dict[str, Any] | None = g.get(_G_CLAIMS)
    if claims is None:
        raise LookupError("no verified claims on this request: is the view guarded?")
    return claims


class FlaskBearer:
    """The Flask extension: ``FlaskBearer(verifier, app)`` or ``init_app(app)`` later."""

    def __init__(
        self, verifier: SyncVerifier, app: Flask | None = None, *, realm: str | None = None
    ) -> None:
        self.verifier = verifier
        self.realm = realm
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        app.extensions["issuer_verifier"] = self
        app.before_request(self._start)

    def _start(self) -> None:
        start_background(self.verifier, "flask")

    def close(self) -> None:
        stop_background(self.verifier)

    def required(
        self, *, scopes: Collection[str] = (), roles: Collection[str] = ()
    ) -> Callable[[Callable[P, R]], Callable[P, R | Response]]:
        """Guard a view: a valid token with every scope and role listed."""

        def decorator(view: Callable[P, R]) -> Callable[P, R | Response]:
            @functools.wraps(view)
            def guarded(*args: P.args, **kwargs: P.kwargs) -> R | Response:
                try:
                    claims = authenticate(
                        self.verifier,
                        request.headers.getlist("Authorization"),
                        scopes=scopes,
                        roles=roles,
                        realm=self.realm,
                    )
                except BearerError as exc:
                    return render(exc.challenge)
                setattr(g, _G_CLAIMS, claims)
                return view(*args, **kwargs)

            return guarded

        return decorator


__all__ = ["FlaskBearer", "current_claims", "render"]
