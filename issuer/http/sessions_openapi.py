"""OpenAPI 3.1 path groups for the session and user routes.

Each function has the shape of ``issuer.http.openapi``'s path groups (a
``Context`` in, ``{path: path item}`` out): add ``session_paths`` to its
``PUBLIC_GROUPS``, ``admin_user_paths`` to its ``ADMIN_GROUPS``, and
``SECURITY_SCHEMES`` to its security schemes (``/logout`` takes any user's access
token, not the admin's). Errors refer to that document's ``OAuthError`` schema
and its ``clientBasic`` and ``adminBearer`` schemes; everything else is inline.
"""

from __future__ import annotations

from typing import Any

from issuer.context import Context
from issuer.services.passwords import MAX_PASSWORD, MIN_NEW_PASSWORD
from issuer.services.revocation import FEED_PAGE
from issuer.services.users import MAX_USERNAME

Doc = dict[str, Any]
ERROR = {"$ref": "#/components/schemas/OAuthError"}
NO_STORE = {"Cache-Control": {"description": "no-store", "schema": {"type": "string"}}}
CLIENT_AUTH: list[Doc] = [{"clientBasic": []}, {}]  # Basic, or client_id (+secret) in the form
SECURITY_SCHEMES: Doc = {
    "userBearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token of this issuer (RFC 6750 §2.1)",
    }
}


def _error(description: str, headers: Doc | None = None) -> Doc:
    out: Doc = {"description": description, "content": {"application/json": {"schema": ERROR}}}
    if headers:
        out["headers"] = headers
    return out


def _json(schema: Doc, description: str, headers: Doc | None = None) -> Doc:
    out: Doc = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _form(properties: Doc, required: list[str]) -> Doc:
    schema = {"type": "object", "required": required, "properties": properties}
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema}}}


BAD_REQUEST = _error("Malformed request (`invalid_request` and friends)")
TOO_LARGE = _error("Request body larger than 64 KiB")
CLIENT_401 = _error(
    "Client authentication failed (`invalid_client`)",
    {"WWW-Authenticate": {"description": "The Basic challenge", "schema": {"type": "string"}}},
)
BEARER_401 = _error(
    "Missing, invalid, expired or revoked bearer token (RFC 6750 §3.1)",
    {"WWW-Authenticate": {"description": "The Bearer challenge", "schema": {"type": "string"}}},
)
CLIENT_FIELDS: Doc = {
    "client_id": {"type": "string", "description": "client_secret_post, or a public client"},
    "client_secret": {"type": "string", "description": "client_secret_post"},
}
ROLE = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}
USER: Doc = {
    "type": "object",
    "required": ["id", "username", "roles", "disabled", "created_at", "updated_at"],
    "properties": {
        "id": {"type": "string", "description": "Stable random id: the sub of the user's tokens"},
        "username": {"type": "string"},
        "roles": {"type": "array", "items": {"type": "string"}},
        "disabled": {"type": "boolean"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}
PASSWORD = {"type": "string", "minLength": MIN_NEW_PASSWORD, "maxLength": MAX_PASSWORD}


def session_paths(ctx: Context) -> dict[str, Doc]:
    feed_item = {
        "oneOf": [
            {
                "type": "object",
                "required": ["jti", "exp"],
                "properties": {"jti": {"type": "string"}, "exp": {"type": "integer"}},
            },
            {
                "type": "object",
                "required": ["sub", "revoked_before"],
                "properties": {"sub": {"type": "string"}, "revoked_before": {"type": "integer"}},
            },
            {
                "type": "object",
                "description": "The signing key `kid` was revoked at `revoked_at`: refuse every"
                " token it signed, whatever a cached JWKS says",
                "required": ["kid", "revoked_at"],
                "properties": {"kid": {"type": "string"}, "revoked_at": {"type": "integer"}},
            },
        ]
    }
    return {
        "/logout": {
            "post": {
                "summary": "End the session of the bearer token: deny-list it, revoke its family",
                "tags": ["oauth"],
                "security": [{"userBearer": []}],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "properties": {"refresh_token": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {
                    "204": {"description": "Logged out", "headers": NO_STORE},
                    "400": BAD_REQUEST,
                    "401": BEARER_401,
                    "413": TOO_LARGE,
                },
            }
        },
        "/revoke": {
            "post": {
                "summary": "Revoke a refresh token (its family) or an access token (RFC 7009)",
                "tags": ["oauth"],
                "security": CLIENT_AUTH,
                "requestBody": _form(
                    {
                        "token": {"type": "string"},
                        "token_type_hint": {"type": "string"},
                        **CLIENT_FIELDS,
                    },
                    ["token"],
                ),
                "responses": {
                    "200": {
                        "description": "Revoked, or unknown / already revoked (RFC 7009 §2.2)",
                        "headers": NO_STORE,
                    },
                    "400": _error("Malformed, or the token belongs to another client"),
                    "401": CLIENT_401,
                    "413": TOO_LARGE,
                },
            }
        },
        "/introspect": {
            "post": {
                "summary": "Token introspection (RFC 7662); a confidential client only",
                "tags": ["oauth"],
                "security": [{"clientBasic": []}, {}],
                "requestBody": _form({"token": {"type": "string"}, **CLIENT_FIELDS}, ["token"]),
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["active"],
                            "properties": {
                                "active": {"type": "boolean"},
                                "token_type": {"enum": ["Bearer", "refresh_token"]},
                            },
                        },
                        '`{"active": false}`, or the claims with `active` and `token_type`',
                        NO_STORE,
                    ),
                    "400": BAD_REQUEST,
                    "401": CLIENT_401,
                    "413": TOO_LARGE,
                },
            }
        },
        "/revocations": {
            "get": {
                "summary": "The revocation feed for offline verifiers",
                "tags": ["oauth"],
                "security": [{"clientBasic": []}],
                "parameters": [
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "description": "The `next` of the previous page; absent: from the start",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    }
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["items", "next"],
                            "properties": {
                                "items": {
                                    "type": "array",
                                    "maxItems": FEED_PAGE,
                                    "items": feed_item,
                                },
                                "next": {"type": "string"},
                            },
                        },
                        "Live entries after the cursor, oldest first",
                        NO_STORE,
                    ),
                    "400": BAD_REQUEST,
                    "401": CLIENT_401,
                },
            }
        },
    }


