"""CORS (WHATWG Fetch §3.2) for the endpoints a single-page app calls: ``/token``,
``/userinfo`` and ``/revoke``.

A preflight carries no credentials, so it is answered for any origin that some
enabled client registered; the real request's response is readable only from
the web origins of the client it concerns (the authenticated client, or the
client the bearer token was issued to). When no client can be told (a request
refused before that), a registered origin may read the error. No cookies are
involved (no ``Allow-Credentials``): these endpoints authenticate by form or header.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qsl, unquote_plus

from aiohttp import web

from issuer.appkeys import claims_key, context_key
from issuer.errors import IssuerError
from issuer.http.middleware import Handler, error_response
from issuer.http.requests import body_of
from issuer.services.cors import may_read, preflight_allowed

CORS_METHODS = {"/token": "POST", "/revoke": "POST", "/userinfo": "GET, POST"}
MAX_AGE = "600"


async def _client_id_of(request: web.Request) -> str | None:
    claims = request.get(claims_key)
    if claims is not None:
        value = claims.get("client_id")
        return value if isinstance(value, str) else None
    auth = request.headers.get("Authorization", "")
    scheme, _, param = auth.partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(param.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return unquote_plus(decoded.partition(":")[0]) or None
    if request.content_type != "application/x-www-form-urlencoded" or not request.body_exists:
        return None
    try:
        raw = (await body_of(request)).decode("utf-8")  # the edge read it
        fields = dict(parse_qsl(raw, max_num_fields=50))
    except (UnicodeDecodeError, ValueError, web.HTTPException):
        return None
    return fields.get("client_id") or None


async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run by the public edge middleware around the handler, for requests with an Origin."""
    methods = CORS_METHODS.get(request.path)
    origin = request.headers.get("Origin")
    if methods is None or origin is None:
        return await handler(request)
    if request.method == "OPTIONS":
        if not await preflight_allowed(request.app[context_key].store, origin):
            return web.Response(status=403, headers={"Vary": "Origin"})
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": methods,
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": MAX_AGE,
                "Vary": "Origin",
            },
        )
    try:
        response = await handler(request)
    except IssuerError as exc:
        response = error_response(exc)
    response.headers["Vary"] = "Origin"
    store = request.app[context_key].store
    if await may_read(store, origin, await _client_id_of(request)):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "WWW-Authenticate, Retry-After"
    return response
