"""WSGI: bearer tokens for any WSGI app (and Django), with the sync verifier.

``authenticate(verifier, environ_or_values)`` is the whole protocol; the
Flask extension (:mod:`issuer.verifier.flask`) and a Django middleware of a
few lines (see the README) are built on it. :func:`start_background` runs the
JWKS refresh and the revocation feed on daemon threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from issuer.verifier.bearer import BearerError, Challenge, bearer_token, refused, require
from issuer.verifier.errors import TokenError
from issuer.verifier.verifier import SyncVerifier

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
CLAIMS_ENVIRON_KEY = "issuer.verifier.claims"


def authorization_values(environ: Mapping[str, Any]) -> list[str]:
    value = environ.get("HTTP_AUTHORIZATION")
    return [] if value is None else [value]


def authenticate(
    verifier: SyncVerifier,
    values: Sequence[str],
    *,
    scopes: Collection[str] = (),
    roles: Collection[str] = (),
    realm: str | None = None,
) -> dict[str, Any]:
    """The claims of a valid token with every scope and role asked for, or a BearerError."""
    token = bearer_token(values, realm)
    try:
        claims = verifier.verify(token)
    except TokenError as exc:
        raise refused(exc, realm) from None
    require(claims, scopes=scopes, roles=roles)
    return claims


_started: set[int] = set()
_started_lock = threading.Lock()


def start_background(verifier: SyncVerifier, framework: str = "wsgi") -> None:
    """Start the JWKS refresh (and the feed, if the verifier has one) once per process.

    Threads do not survive a fork: call it in the worker (the Flask extension
    does so on the first request), not in a pre-fork master.
    """
    with _started_lock:
        if id(verifier) in _started:
            return
        _started.add(id(verifier))
    revocations: object = verifier.revocations
    for client in (verifier.jwks, revocations):
        state = getattr(client, "cache", None) or getattr(client, "state", None)
        if state is not None and state.framework == "urllib":
            state.framework = framework
    verifier.jwks.start()
    start = getattr(revocations, "start", None)
    if callable(start):
        start()


def stop_background(verifier: SyncVerifier) -> None:
    with _started_lock:
        _started.discard(id(verifier))
    close = getattr(verifier.revocations, "close", None)
    if callable(close):
        close()
    verifier.jwks.close()


def respond(challenge: Challenge, start_response: StartResponse) -> list[bytes]:
    status = f"{challenge.status} {_REASONS[challenge.status]}"
    headers = [*challenge.headers, ("Content-Length", str(len(challenge.body)))]
    start_response(status, headers)
    return [challenge.body]


_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}


class BearerMiddleware:
    """Require a valid token on every path except ``public``; claims go in the environ."""

    def __init__(
        self,
        app: WSGIApp,
        verifier: SyncVerifier,
        *,
        public: Collection[str] = (),
        realm: str | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.public = frozenset(public)
        self.realm = realm

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in self.public:
            return self.app(environ, start_response)
        start_background(self.verifier)
        try:
            environ[CLAIMS_ENVIRON_KEY] = authenticate(
                self.verifier, authorization_values(environ), realm=self.realm
            )
        except BearerError as exc:
            return respond(exc.challenge, start_response)
        return self.app(environ, start_response)


__all__ = [
    "CLAIMS_ENVIRON_KEY",
    "BearerError",
    "BearerMiddleware",
    "authenticate",
    "authorization_values",
    "respond",
    "start_background",
    "stop_background",
]
