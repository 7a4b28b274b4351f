"""The edge of each listener: one wrapper around every route's handler that does, in order,
what every request needs.

1. a request id (the client's ``X-Request-ID`` when it is well formed) and the route
   template, for every log line the request causes;
2. the whole body, read within ``ISSUER_BODY_TIMEOUT``;
3. the listener's own check (the admin API's bearer token);
4. path segments no store can hold refused, then CORS where a browser asks for it,
   then the handler;
5. errors rendered as RFC 6749 §5.2 JSON (``{"error", "error_description"}``, with
   ``Cache-Control: no-store``); anything that is not an :class:`IssuerError` is logged
   with the request id and answered as a bare 500 that reveals nothing;
6. the security headers; the token counters; a note of the request, from which the
   duration histogram (and the JWKS counter) and the access line are made in batches.

A wrapper around each handler, installed with the routes (:func:`install`), rather
than an aiohttp middleware: with any middleware aiohttp adds one of its own, looks the
chain up in a cache and runs each layer as a coroutine of its own, on every request;
on a JWKS request those layers cost more than the handler (issue 11). The wrapper also
knows its route's template, so nothing is looked up to name it. What no route matches
goes through the edge too, by a last route that matches any path and answers 404, or
405 with ``Allow`` where the path exists for other methods.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import functools
import logging
import os
import random
import re
import time
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from multidict import CIMultiDict, istr

from issuer import logs, metrics
from issuer.appkeys import admin_app_key, body_key, context_key, grant_type_key
from issuer.errors import IssuerError
from issuer.http.render import json_response
from issuer.http.requests import require_storable
from issuer.later import Later
from issuer.logs import request_id_var, route_var

log = logging.getLogger("issuer.http")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A step the listener runs before the handler (the admin API's authorization).
Check = Callable[[web.Request], Awaitable[None]]
# A step that wraps the handler (CORS), run only for requests with an Origin.
Wrapper = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
# The edge around one route's handler, given the handler and the route's template.
Edge = Callable[[Handler, str], Handler]

# Header names as ``istr``: a CIMultiDict takes their case-folded form as it is, where a
# plain str is folded again on every lookup and set (a few percent of a JWKS request).
SECURITY_HEADERS: dict[str, str] = {
    istr("X-Content-Type-Options"): "nosniff",
    istr("X-Frame-Options"): "DENY",
    istr("Referrer-Policy"): "no-referrer",
    istr("Content-Security-Policy"): "default-src 'none'; frame-ancestors 'none'",
    # In place of aiohttp's "Python/3.x aiohttp/3.y", which tells an attacker versions.
    hdrs.SERVER: "issuer",
}
_X_REQUEST_ID = istr("X-Request-ID")
# What every response carries unless its handler set its own: ``merge`` adds what is
# missing in one call, where a ``setdefault`` per header cost a JWKS request 3 % of its rate.
_DEFAULT_HEADERS = CIMultiDict({**SECURITY_HEADERS, hdrs.CACHE_CONTROL: "no-store"})
# aiohttp's own HTTP errors, mapped onto OAuth-style codes.
_HTTP_ERRORS = {
    400: "invalid_request",
    404: "not_found",
    405: "invalid_request",
    413: "invalid_request",
    415: "invalid_request",
}
CLIENT_CLOSED_REQUEST = 499
TOKEN_ROUTE = "/token"  # noqa: S105 (a path, not a secret)
# Probes and scrapes come every few seconds from every prober: logged at DEBUG.
QUIET_ROUTES = frozenset({"/livez", "/readyz", "/metrics"})
# The route name of a request no route matches (in log lines and metrics).
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def error_response(error: IssuerError) -> web.Response:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache", **error.headers()}
    body = {"error": error.error, "error_description": error.description}
    return json_response(body, error.status, headers)


class ClientGoneError(Exception):
    """The client closed the connection before its body was read: not a server error."""


# The module's generator, bound once: random reseeds that same generator in a forked child.
_randbytes = random.randbytes


def new_request_id() -> str:
    # 32 hex digits, as uuid4().hex gave, at a twentieth of its cost. A request id names
    # a log line and guards nothing, so the Mersenne Twister serves (reseeded on fork).
    return _randbytes(16).hex()


def edge(*, check: Check | None = None, cors: Wrapper | None = None) -> Edge:
    """The listener's edge: ``check`` runs before every handler, ``cors`` around it
    when the request carries an ``Origin``."""

    def wrap(handler: Handler, route: str) -> Handler:
        """``handler`` inside the edge; ``route`` is its template (``/admin/keys/{kid}``)."""
        # Only a template with segments has any to check (the catch-all's is the path).
        segments = "{" in route and route != UNMATCHED
        # Probes and scrapes are logged at DEBUG.
        level = logging.DEBUG if route in QUIET_ROUTES else logging.INFO

        async def edged(request: web.Request) -> web.StreamResponse:
            start = time.perf_counter()
            incoming = request.headers.get(_X_REQUEST_ID)
            rid = (
                incoming
                if incoming is not None and _REQUEST_ID.fullmatch(incoming)
                else new_request_id()
            )
            request_id_var.set(rid)
            route_var.set(route)
            status, error = 500, "server_error"
            try:
                try:
                    # The steps run here, not in a coroutine of their own: one frame less
                    # on every request.
                    timed_out = await _read_body(request) if request.body_exists else None
                    response: web.StreamResponse
                    if timed_out is not None:
                        response = timed_out
                    else:
                        if check is not None:
                            await check(request)  # who asks, before anything about what
                        for name, value in request.match_info.items() if segments else ():
                            # %00 decodes to a NUL that PostgreSQL refuses (a 500 from the
                            # driver), and a lone surrogate cannot be encoded as UTF-8: such a
                            # segment names nothing, so it is a 400 before any handler looks
                            # it up. Query parameters are checked by ``only_query``, bodies
                            # by their parsers.
                            require_storable(value, f"path segment {name}")
                        if cors is not None and hdrs.ORIGIN in request.headers:
                            response = await cors(request, handler)
                        else:
                            response = await handler(request)
                    status, error = response.status, ""
                except IssuerError as exc:
                    status, error = exc.status, exc.error
                    response = error_response(exc)
                except web.HTTPException as exc:
                    status = exc.status
                    error = "invalid_request" if exc.status < 500 else "server_error"
                    if exc.status < 400:
                        raise  # a redirect: aiohttp sends it as it is
                    response = _http_error(exc)
                except ClientGoneError:
                    # Nobody is left to read an answer; 499 (nginx's "client closed request")
                    # is for the access log and the metrics, never the 5xx series that pages.
                    status, error = CLIENT_CLOSED_REQUEST, ""
                    metrics.client_disconnected()
                    log.info("client disconnected before the request body was read")
                    response = json_response({"error": "client_disconnected"}, status)
                except asyncio.CancelledError:
                    status, error = CLIENT_CLOSED_REQUEST, ""
                    raise
                except Exception:
                    log.exception("unhandled error", extra={"route": route})
                    response = _server_error(rid)
            finally:
                _observe(request, route, level, rid, status, error, time.perf_counter() - start)
            headers = response.headers
            headers[_X_REQUEST_ID] = rid
            headers.merge(_DEFAULT_HEADERS)
            return response

        return functools.update_wrapper(edged, handler)

    return wrap


async def _read_body(request: web.Request) -> web.Response | None:
    """Read the whole body within ``ISSUER_BODY_TIMEOUT``; the 408 to send if it does not come.

    aiohttp puts no bound on a body that trickles or never ends; the handler would
    wait as long as the client likes, holding the connection. Handlers then parse
    the bytes read here, which ``requests.body_of`` gives them (``request.read()``
    would find nothing left after the fast path below).
    """
    if request.content.is_eof():
        # All of it came with the head (a form of a few hundred bytes, usually): reading
        # cannot wait, so there is no timer to arm (a quarter of the middleware's cost),
        # and the bytes are taken as they are: ``request.read()``'s loop of chunk reads
        # was a percent of a client-credentials request.
        body = request.content.read_nowait()
        if len(body) > request.client_max_size:
            raise web.HTTPRequestEntityTooLarge(request.client_max_size, len(body))
        request[body_key] = body
        return None
    timeout = request.app[context_key].settings.body_timeout
    try:
        async with asyncio.timeout(timeout):
            request[body_key] = await request.read()
    except TimeoutError:
        listener = "public" if admin_app_key in request.app else "admin"
        metrics.connection_closed(listener, "body_timeout")
        logs.overload(
            f"{listener}:body_timeout",
            "requests refused: body not complete within ISSUER_BODY_TIMEOUT (%ss)",
            timeout,
        )
        description = "the request body did not arrive in time"
        response = json_response(
            {"error": "invalid_request", "error_description": description},
            408,
            {"Cache-Control": "no-store"},
        )
        response.force_close()
        # Give up on the rest of the body: no draining it after the answer either.
        request.content.feed_eof()
        return response
    except ConnectionError:
        raise ClientGoneError from None
    return None


def _http_error(exc: web.HTTPException) -> web.Response:
    code = _HTTP_ERRORS.get(exc.status, "invalid_request" if exc.status < 500 else "server_error")
    body = {"error": code, "error_description": exc.reason.lower()}
    headers = {"Cache-Control": "no-store"}
    if "Allow" in exc.headers:
        headers["Allow"] = exc.headers["Allow"]
    return json_response(body, exc.status, headers)


def _server_error(rid: str) -> web.Response:
    body = {
        "error": "server_error",
        "error_description": "internal error; quote the request id to the operator",
        "request_id": rid,
    }
    return json_response(body, 500, {"Cache-Control": "no-store"})


# Each finished request is noted here as one tuple; every ``logs.ACCESS_FLUSH_SECONDS``
# the notes become the duration histogram's tally and the access lines, in one loop
# (``write_finished``): one append per request, where tallying and queueing as each
# request ended called into both modules (issue 11: 1 to 3 points of the JWKS rate).
# A note: time, log level, method, route, status, seconds, request id.
Finished = tuple[float, int, str, str, int, float, str]
# Appended to by the event loop's thread; drained by whichever thread writes (a record
# logged from another thread writes the notes first): deque.append and popleft are
# atomic, so a note is taken exactly once, whatever runs alongside.
_finished: collections.deque[Finished] = collections.deque()
WRITTEN = 0  # the level of a note whose access line went out at once


def write_finished() -> None:
    """Turn the notes of the requests finished so far into metrics and access lines."""
    # Under the log handler's lock: another thread's record cannot come between the
    # notes taken here and their lines.
    with logs.lines_lock():
        pending = _finished
        entries = [pending.popleft() for _ in range(len(pending))]
        if not entries:
            return
        metrics.requests_observed(
            (route, method, status, seconds) for _, _, method, route, status, seconds, _ in entries
        )
        logs.access_batch(
            [
                (at, level, method, route, status, seconds * 1000, rid, route)
                for at, level, method, route, status, seconds, rid in entries
                if level != WRITTEN
            ]
        )


_write_finished_soon = Later(logs.ACCESS_FLUSH_SECONDS, write_finished)
# Before any other record is written, so that one process's lines stay in the order
# things happened; and at exit (``write_finished`` flushes the metrics itself).
logs.write_first(write_finished)
atexit.register(write_finished)
# A forked child has its own requests: its parent writes the notes it had.
os.register_at_fork(after_in_child=_finished.clear)


def note_finished(
    method: str, route: str, level: int, status: int, seconds: float, rid: str
) -> None:
    """A finished request, for the duration histogram and the access line (at ``level``)."""
    if not logs.access_lines_held():
        logs.access(
            method, route, status, seconds * 1000, quiet=level == logging.DEBUG, request_id=rid
        )
        level = WRITTEN
    _finished.append((time.time(), level, method, route, status, seconds, rid))
    _write_finished_soon.due()


def _observe(
    request: web.Request,
    route: str,
    level: int,
    rid: str,
    status: int,
    error: str,
    seconds: float,
) -> None:
    method = request.method
    note_finished(method if method in METHODS else "OTHER", route, level, status, seconds, rid)
    if route == TOKEN_ROUTE:
        if status == 200:
            # Set by the token handler once it knows the grant: no second parse of the form.
            metrics.token_issued(request.get(grant_type_key, "other"))
        elif error:
            metrics.token_error(error)


def install(app: web.Application, table: web.Application, wrap: Edge) -> None:
    """Serve ``table``'s routes on ``app``, each handler inside the edge ``wrap``, and
    answer every other request through the edge as well (404, or 405 with ``Allow``).

    ``table`` is an application used only to declare routes on (``add_routes`` of each
    module); ``app`` is the one served. Call once all routes are declared.
    """
    for route in table.router.routes():
        resource = route.resource
        assert resource is not None, "a table route is always on a resource"
        template = resource.canonical
        app.router.add_route(route.method, template, wrap(route.handler, template))
    # Last: the router tries it only after every route, for any method and any path
    # (a decoded path may hold a newline, which "." would not match).
    app.router.add_route(hdrs.METH_ANY, r"/{path:[\s\S]*}", wrap(_unmatched, UNMATCHED))


async def _unmatched(request: web.Request) -> web.StreamResponse:
    """No route matched: 405 with the methods the path has, or 404 (as aiohttp's router)."""
    allowed: set[str] = set()
    catch_all = request.match_info.route.resource
    for resource in request.app.router.resources():
        if resource is not catch_all:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()
