"""Routes of browser login: the authorization endpoint, the pages, UserInfo, and the
admin routes for consents (CORS and discovery are wired in create_app and public)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from issuer.appkeys import context_key
from issuer.http.auth import actor
from issuer.http.authorize import handle_authorize
from issuer.http.login_openapi import LIST_CONSENTS, WITHDRAW_CONSENT
from issuer.http.operations import operation
from issuer.http.render import json_response
from issuer.http.userinfo import handle_userinfo
from issuer.interaction import views
from issuer.services import oidc
from issuer.services.browser_sessions import login_store


def add_routes(app: web.Application) -> None:
    app.router.add_get("/authorize", handle_authorize)
    app.router.add_get("/userinfo", handle_userinfo)
    app.router.add_post("/userinfo", handle_userinfo)
    views.add_routes(app)


def consent_json(consent: oidc.ConsentRecord) -> dict[str, Any]:
    return {
        "client_id": consent.client_id,
        "scope": " ".join(consent.scope),
        "granted_at": consent.granted_at.isoformat().replace("+00:00", "Z"),
    }


@operation(LIST_CONSENTS)
async def handle_list_consents(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    consents = await oidc.list_consents(login_store(ctx.store), request.match_info["id"])
    return json_response({"consents": [consent_json(c) for c in consents]})


@operation(WITHDRAW_CONSENT)
async def handle_withdraw_consent(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    await oidc.withdraw_consent(
        login_store(ctx.store),
        ctx.settings,
        ctx.clock,
        request.match_info["id"],
        request.match_info["client_id"],
        actor=actor(request),
    )
    return web.Response(status=204)


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/admin/users/{id}/consents", handle_list_consents)
    app.router.add_delete("/admin/users/{id}/consents/{client_id}", handle_withdraw_consent)
