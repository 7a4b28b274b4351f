"""The example resource service on Flask (served by waitress): tokens verified offline.

    .venv/bin/python examples/flask_service.py

Settings (environment), as for examples/resource_service.py: RESOURCE_ISSUER (default
http://127.0.0.1:8080), RESOURCE_AUDIENCE (``aud``), RESOURCE_PORT (8090);
RESOURCE_FEED_CLIENT_ID and RESOURCE_FEED_CLIENT_SECRET turn on the revocation feed
(RESOURCE_FEED_INTERVAL, default 10 s).
"""

from __future__ import annotations

import os

import waitress
from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

from issuer.verifier import SyncJWKSClient, SyncRevocationFeed, SyncVerifier
from issuer.verifier.flask import FlaskBearer, current_claims


def create_app(
    issuer: str,
    audience: str,
    *,
    feed_client: tuple[str, str] | None = None,
    feed_interval: float = 10.0,
) -> Flask:
    feed = None
    if feed_client is not None:
        feed = SyncRevocationFeed(f"{issuer}/revocations", *feed_client, interval=feed_interval)
    verifier = SyncVerifier(
        issuer=issuer,
        audience=audience,
        jwks=SyncJWKSClient(f"{issuer}/.well-known/jwks.json"),
        revocations=feed,
    )
    app = Flask("invoices")
    auth = FlaskBearer(verifier, app)  # the JWKS refresh and the feed run on threads

    @app.get("/invoices")
    @auth.required(scopes=["invoices:read"])
    def invoices() -> ResponseReturnValue:
        return jsonify(invoices=[], **{"for": current_claims()["sub"]})

    @app.get("/audit-report")
    @auth.required(roles=["auditor"])
    def audit_report() -> ResponseReturnValue:
        return jsonify(report="all in order")

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return jsonify(ok=True)

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
    waitress.serve(app, host="127.0.0.1", port=int(env.get("RESOURCE_PORT", "8090")))


if __name__ == "__main__":
    main()
