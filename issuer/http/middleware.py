"""Request ids, error rendering (RFC 6749 §5.2 JSON), security headers.

Every error leaves as ``{"error", "error_description"}`` with ``Cache-Control:
no-store``; anything that is not an :class:`IssuerError` is logged with the
request id and answered as a bare 500 that reveals nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from issuer import logs, metrics
from issuer.appkeys import admin_app_key, context_key
from issuer.errors import IssuerError
from issuer.http.render import json_response
from issuer.logs import request_id_var, route_var

log = logging.getLogger("issuer.http")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
# aiohttp's own HTTP errors, mapped onto OAuth-style codes.
_HTTP_ERRORS = {
    400: "invalid_request",
    404: "not_found",
    405: "invalid_request",
    413: "invalid_request",
    415: "invalid_request",
}


def error_response(error: IssuerError) -> web.Response:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache", **error.headers()}
    body = {"error": error.error, "error_description": error.description}
    return json_response(body, error.status, headers)


class ClientGoneError(Exception):
    """The client closed the connection before its body was read: not a server error."""


def route_name(request: web.Request) -> str:
    """The route template (``/admin/keys/{kid}/revoke``), never the raw path."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


CLIENT_CLOSED_REQUEST = 499


@web.middleware
async def read_body(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read the whole body within ``ISSUER_BODY_TIMEOUT`` before any handler runs.

    aiohttp puts no bound on a body that trickles or never ends; the handler would
    wait as long as the client likes, holding the connection. Handlers then parse
    the bytes read here (``request.post()`` and ``request.json()`` reuse them).
    """
    if request.body_exists:
        timeout = request.app[context_key].settings.body_timeout
        try:
            async with asyncio.timeout(timeout):
                await request.read()
        except TimeoutError:
            metrics.connection_closed(_listener(request), "body_timeout")
            logs.overload(
                f"{_listener(request)}:body_timeout",
                "requests refused: body not complete within ISSUER_BODY_TIMEOUT (%ss)",
                timeout,
            )
            response = json_response(
                {
                    "error": "invalid_request",
                    "error_description": "the request body did not arrive in time",
                },
                408,
                {"Cache-Control": "no-store"},
            )
            response.force_close()
            # Give up on the rest of the body: no draining it after the answer either.
            request.content.feed_eof()
            return response
        except ConnectionError:
            raise ClientGoneError from None
    return await handler(request)


def _listener(request: web.Request) -> str:
    # Only the public app carries the admin app along.
    return "public" if admin_app_key in request.app else "admin"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    # 32 random hex digits, as uuid4().hex gave, at a third of its cost.
    rid = incoming if _REQUEST_ID.fullmatch(incoming) else os.urandom(16).hex()
    request_id_var.set(rid)
    route_var.set(route_name(request))
    response = await _render_errors(request, handler)
    response.headers["X-Request-ID"] = rid
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


async def _render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except IssuerError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_ERRORS.get(
            exc.status, "invalid_request" if exc.status < 500 else "server_error"
        )
        body = {"error": code, "error_description": exc.reason.lower()}
        headers = {"Cache-Control": "no-store"}
        if "Allow" in exc.headers:
            headers["Allow"] = exc.headers["Allow"]
        return json_response(body, exc.status, headers)
    except ClientGoneError:
        # Nobody is left to read an answer; 499 (nginx's "client closed request") is
        # for the access log and the metrics, never the 5xx series that pages someone.
        log.info("client disconnected before the request body was read")
        return json_response({"error": "client_disconnected"}, CLIENT_CLOSED_REQUEST)
    except Exception:
        log.exception("unhandled error", extra={"route": route_name(request)})
        body = {
            "error": "server_error",
            "error_description": "internal error; quote the request id to the operator",
            "request_id": request_id_var.get(),
        }
        return json_response(body, 500, {"Cache-Control": "no-store"})
