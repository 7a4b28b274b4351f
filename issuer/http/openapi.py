"""The OpenAPI 3.1 documents of both listeners, served at ``/openapi.json`` on each.

Built from the router, as starlette's ``SchemaGenerator.get_endpoints`` does: every
route contributes the operation its handler carries (:mod:`issuer.http.operations`),
and path parameters come from the route's template. Client authentication is HTTP
Basic (RFC 6749 §2.3.1) or the form fields; the admin API takes a Bearer token
(RFC 6750).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from issuer import __version__
from issuer.http.operations import (
    BAD_REQUEST,
    CLIENT_SETTINGS,
    DATABASE_UNAVAILABLE,
    json_body,
    operation,
    operation_of,
    unauthenticated,
)
from issuer.http.render import json_response

Doc = dict[str, Any]
_PLACEHOLDER = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")

NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
SCHEMAS: Doc = {
    "OAuthError": {
        "type": "object",
        "description": "RFC 6749 §5.2 error response",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "examples": ["invalid_request", "invalid_client"]},
            "error_description": {"type": "string"},
            "request_id": {"type": "string", "description": "Quote it to the operator (500s)"},
        },
    },
    "TokenResponse": {
        "type": "object",
        "description": "RFC 6749 §5.1; the access token is an RFC 9068 JWT",
        "required": ["access_token", "token_type", "expires_in", "scope"],
        "properties": {
            "access_token": {"type": "string"},
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer", "minimum": 1},
            "scope": {"type": "string"},
            "refresh_token": {"type": "string"},
            "id_token": {"type": "string", "description": "With scope openid (OIDC Core §3.1.3.3)"},
        },
    },
    "JWKS": {
        "type": "object",
        "description": "RFC 7517 §5 JSON Web Key Set (public keys only)",
        "required": ["keys"],
        "properties": {
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["kty", "kid"],
                    "properties": {
                        "kty": {"type": "string"},
                        "kid": {"type": "string"},
                        "alg": {"type": "string"},
                        "use": {"type": "string"},
                    },
                    "not": {"anyOf": [{"required": ["d"]}, {"required": ["p"]}]},
                },
            }
        },
    },
    "ServerMetadata": {
        "type": "object",
        "description": "RFC 8414 §2 authorization server metadata",
        "required": ["issuer", "jwks_uri", "token_endpoint", "grant_types_supported"],
        "properties": {
            "issuer": {"type": "string"},
            "jwks_uri": {"type": "string"},
            "token_endpoint": {"type": "string"},
            "grant_types_supported": {"type": "array", "items": {"type": "string"}},
            "token_endpoint_auth_methods_supported": {
                "type": "array",
                "items": {"type": "string"},
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"enum": ["ok", "unavailable"]},
            "failed": {
                "type": "array",
                "items": {"enum": ["starting", "database", "signing_key"]},
            },
        },
    },
    "Key": {
        "type": "object",
        "required": ["kid", "alg", "state", "created_at", "activates_at"],
        "properties": {
            "kid": {"type": "string"},
            "alg": {"type": "string"},
            "state": {"enum": ["pending", "active", "retired", "expired", "revoked"]},
            "created_at": {"type": "string", "format": "date-time"},
            "activates_at": {"type": "string", "format": "date-time"},
            "retires_at": NULLABLE_TIME,
            "expires_at": NULLABLE_TIME,
            "revoked_at": NULLABLE_TIME,
        },
    },
    "Client": {
        "type": "object",
        "required": ["client_id", "name", "scopes", "first_party", "public", "created_at"],
        "properties": {
            "client_id": {"type": "string"},
            "name": {"type": "string"},
            **CLIENT_SETTINGS,
            "disabled": {"type": "boolean"},
            "created_at": {"type": "string", "format": "date-time"},
            "client_secret": {
                "type": "string",
                "description": "Only in the response that creates a confidential client",
            },
        },
    },
    "AuditEvent": {
        "type": "object",
        "required": ["id", "at", "actor", "action"],
        "properties": {
            "id": {"type": "integer"},
            "at": {"type": "string", "format": "date-time"},
            "actor": {"type": "string"},
            "action": {"type": "string"},
            "target": {"type": ["string", "null"]},
            "detail": {"type": "object"},
        },
    },
}

SECURITY_SCHEMES: Doc = {
    "clientBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "client_secret_basic: form-urlencoded id and secret (RFC 6749 §2.3.1)",
    },
    "adminBearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token of this issuer with the issuer:admin scope",
    },
    "userBearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token of this issuer (RFC 6750 §2.1)",
    },
}


def _path_parameters(path: str, op: Doc) -> list[Doc]:
    """The route template's placeholders, unless the operation describes them itself."""
    declared = {(p["name"], p["in"]) for p in op.get("parameters", [])}
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PLACEHOLDER.findall(path)
        if (name, "path") not in declared
    ]


def _common_errors(path: str, op: Doc) -> Doc:
    """What any such route can answer, whatever its handler declares."""
    out: Doc = {}
    if _PLACEHOLDER.search(path):
        # A path segment no store can hold (a NUL, a lone surrogate): http.requests.
        out["400"] = BAD_REQUEST
    if op.get("security") != []:
        # Every authenticated operation looks its caller up in the database.
        out["503"] = DATABASE_UNAVAILABLE
    return out


def paths_of(app: web.Application) -> Doc:
    """``{path: {method: operation}}`` for every documented route of ``app``."""
    paths: Doc = {}
    for route in app.router.routes():
        resource = route.resource
        op = operation_of(route.handler)
        if resource is None or route.method == "HEAD" or op is None:
            continue
        path = resource.canonical
        extra = _path_parameters(path, op)
        if extra:
            op = {**op, "parameters": [*extra, *op.get("parameters", [])]}
        op = {**op, "responses": {**_common_errors(path, op), **op["responses"]}}
        paths.setdefault(path, {})[route.method.lower()] = op
    return paths


def document(app: web.Application, title: str, security: list[Doc]) -> Doc:
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__},
        "paths": paths_of(app),
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
        "security": security,
    }


def add_route(app: web.Application, title: str, security: list[Doc]) -> None:
    @operation(
        unauthenticated(
            "This document",
            "meta",
            {"200": json_body({"type": "object"}, "OpenAPI 3.1 document")},
        )
    )
    async def handle_openapi(request: web.Request) -> web.Response:
        return json_response(document(request.app, title, security))

    app.router.add_get("/openapi.json", handle_openapi)
