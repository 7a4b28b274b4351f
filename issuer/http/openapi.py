"""The OpenAPI 3.1 documents of both listeners, served at ``/openapi.json`` on each.

Built as plain dicts, one function per route group; a new route adds its paths
function to ``PUBLIC_GROUPS`` or ``ADMIN_GROUPS`` (tests/http/test_openapi.py
fails while a registered route is missing from its listener's document).
Errors are RFC 6749 §5.2 bodies; client authentication is HTTP Basic (RFC 6749
§2.3.1) or the form fields, and the admin API takes a Bearer token (RFC 6750).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from issuer import __version__
from issuer.appkeys import context_key
from issuer.context import Context
from issuer.http.public import GRANTS
from issuer.http.render import json_response
from issuer.http.sessions_openapi import SECURITY_SCHEMES as SESSION_SECURITY_SCHEMES
from issuer.http.sessions_openapi import admin_user_paths, session_paths

Doc = dict[str, Any]
Paths = dict[str, Doc]


def ref(name: str) -> Doc:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: Doc, description: str, headers: Doc | None = None) -> Doc:
    out: Doc = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def error(description: str, headers: Doc | None = None) -> Doc:
    return json_body(ref("OAuthError"), description, headers)


def _header(description: str) -> Doc:
    return {"description": description, "schema": {"type": "string"}}


BAD_REQUEST = error("Malformed request (`invalid_request` and friends)")
TOO_LARGE = error("Request body larger than 64 KiB")
NOT_FOUND = error("No such resource")
UNAVAILABLE = error("No signing key is available right now (`temporarily_unavailable`)")
BEARER_ERRORS = {
    "401": error(
        "Missing, invalid or expired bearer token (RFC 6750 §3.1)",
        {"WWW-Authenticate": _header("The Bearer challenge")},
    ),
    "403": error(
        "The token lacks the issuer:admin scope (`insufficient_scope`)",
        {"WWW-Authenticate": _header("The Bearer challenge, with the scope needed")},
    ),
}

# -- schemas ----------------------------------------------------------------------

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
            "scopes": {"type": "array", "items": {"type": "string"}},
            "first_party": {"type": "boolean"},
            "public": {"type": "boolean"},
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
}
SECURITY_SCHEMES.update(SESSION_SECURITY_SCHEMES)

# -- route groups -----------------------------------------------------------------


def ops_paths(ctx: Context) -> Paths:
    health = {"200": json_body(ref("Health"), "OK")}
    return {
        "/livez": {
            "get": {
                "summary": "Liveness: the process answers (checks no dependency)",
                "tags": ["health"],
                "security": [],
                "responses": health,
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: database reachable and a signing key loaded",
                "tags": ["health"],
                "security": [],
                "responses": {
                    **health,
                    "503": json_body(ref("Health"), "Not ready; `failed` lists what"),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "tags": ["meta"],
                "security": [],
                "responses": {"200": json_body({"type": "object"}, "OpenAPI 3.1 document")},
            }
        },
    }


def token_paths(ctx: Context) -> Paths:
    form = {
        "type": "object",
        "required": ["grant_type"],
        "properties": {
            "grant_type": {"type": "string", "enum": sorted(GRANTS)},
            "scope": {"type": "string", "description": "Space-delimited (RFC 6749 §3.3)"},
            "client_id": {"type": "string", "description": "client_secret_post, or public"},
            "client_secret": {"type": "string", "description": "client_secret_post"},
        },
    }
    no_store = {"Cache-Control": _header("no-store (RFC 6749 §5.1)")}
    return {
        "/token": {
            "post": {
                "summary": "Token endpoint (RFC 6749 §3.2)",
                "tags": ["oauth"],
                "security": [{"clientBasic": []}, {}],
                "requestBody": {
                    "required": True,
                    "content": {"application/x-www-form-urlencoded": {"schema": form}},
                },
                "responses": {
                    "200": json_body(ref("TokenResponse"), "Tokens (RFC 6749 §5.1)", no_store),
                    "400": BAD_REQUEST,
                    "401": error(
                        "Client authentication failed (`invalid_client`)",
                        {"WWW-Authenticate": _header("The Basic challenge")},
                    ),
                    "413": TOO_LARGE,
                    "429": error("Too many failed attempts", {"Retry-After": _header("Seconds")}),
                    "503": UNAVAILABLE,
                },
            }
        }
    }


def well_known_paths(ctx: Context) -> Paths:
    metadata = {
        "get": {
            "summary": "Authorization server metadata (RFC 8414)",
            "tags": ["discovery"],
            "security": [],
            "responses": {"200": json_body(ref("ServerMetadata"), "Metadata")},
        }
    }
    return {
        "/.well-known/jwks.json": {
            "get": {
                "summary": "The published signing keys (RFC 7517)",
                "tags": ["discovery"],
                "security": [],
                "parameters": [
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The key set",
                        "headers": {
                            "ETag": _header("Strong validator"),
                            "Cache-Control": _header("public, max-age=…"),
                        },
                        "content": {"application/jwk-set+json": {"schema": ref("JWKS")}},
                    },
                    "304": {"description": "Not modified (the ETag matches)"},
                },
            }
        },
        "/.well-known/openid-configuration": metadata,
        "/.well-known/oauth-authorization-server": metadata,
    }


def _admin(summary: str, responses: Doc, **extra: Any) -> Doc:
    return {
        "summary": summary,
        "tags": ["admin"],
        "responses": {**responses, **BEARER_ERRORS},
        **extra,
    }


def admin_key_paths(ctx: Context) -> Paths:
    one_key = json_body(
        {"type": "object", "required": ["key"], "properties": {"key": ref("Key")}}, "The key"
    )
    rotate_body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "immediate": {
                "type": "boolean",
                "description": "Sign with the new key at once (emergency) instead of after "
                "the publish lead",
            }
        },
    }
    return {
        "/admin/keys": {
            "get": _admin(
                "Every signing key with its state",
                {
                    "200": json_body(
                        {
                            "type": "object",
                            "required": ["keys"],
                            "properties": {"keys": {"type": "array", "items": ref("Key")}},
                        },
                        "Keys, newest first",
                    )
                },
            )
        },
        "/admin/keys/rotate": {
            "post": _admin(
                "Publish a new key",
                {"201": one_key, "400": BAD_REQUEST, "413": TOO_LARGE},
                requestBody={
                    "required": False,
                    "content": {"application/json": {"schema": rotate_body}},
                },
            )
        },
        "/admin/keys/{kid}/revoke": {
            "post": _admin(
                "Withdraw a key from the JWKS at once; a fresh key signs if it was the signer",
                {"200": one_key, "404": NOT_FOUND},
                parameters=[
                    {"name": "kid", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
            )
        },
    }


def admin_client_paths(ctx: Context) -> Paths:
    create = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "first_party": {"type": "boolean"},
            "public": {"type": "boolean"},
        },
    }
    return {
        "/admin/clients": {
            "get": _admin(
                "Every client",
                {
                    "200": json_body(
                        {
                            "type": "object",
                            "required": ["clients"],
                            "properties": {"clients": {"type": "array", "items": ref("Client")}},
                        },
                        "Clients",
                    )
                },
            ),
            "post": _admin(
                "Register a client; a confidential client's secret is shown this once",
                {
                    "201": json_body(ref("Client"), "The new client"),
                    "400": BAD_REQUEST,
                    "409": error("A client with this name exists (`conflict`)"),
                    "413": TOO_LARGE,
                },
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": create}},
                },
            ),
        },
        "/admin/clients/{client_id}": {
            "patch": _admin(
                "Disable or enable a client; disabling also cuts off every token it holds",
                {
                    "200": json_body(ref("Client"), "The client"),
                    "400": BAD_REQUEST,
                    "404": NOT_FOUND,
                    "413": TOO_LARGE,
                },
                parameters=[
                    {
                        "name": "client_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "The client_id, or the client's name",
                    }
                ],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["disabled"],
                                "additionalProperties": False,
                                "properties": {"disabled": {"type": "boolean"}},
                            }
                        }
                    },
                },
            ),
        },
    }


def admin_audit_paths(ctx: Context) -> Paths:
    return {
        "/admin/audit": {
            "get": _admin(
                "The audit log, oldest first, paged by id",
                {
                    "200": json_body(
                        {
                            "type": "object",
                            "required": ["items", "next"],
                            "properties": {
                                "items": {"type": "array", "items": ref("AuditEvent")},
                                "next": {"type": "integer"},
                            },
                        },
                        "A page of events; pass `next` as `after` for the next page",
                    ),
                    "400": BAD_REQUEST,
                },
                parameters=[
                    {
                        "name": "after",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "description": "Clamped to 1…500 (default 100)",
                        "schema": {"type": "integer"},
                    },
                ],
            )
        }
    }


def metrics_paths(ctx: Context) -> Paths:
    return {
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics, all workers added up",
                "tags": ["health"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        }
    }


PathGroup = Callable[[Context], Paths]
PUBLIC_GROUPS: list[PathGroup] = [token_paths, session_paths, well_known_paths, ops_paths]
ADMIN_GROUPS: list[PathGroup] = [
    admin_key_paths,
    admin_client_paths,
    admin_user_paths,
    admin_audit_paths,
    metrics_paths,
    ops_paths,
]


def document(ctx: Context, groups: list[PathGroup], title: str, security: list[Doc]) -> Doc:
    paths: Paths = {}
    for group in groups:
        for path, item in group(ctx).items():
            paths.setdefault(path, {}).update(item)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__},
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
        "security": security,
    }


def public_document(ctx: Context) -> Doc:
    return document(ctx, PUBLIC_GROUPS, "issuer: public API", [])


def admin_document(ctx: Context) -> Doc:
    return document(ctx, ADMIN_GROUPS, "issuer: admin API", [{"adminBearer": []}])


def add_route(app: web.Application, build: Callable[[Context], Doc]) -> None:
    async def handle_openapi(request: web.Request) -> web.Response:
        return json_response(build(request.app[context_key]))

    app.router.add_get("/openapi.json", handle_openapi)
