"""Wiring of browser login: the authorization endpoint, the pages, UserInfo, CORS,
discovery metadata, and the admin routes for consents."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from issuer.appkeys import context_key
from issuer.http.admin import actor
from issuer.http.authorize import handle_authorize
from issuer.http.middleware import json_response
from issuer.http.userinfo import handle_userinfo
from issuer.interaction import views
from issuer.services import oidc
from issuer.services.browser_sessions import login_store


def add_routes(app: web.Application) -> None:
    ctx = app[context_key]
    app.router.add_get("/authorize", handle_authorize)
    app.router.add_get("/userinfo", handle_userinfo)
    app.router.add_post("/userinfo", handle_userinfo)
    views.add_routes(app)
    ctx.extra_metadata.update(oidc.metadata(ctx.settings, ["openid"]))


def consent_json(consent: oidc.ConsentRecord) -> dict[str, Any]:
    return {
        "client_id": consent.client_id,
        "scope": " ".join(consent.scope),
        "granted_at": consent.granted_at.isoformat().replace("+00:00", "Z"),
    }


async def handle_list_consents(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    consents = await oidc.list_consents(login_store(ctx.store), request.match_info["id"])
    return json_response({"consents": [consent_json(c) for c in consents]})


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
