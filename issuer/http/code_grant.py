"""``POST /token`` with ``grant_type=authorization_code`` (RFC 6749 §4.1.3, RFC 7636 §4.5)."""

from __future__ import annotations

from aiohttp import web

from issuer.context import Context
from issuer.http.forms import Form, client_credentials_of
from issuer.services.accounts import authenticate_client
from issuer.services.authorization_code import exchange_code
from issuer.services.browser_sessions import login_store
from issuer.services.grants import TokenResponse


async def grant_authorization_code(ctx: Context, request: web.Request, form: Form) -> TokenResponse:
    creds = client_credentials_of(request, form)
    client = await authenticate_client(ctx.store, creds.client_id, creds.client_secret)
    return await exchange_code(
        login_store(ctx.store),
        ctx.keyring,
        ctx.settings,
        ctx.clock,
        client=client,
        code=form.require("code"),
        redirect_uri=form.get("redirect_uri"),
        code_verifier=form.get("code_verifier"),
    )
