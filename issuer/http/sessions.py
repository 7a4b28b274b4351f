"""User sessions over HTTP: the password and refresh_token grants (RFC 6749 §4.3, §6),
``/logout``, ``/revoke`` (RFC 7009), ``/introspect`` (RFC 7662) and ``/revocations``.
"""

from __future__ import annotations

from aiohttp import web

from issuer.appkeys import context_key
from issuer.context import Context
from issuer.http.addresses import client_address
from issuer.http.auth import authenticate
from issuer.http.forms import Form, client_credentials_of, read_form
from issuer.http.operations import (
    BAD_REQUEST,
    BEARER_401,
    CLIENT_401,
    CLIENT_AUTH,
    CLIENT_FIELDS,
    NO_STORE_DOC,
    TOO_LARGE,
    error,
    form_body,
    json_body,
    operation,
    page,
    query,
)
from issuer.http.render import NO_STORE, json_response
from issuer.http.requests import only_query
from issuer.services import endpoints, revocation, sessions
from issuer.services.grants import TokenResponse
from issuer.services.users import user_store


async def grant_password(ctx: Context, request: web.Request, form: Form) -> TokenResponse:
    return await endpoints.password_grant(
        ctx,
        client_credentials_of(request, form),
        username=form.require("username"),
        password=form.require("password"),
        scope=form.get("scope"),
        address=client_address(request, ctx.settings.trusted_proxies),
    )


async def grant_refresh_token(ctx: Context, request: web.Request, form: Form) -> TokenResponse:
    return await endpoints.refresh_token_grant(
        ctx,
        client_credentials_of(request, form),
        refresh_token=form.require("refresh_token"),
        scope=form.get("scope"),
    )


async def _optional_form(request: web.Request) -> Form:
    if not request.can_read_body:
        return Form({})
    return await read_form(request)


@operation(
    {
        "summary": "End the session of the bearer token: deny-list it, revoke its family",
        "tags": ["oauth"],
        "security": [{"userBearer": []}],
        "requestBody": form_body({"refresh_token": {"type": "string"}}, [], optional=True),
        "responses": {
            "204": {"description": "Logged out", "headers": NO_STORE_DOC},
            "400": BAD_REQUEST,
            "401": BEARER_401,
            "413": TOO_LARGE,
        },
    }
)
async def handle_logout(request: web.Request) -> web.Response:
    """End the session: the bearer token is deny-listed and its refresh family revoked."""
    ctx = request.app[context_key]
    claims = await authenticate(request)
    form = await _optional_form(request)
    await sessions.logout(
        user_store(ctx.store), ctx.settings, ctx.clock, claims, form.get("refresh_token")
    )
    return web.Response(status=204, headers=NO_STORE)


@operation(
    {
        "summary": "Revoke a refresh token (its family) or an access token (RFC 7009)",
        "tags": ["oauth"],
        "security": CLIENT_AUTH,
        "requestBody": form_body(
            {"token": {"type": "string"}, "token_type_hint": {"type": "string"}, **CLIENT_FIELDS},
            ["token"],
        ),
        "responses": {
            "200": {
                "description": "Revoked, or unknown / already revoked (RFC 7009 §2.2)",
                "headers": NO_STORE_DOC,
            },
            "400": error("Malformed, or the token belongs to another client"),
            "401": CLIENT_401,
            "413": TOO_LARGE,
        },
    }
)
async def handle_revoke(request: web.Request) -> web.Response:
    """RFC 7009; ``token_type_hint`` is accepted and not needed (see revocation.revoke)."""
    ctx = request.app[context_key]
    form = await read_form(request)
    await endpoints.revoke(ctx, client_credentials_of(request, form), token=form.require("token"))
    # RFC 7009 §2.2: 200 whether or not the token was valid or known.
    return web.Response(status=200, headers=NO_STORE)


@operation(
    {
        "summary": "Token introspection (RFC 7662); a confidential client only",
        "tags": ["oauth"],
        "security": CLIENT_AUTH,
        "requestBody": form_body({"token": {"type": "string"}, **CLIENT_FIELDS}, ["token"]),
        "responses": {
            "200": json_body(
                {
                    "type": "object",
                    "required": ["active"],
                    "properties": {
                        "active": {"type": "boolean"},
                        "token_type": {"enum": ["Bearer", "refresh_token"]},
                    },
                },
                '`{"active": false}`, or the claims with `active` and `token_type`',
                NO_STORE_DOC,
            ),
            "400": BAD_REQUEST,
            "401": CLIENT_401,
            "413": TOO_LARGE,
        },
    }
)
async def handle_introspect(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    form = await read_form(request)
    body = await endpoints.introspect(
        ctx, client_credentials_of(request, form), token=form.require("token")
    )
    return json_response(body, headers=NO_STORE)


FEED_ITEM = {
    "oneOf": [
        {
            "type": "object",
            "required": ["jti", "exp"],
            "properties": {"jti": {"type": "string"}, "exp": {"type": "integer"}},
        },
        {
            "type": "object",
            "required": ["sub", "revoked_before"],
            "properties": {"sub": {"type": "string"}, "revoked_before": {"type": "integer"}},
        },
        {
            "type": "object",
            "description": "The signing key `kid` was revoked at `revoked_at`: refuse every"
            " token it signed, whatever a cached JWKS says",
            "required": ["kid", "revoked_at"],
            "properties": {"kid": {"type": "string"}, "revoked_at": {"type": "integer"}},
        },
    ]
}


@operation(
    {
        "summary": "The revocation feed for offline verifiers",
        "tags": ["oauth"],
        "security": [{"clientBasic": []}],
        "parameters": [
            query(
                "after",
                # As revocation.parse_cursor accepts it.
                {"type": "string", "pattern": "^[0-9]{1,18}$"},
                "The `next` of the previous page; absent: from the start",
            )
        ],
        "responses": {
            "200": json_body(
                page(FEED_ITEM, {"type": "string"}, revocation.FEED_PAGE),
                "Live entries after the cursor, oldest first",
                NO_STORE_DOC,
            ),
            "400": BAD_REQUEST,
            "401": CLIENT_401,
        },
    }
)
async def handle_revocations(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    creds = client_credentials_of(request, Form({}))
    only_query(request, {"after"})
    page = await endpoints.revocation_feed(ctx, creds, after=request.query.get("after"))
    return json_response({"items": page.items, "next": page.next}, headers=NO_STORE)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/logout", handle_logout)
    app.router.add_post("/revoke", handle_revoke)
    app.router.add_post("/introspect", handle_introspect)
    app.router.add_get("/revocations", handle_revocations)
