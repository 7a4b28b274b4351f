"""Typed application state (``web.AppKey``) shared by the public and admin apps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from issuer.context import Context
    from issuer.jose.tokens import AccessClaims

context_key: web.AppKey[Context] = web.AppKey("context")
admin_app_key: web.AppKey[web.Application] = web.AppKey("admin_app")
# The verified claims of the request's bearer token.
claims_key: web.RequestKey[AccessClaims] = web.RequestKey("claims")
# The request's whole body, read by the edge before the handler runs (``body_of``).
body_key: web.RequestKey[bytes] = web.RequestKey("body", bytes)
# The grant type of a token request, once the handler has found it supported.
grant_type_key: web.RequestKey[str] = web.RequestKey("grant_type", str)
