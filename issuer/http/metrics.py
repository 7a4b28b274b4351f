"""Per-request observation (duration histogram, token and JWKS counters, access log) and
``GET /metrics`` (Prometheus text format) on the admin listener."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from issuer import logs, metrics
from issuer.appkeys import context_key, grant_type_key
from issuer.errors import IssuerError
from issuer.http.middleware import CLIENT_CLOSED_REQUEST, ClientGoneError, Handler, route_name
from issuer.http.operations import operation, unauthenticated

TOKEN_ROUTE = "/token"  # noqa: S105 (a path, not a secret)
JWKS_ROUTE = "/.well-known/jwks.json"
# Probes and scrapes come every few seconds from every prober: logged at DEBUG.
QUIET_ROUTES = frozenset({"/livez", "/readyz", "/metrics"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# aiohttp's own errors (404, 405, 413 …) carry no OAuth code; the renderer maps them.
CLIENT_DISCONNECTED = CLIENT_CLOSED_REQUEST


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sits inside ``request_context`` (which renders errors), so it sees the exception."""
    start = time.perf_counter()
    status, error = 500, "server_error"
    try:
        response = await handler(request)
        status, error = response.status, ""
        return response
    except IssuerError as exc:
        status, error = exc.status, exc.error
        raise
    except web.HTTPException as exc:
        status, error = exc.status, "invalid_request" if exc.status < 500 else "server_error"
        raise
    except asyncio.CancelledError:
        status, error = CLIENT_DISCONNECTED, ""
        raise
    except ClientGoneError:
        status, error = CLIENT_DISCONNECTED, ""
        metrics.client_disconnected()
        raise
    finally:
        elapsed = time.perf_counter() - start
        route = route_name(request)
        method = request.method if request.method in METHODS else "OTHER"
        metrics.request_observed(route, method, status, elapsed)
        if route == TOKEN_ROUTE:
            _count_token(request, status, error)
        elif route == JWKS_ROUTE:
            metrics.jwks_served(status)
        logs.access(method, route, status, elapsed * 1000, quiet=route in QUIET_ROUTES)


def _count_token(request: web.Request, status: int, error: str) -> None:
    if status == 200:
        # Set by the token handler once it knows the grant: no second parse of the form.
        metrics.token_issued(request.get(grant_type_key, "other"))
    elif error:
        metrics.token_error(error)


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
    body = metrics.render(ctx.keyring if ctx.started else None, ctx.clock.now())
    return web.Response(
        body=body, headers={"Content-Type": metrics.CONTENT_TYPE, "Cache-Control": "no-store"}
    )
