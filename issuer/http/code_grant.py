"""``POST /token`` with ``grant_type=authorization_code`` (RFC 6749 §4.1.3, RFC 7636 §4.5)."""

from __future__ import annotations

from aiohttp import web

from issuer.context import Context
from issuer.http.forms import Form, client_credentials_of
from issuer.services import endpoints
from issuer.services.grants import TokenResponse


async def grant_authorization_code(ctx: Context, request: web.Request, form: Form) -> TokenResponse:
    return await endpoints.authorization_code_grant(
        ctx,
        client_credentials_of(request, form),
        code=form.require("code"),
        redirect_uri=form.get("redirect_uri"),
        code_verifier=form.get("code_verifier"),
    )
