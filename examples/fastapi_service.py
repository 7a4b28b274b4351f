"""The example resource service on FastAPI (served by uvicorn): tokens verified offline.

    .venv/bin/python examples/fastapi_service.py

Settings (environment), as for examples/resource_service.py: RESOURCE_ISSUER (default
http://127.0.0.1:8080), RESOURCE_AUDIENCE (``aud``), RESOURCE_PORT (8090);
RESOURCE_FEED_CLIENT_ID and RESOURCE_FEED_CLIENT_SECRET turn on the revocation feed
(RESOURCE_FEED_INTERVAL, default 10 s).
"""

from __future__ import annotations

import os
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI

from issuer.verifier import JWKSClient, RevocationFeed, Verifier
from issuer.verifier.fastapi import Claims, FastAPIBearer


def create_app(
    issuer: str,
    audience: str,
    *,
    feed_client: tuple[str, str] | None = None,
    feed_interval: float = 10.0,
) -> FastAPI:
    feed = None
    if feed_client is not None:
        feed = RevocationFeed(f"{issuer}/revocations", *feed_client, interval=feed_interval)
    verifier = Verifier(
        issuer=issuer,
        audience=audience,
        jwks=JWKSClient(f"{issuer}/.well-known/jwks.json"),
        revocations=feed,
    )
    auth = FastAPIBearer(verifier)
    app = FastAPI(title="invoices")
    auth.setup(app)  # RFC 6750 errors; the JWKS client and the feed run with the lifespan

    @app.get("/invoices")
    async def invoices(
        claims: Claims = Depends(auth.claims(scopes=["invoices:read"])),  # noqa: B008
    ) -> dict[str, Any]:
        return {"invoices": [], "for": claims["sub"]}

    @app.get("/audit-report")
    async def audit_report(
        claims: Claims = Depends(auth.claims(roles=["auditor"])),  # noqa: B008
    ) -> dict[str, Any]:
        return {"report": "all in order"}

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True}

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
    uvicorn.run(app, host="127.0.0.1", port=int(env.get("RESOURCE_PORT", "8090")))


if __name__ == "__main__":
    main()