def _admin(summary: str, responses: Doc, **extra: Any) -> Doc:
    bearer = {
        "401": BEARER_401,
        "403": _error("The token lacks the issuer:admin scope (`insufficient_scope`)"),
    }
    return {"summary": summary, "tags": ["admin"], "responses": {**responses, **bearer}, **extra}


def admin_user_paths(ctx: Context) -> dict[str, Doc]:
    user_id = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    one = _json(USER, "The user (never its password hash)")
    not_found = _error("No such user")
    create = {
        "type": "object",
        "required": ["username", "password"],
        "additionalProperties": False,
        "properties": {
            "username": {"type": "string", "minLength": 1, "maxLength": MAX_USERNAME},
            "password": PASSWORD,
            "roles": {"type": "array", "items": ROLE},
        },
    }
    change = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "roles": {"type": "array", "items": ROLE},
            "disabled": {"type": "boolean"},
            "password": PASSWORD,
        },
    }
    return {
        "/admin/users": {
            "get": _admin(
                "Users in username order, paged",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["items", "next"],
                            "properties": {
                                "items": {"type": "array", "items": USER},
                                "next": {"type": ["string", "null"]},
                            },
                        },
                        "A page; pass `next` as `after` while it is not null",
                    ),
                    "400": BAD_REQUEST,
                },
                parameters=[
                    {"name": "after", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "description": "Clamped to 1…500 (default 100)",
                        "schema": {"type": "integer"},
                    },
                ],
            ),
            "post": _admin(
                "Create a user",
                {
                    "201": one,
                    "400": BAD_REQUEST,
                    "409": _error("The username is taken (compared after NFKC, any case)"),
                    "413": TOO_LARGE,
                },
                requestBody={"required": True, "content": {"application/json": {"schema": create}}},
            ),
        },
        "/admin/users/{id}": {
            "get": _admin("One user", {"200": one, "404": not_found}, parameters=user_id),
            "patch": _admin(
                "Change roles, disabled or password",
                {"200": one, "400": BAD_REQUEST, "404": not_found, "413": TOO_LARGE},
                parameters=user_id,
                requestBody={"required": True, "content": {"application/json": {"schema": change}}},
            ),
        },
        "/admin/users/{id}/revoke-tokens": {
            "post": _admin(
                "End every session of the user and cut off their access tokens",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["id", "revoked_families"],
                            "properties": {
                                "id": {"type": "string"},
                                "revoked_families": {"type": "integer", "minimum": 0},
                            },
                        },
                        "Done",
                    ),
                    "404": not_found,
                },
                parameters=user_id,
            )
        },
    }
