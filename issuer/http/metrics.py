"""``GET /metrics`` (Prometheus text format) on the admin listener; what each request
adds to it is recorded by :mod:`issuer.http.middleware`."""

from __future__ import annotations

from aiohttp import web

from issuer import metrics
from issuer.appkeys import context_key
from issuer.http.middleware import write_finished
from issuer.http.operations import operation, unauthenticated


@operation(
    unauthenticated(
        "Prometheus metrics, all workers added up",
        "health",
        {
            "200": {
                "description": "Prometheus text format 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
)
async def handle_metrics(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    write_finished()  # this worker's requests so far, counted
    body = metrics.render(ctx.keyring if ctx.started else None, ctx.clock.now())
    return web.Response(
        body=body, headers={"Content-Type": metrics.CONTENT_TYPE, "Cache-Control": "no-store"}
    )
