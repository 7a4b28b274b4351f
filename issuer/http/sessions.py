"""User sessions over HTTP: the password and refresh_token grants (RFC 6749 §4.3, §6),
``/logout``, ``/revoke`` (RFC 7009), ``/introspect`` (RFC 7662) and ``/revocations``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from issuer.appkeys import context_key
from issuer.context import Context
from issuer.errors import InvalidClientError, InvalidTokenError
from issuer.http.addresses import client_address
from issuer.http.admin import authenticate
from issuer.http.forms import Form, client_credentials_of, read_form
from issuer.http.middleware import json_response
from issuer.http.users import only_query
from issuer.services import housekeeping, login, revocation, sessions
from issuer.services.accounts import authenticate_client
from issuer.services.grants import TokenResponse
from issuer.services.users import user_store
from issuer.store.base import ClientRecord

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def _client(ctx: Context, request: web.Request, form: Form) -> ClientRecord:
    creds = client_credentials_of(request, form)
    return await authenticate_client(ctx.store, creds.client_id, creds.client_secret)


async def _confidential_client(ctx: Context, request: web.Request, form: Form) -> ClientRecord:
    client = await _client(ctx, request, form)
    if client.public:
        raise InvalidClientError("this endpoint needs a confidential client")
    return client


async def grant_password(ctx: Context, request: web.Request, form: Form) -> TokenResponse:
    client = await _client(ctx, request, form)
    return await login.password_grant(
        user_store(ctx.store),
        ctx.keyring,
        ctx.settings,
        ctx.clock,
        client=client,
        username=form.require("username"),
        password=form.require("password"),
        requested_scope=form.get("scope"),
        address=client_address(request, ctx.settings.trusted_proxies),
    )


async def grant_refresh_token(ctx: Context, request: web.Request, form: Form) -> TokenResponse:
    client = await _client(ctx, request, form)
    return await sessions.refresh(
        user_store(ctx.store),
        ctx.keyring,
        ctx.settings,
        ctx.clock,
        client=client,
        presented=form.require("refresh_token"),
        requested_scope=form.get("scope"),
    )


async def _optional_form(request: web.Request) -> Form:
    if not request.can_read_body:
        return Form({})
    return await read_form(request)


async def handle_logout(request: web.Request) -> web.Response:
    """End the session: the bearer token is deny-listed and its refresh family revoked."""
    ctx = request.app[context_key]
    claims = await authenticate(request)
    form = await _optional_form(request)
    await sessions.logout(
        user_store(ctx.store), ctx.settings, ctx.clock, claims, form.get("refresh_token")
    )
    return web.Response(status=204, headers=NO_STORE)


async def handle_revoke(request: web.Request) -> web.Response:
    """RFC 7009; ``token_type_hint`` is accepted and not needed (see revocation.revoke)."""
    ctx = request.app[context_key]
    form = await read_form(request)
    client = await _client(ctx, request, form)
    await revocation.revoke(
        user_store(ctx.store),
        ctx.keyring,
        ctx.settings,
        ctx.clock,
        client=client,
        token=form.require("token"),
    )
    # RFC 7009 §2.2: 200 whether or not the token was valid or known.
    return web.Response(status=200, headers=NO_STORE)


async def handle_introspect(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    form = await read_form(request)
    client = await _confidential_client(ctx, request, form)
    body = await revocation.introspect(
        user_store(ctx.store), ctx.keyring, ctx.clock, client=client, token=form.require("token")
    )
    return json_response(body, headers=NO_STORE)


async def handle_revocations(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    await _confidential_client(ctx, request, Form({}))
    only_query(request, {"after"})
    page = await revocation.revocation_feed(
        user_store(ctx.store), ctx.clock, request.query.get("after")
    )
    return json_response({"items": page.items, "next": page.next}, headers=NO_STORE)


def add_routes(app: web.Application) -> None:
    ctx = app[context_key]
    app.router.add_post("/logout", handle_logout)
    app.router.add_post("/revoke", handle_revoke)
    app.router.add_post("/introspect", handle_introspect)
    app.router.add_get("/revocations", handle_revocations)
    base = ctx.settings.issuer
    ctx.auth_methods.add("none")  # public first-party clients (RFC 8414 §2)
    ctx.extra_metadata.update(
        {
            "revocation_endpoint": f"{base}/revoke",
            "revocation_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "introspection_endpoint": f"{base}/introspect",
            "introspection_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
        }
    )

    async def deny_list(request: Any, claims: dict[str, Any]) -> None:
        if await revocation.is_revoked(user_store(ctx.store), claims):
            raise InvalidTokenError("the access token has been revoked")

    ctx.token_checks.append(deny_list)

    # on_startup runs after the cleanup contexts opened the store; on_shutdown before
    # they close it, so the purger never meets a closed store.
    purger: list[asyncio.Task[None]] = []

    async def start_purger(app: web.Application) -> None:
        store = user_store(ctx.store)
        purger.append(
            asyncio.create_task(
                housekeeping.run_purger(store, ctx.settings, ctx.clock), name="session-purger"
            )
        )

    async def stop_purger(app: web.Application) -> None:
        for task in purger:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.on_startup.append(start_purger)
    app.on_shutdown.append(stop_purger)
