"""Health endpoints on both listeners: ``/livez`` (the process answers) and ``/readyz``."""

from __future__ import annotations

from aiohttp import web

from issuer.appkeys import context_key
from issuer.http.operations import json_body, operation, ref, unauthenticated
from issuer.http.render import json_response
from issuer.services import health

HEALTH = {"200": json_body(ref("Health"), "OK")}


@operation(
    unauthenticated("Liveness: the process answers (checks no dependency)", "health", HEALTH)
)
async def handle_livez(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@operation(
    unauthenticated(
        "Readiness: database reachable and a signing key loaded",
        "health",
        {**HEALTH, "503": json_body(ref("Health"), "Not ready; `failed` lists what")},
    )
)
async def handle_readyz(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    if ctx.started:
        failed = await health.unready_parts(ctx.store, ctx.keyring, ctx.clock)
    else:
        failed = ["starting"]
    if failed:
        return json_response({"status": "unavailable", "failed": failed}, status=503)
    return json_response({"status": "ok"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/livez", handle_livez)
    app.router.add_get("/readyz", handle_readyz)
