"""An example resource service that trusts the issuer's access tokens without calling it.

    .venv/bin/python examples/resource_service.py

Settings (environment): RESOURCE_ISSUER (default http://127.0.0.1:8080), RESOURCE_AUDIENCE
(default ``aud``, the issuer's default), RESOURCE_PORT (8090); RESOURCE_FEED_CLIENT_ID and
RESOURCE_FEED_CLIENT_SECRET turn on the revocation feed (RESOURCE_FEED_INTERVAL, default 10 s).
"""

from __future__ import annotations

import os

from aiohttp import web

from issuer.verifier import JWKSClient, RevocationFeed, Verifier
from issuer.verifier.middleware import claims_of, public, require_role, require_scope, setup


@require_scope("invoices:read")
async def handle_invoices(request: web.Request) -> web.Response:
    claims = claims_of(request)
    return web.json_response({"invoices": [], "for": claims["sub"]})


@require_role("auditor")
async def handle_audit_report(request: web.Request) -> web.Response:
    return web.json_response({"report": "all in order"})


@public
async def handle_healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def create_app(
    issuer: str,
    audience: str,
    *,
    feed_client: tuple[str, str] | None = None,
    feed_interval: float = 10.0,
    algorithms: tuple[str, ...] = ("RS256",),
) -> web.Application:
    feed = None
    if feed_client is not None:
        feed = RevocationFeed(f"{issuer}/revocations", *feed_client, interval=feed_interval)
    verifier = Verifier(
        issuer=issuer,
        audience=audience,
        jwks=JWKSClient(f"{issuer}/.well-known/jwks.json"),
        algorithms=algorithms,
        revocations=feed,
    )
    app = web.Application()
    setup(app, verifier)
    app.router.add_get("/invoices", handle_invoices)
    app.router.add_get("/audit-report", handle_audit_report)
    app.router.add_get("/healthz", handle_healthz)
    return app


def main() -> None:
    env = os.environ
    feed_id, feed_secret = (
        env.get("RESOURCE_FEED_CLIENT_ID"),
        env.get("RESOURCE_FEED_CLIENT_SECRET"),
    )
    app = create_app(
        env.get("RESOURCE_ISSUER", "http://127.0.0.1:8080"),
        env.get("RESOURCE_AUDIENCE", "aud"),
        feed_client=(feed_id, feed_secret) if feed_id and feed_secret else None,
        feed_interval=float(env.get("RESOURCE_FEED_INTERVAL", "10")),
    )
    web.run_app(app, host="127.0.0.1", port=int(env.get("RESOURCE_PORT", "8090")))


if __name__ == "__main__":
    main()
