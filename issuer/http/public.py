"""Public endpoints: ``/token`` (RFC 6749 §3.2), the JWKS (RFC 7517 §5), discovery (RFC 8414)."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import CIMultiDict

from issuer.appkeys import context_key, grant_type_key
from issuer.context import Context
from issuer.errors import InvalidRequestError, UnsupportedGrantTypeError
from issuer.http.code_grant import grant_authorization_code
from issuer.http.forms import Form, client_credentials_of, read_form
from issuer.http.middleware import SECURITY_HEADERS
from issuer.http.operations import (
    BAD_REQUEST,
    CLIENT_401,
    CLIENT_AUTH,
    CLIENT_FIELDS,
    NO_STORE_DOC,
    TOO_LARGE,
    UNAVAILABLE,
    error,
    form_body,
    header,
    json_body,
    operation,
    ref,
    unauthenticated,
)
from issuer.http.render import token_response
from issuer.http.sessions import grant_password, grant_refresh_token
from issuer.services import endpoints, oidc
from issuer.services.grants import TokenResponse

JWKS_TYPE = "application/jwk-set+json"
CONFIDENTIAL_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
GrantHandler = Callable[[Context, web.Request, Form], Awaitable[TokenResponse]]


async def grant_client_credentials(ctx: Context, request: web.Request, form: Form) -> TokenResponse:
    creds = client_credentials_of(request, form)
    return await endpoints.client_credentials_grant(ctx, creds, scope=form.get("scope"))


GRANTS: dict[str, GrantHandler] = {
    "authorization_code": grant_authorization_code,
    "client_credentials": grant_client_credentials,
    "password": grant_password,
    "refresh_token": grant_refresh_token,
}


@operation(
    {
        "summary": "Token endpoint (RFC 6749 §3.2)",
        "tags": ["oauth"],
        "security": CLIENT_AUTH,
        "requestBody": form_body(
            {
                "grant_type": {"type": "string", "enum": sorted(GRANTS)},
                "scope": {"type": "string", "description": "Space-delimited (RFC 6749 §3.3)"},
                **CLIENT_FIELDS,
            },
            ["grant_type"],
        ),
        "responses": {
            "200": json_body(ref("TokenResponse"), "Tokens (RFC 6749 §5.1)", NO_STORE_DOC),
            "400": BAD_REQUEST,
            "401": CLIENT_401,
            "413": TOO_LARGE,
            "429": error(
                "Too many failed logins (`too_many_attempts`)",
                {"Retry-After": header("Seconds")},
            ),
            "503": UNAVAILABLE,
        },
    }
)
async def handle_token(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    form = await read_form(request)
    grant_type = form.get("grant_type")
    if grant_type is None:
        raise InvalidRequestError("missing parameter grant_type")
    grant = GRANTS.get(grant_type)
    if grant is None:
        raise UnsupportedGrantTypeError(f"grant_type {grant_type[:40]!r} is not supported")
    request[grant_type_key] = grant_type  # for the metrics (a known grant, never user text)
    return token_response(await grant(ctx, request, form))


def _etag_matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    if header.strip() == "*":
        return True
    # RFC 9110 §13.1.2: If-None-Match uses the weak comparison.
    candidates = (c.strip().removeprefix("W/") for c in header.split(","))
    return etag in candidates


@operation(
    unauthenticated(
        "The published signing keys (RFC 7517)",
        "discovery",
        {
            "200": {
                "description": "The key set",
                "headers": {
                    "ETag": header("Strong validator"),
                    "Cache-Control": header("public, max-age=…"),
                },
                "content": {JWKS_TYPE: {"schema": ref("JWKS")}},
            },
            "304": {"description": "Not modified (the ETag matches)"},
        },
        parameters=[
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
            }
        ],
    )
)
async def handle_jwks(request: web.Request) -> web.Response:
    doc, max_age = request.app[context_key].keyring.jwks()
    if _etag_matches(request.headers.get("If-None-Match"), doc.etag):
        return web.Response(status=304, headers=_jwks_headers(doc.etag, max_age, False))
    return web.Response(body=doc.body, headers=_jwks_headers(doc.etag, max_age, True))


@functools.lru_cache(maxsize=64)
def _jwks_headers(etag: str, max_age: int, with_body: bool) -> CIMultiDict[str]:
    """The JWKS response's headers, made once per document and max-age (the response
    copies them): the security headers are among them, so the edge adds none."""
    headers = CIMultiDict(
        {
            "Cache-Control": f"public, max-age={max_age}",
            "ETag": etag,
            "Access-Control-Allow-Origin": "*",
            **SECURITY_HEADERS,
        }
    )
    if with_body:
        headers["Content-Type"] = JWKS_TYPE
    return headers


def discovery_document(ctx: Context) -> bytes:
    """RFC 8414 §2 metadata: only what this server really does."""
    base = ctx.settings.issuer
    doc = {
        "issuer": base,
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "token_endpoint": f"{base}/token",
        "grant_types_supported": sorted(GRANTS),
        # "none": public first-party clients (RFC 8414 §2).
        "token_endpoint_auth_methods_supported": [*CONFIDENTIAL_AUTH_METHODS, "none"],
        "access_token_signing_alg_values_supported": [ctx.settings.signing_alg],
        "revocation_endpoint": f"{base}/revoke",
        "revocation_endpoint_auth_methods_supported": [*CONFIDENTIAL_AUTH_METHODS, "none"],
        "introspection_endpoint": f"{base}/introspect",
        "introspection_endpoint_auth_methods_supported": list(CONFIDENTIAL_AUTH_METHODS),
        # Browser login and OpenID Connect Discovery §3.
        **oidc.metadata(ctx.settings, ["openid"]),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


@operation(
    unauthenticated(
        "Authorization server metadata (RFC 8414)",
        "discovery",
        {"200": json_body(ref("ServerMetadata"), "Metadata")},
    )
)
async def handle_discovery(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    return web.Response(
        body=discovery_document(ctx),
        content_type="application/json",
        headers={"Cache-Control": "public, max-age=3600", "Access-Control-Allow-Origin": "*"},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/token", handle_token)
    app.router.add_get("/.well-known/jwks.json", handle_jwks)
    app.router.add_get("/.well-known/openid-configuration", handle_discovery)
    app.router.add_get("/.well-known/oauth-authorization-server", handle_discovery)
