"""``GET``/``POST /userinfo`` (OpenID Connect Core §5.3): the user behind a bearer token."""

from __future__ import annotations

from aiohttp import web

from issuer.appkeys import claims_key, context_key
from issuer.http.auth import authenticate
from issuer.http.login_openapi import USERINFO
from issuer.http.operations import operation
from issuer.http.render import json_response
from issuer.services.browser_sessions import login_store
from issuer.services.oidc import userinfo


@operation(USERINFO)
async def handle_userinfo(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    claims = await authenticate(request)
    request[claims_key] = claims  # for CORS: the client the token was issued to
    body = await userinfo(login_store(ctx.store), claims)
    return json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
