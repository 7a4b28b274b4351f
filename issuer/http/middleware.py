"""Request ids, error rendering (RFC 6749 §5.2 JSON), security headers.

Every error leaves as ``{"error", "error_description"}`` with ``Cache-Control:
no-store``; anything that is not an :class:`IssuerError` is logged with the
request id and answered as a bare 500 that reveals nothing.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from issuer.errors import IssuerError
from issuer.http.render import json_response

log = logging.getLogger("issuer.http")
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
route_var: contextvars.ContextVar[str] = contextvars.ContextVar("route", default="-")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
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


def route_name(request: web.Request) -> str:
    """The route template (``/admin/keys/{kid}/revoke``), never the raw path."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    rid = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
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
    except Exception:
        log.exception("unhandled error", extra={"route": route_name(request)})
        body = {
            "error": "server_error",
            "error_description": "internal error; quote the request id to the operator",
            "request_id": request_id_var.get(),
        }
        return json_response(body, 500, {"Cache-Control": "no-store"})
