"""OpenAPI 3.1 operations carried by their handlers, and the pieces they share.

A handler declares what it accepts and answers with :func:`operation`; the
document (:mod:`issuer.http.openapi`) walks the router, so a route cannot exist
undocumented or be documented without existing. Patterns and limits are taken
from the validators (:func:`pattern` anchors a validator's regular expression).
Errors are RFC 6749 §5.2 bodies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

Doc = dict[str, Any]
H = TypeVar("H", bound=Callable[..., Any])
_ATTRIBUTE = "__openapi_operation__"


def operation(op: Doc) -> Callable[[H], H]:
    """Attach the OpenAPI operation object ``op`` to a handler."""

    def attach(handler: H) -> H:
        setattr(handler, _ATTRIBUTE, op)
        return handler

    return attach


def operation_of(handler: object) -> Doc | None:
    op = getattr(handler, _ATTRIBUTE, None)
    return op if isinstance(op, dict) else None


def pattern(regex: str) -> str:
    """A validator's regex (used with ``fullmatch``) as a JSON Schema pattern."""
    return f"^(?:{regex})$"


_STRINGS: Doc = {"type": "array", "items": {"type": "string"}}
# A client's settings, as the admin API takes them and as a client record shows them.
CLIENT_SETTINGS: Doc = {
    "scopes": _STRINGS,
    "first_party": {"type": "boolean"},
    "public": {"type": "boolean"},
    "redirect_uris": {
        **_STRINGS,
        "description": "Compared exactly (loopback IP redirects: any port, RFC 8252 §7.3)",
    },
    "post_logout_redirect_uris": _STRINGS,
    "web_origins": {
        **_STRINGS,
        "description": "CORS origins; default: the origins of the http(s) redirect URIs",
    },
}


def ref(name: str) -> Doc:
    return {"$ref": f"#/components/schemas/{name}"}


def header(description: str) -> Doc:
    return {"description": description, "schema": {"type": "string"}}


def json_body(schema: Doc, description: str, headers: Doc | None = None) -> Doc:
    out: Doc = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def error(description: str, headers: Doc | None = None) -> Doc:
    return json_body(ref("OAuthError"), description, headers)


def listing(member: str, items: Doc) -> Doc:
    """``{member: [items]}``: a whole collection."""
    return {
        "type": "object",
        "required": [member],
        "properties": {member: {"type": "array", "items": items}},
    }


def page(items: Doc, next_cursor: Doc, max_items: int | None = None) -> Doc:
    """One page of a paged list: ``{"items": [...], "next": cursor}`` (``next`` -> ``after``)."""
    array: Doc = {"type": "array", "items": items}
    if max_items is not None:
        array["maxItems"] = max_items
    return {
        "type": "object",
        "required": ["items", "next"],
        "properties": {"items": array, "next": next_cursor},
    }


def form_body(properties: Doc, required: list[str], *, optional: bool = False) -> Doc:
    schema: Doc = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return {
        "required": not optional,
        "content": {"application/x-www-form-urlencoded": {"schema": schema}},
    }


def json_request(schema: Doc, *, required: bool = True) -> Doc:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def query(name: str, schema: Doc, description: str | None = None) -> Doc:
    out: Doc = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        out["description"] = description
    return out


BAD_REQUEST = error("Malformed request (`invalid_request` and friends)")
TOO_LARGE = error("Request body larger than 64 KiB")
NOT_FOUND = error("No such resource")
UNAVAILABLE = error(
    "No signing key is available right now, or the database is unavailable "
    "(`temporarily_unavailable`)",
    {"Retry-After": header("Seconds (when the database is unavailable)")},
)
DATABASE_UNAVAILABLE = error(
    "The database is unreachable, stalled or busy past its bounds (`temporarily_unavailable`)",
    {"Retry-After": header("Seconds")},
)
NO_STORE_DOC = {"Cache-Control": header("no-store (RFC 6749 §5.1)")}
CLIENT_401 = error(
    "Client authentication failed (`invalid_client`)",
    {"WWW-Authenticate": header("The Basic challenge")},
)
BEARER_401 = error(
    "Missing, invalid, expired or revoked bearer token (RFC 6750 §3.1)",
    {"WWW-Authenticate": header("The Bearer challenge")},
)
# Basic, or client_id (and secret) in the form (RFC 6749 §2.3.1).
CLIENT_AUTH: list[Doc] = [{"clientBasic": []}, {}]
CLIENT_FIELDS: Doc = {
    "client_id": {"type": "string", "description": "client_secret_post, or a public client"},
    "client_secret": {"type": "string", "description": "client_secret_post"},
}


def admin(summary: str, responses: Doc, **extra: Any) -> Doc:
    """An admin API operation: the bearer errors every admin route can answer."""
    bearer = {
        "401": BEARER_401,
        "403": error(
            "The token lacks the issuer:admin scope (`insufficient_scope`)",
            {"WWW-Authenticate": header("The Bearer challenge, with the scope needed")},
        ),
    }
    return {"summary": summary, "tags": ["admin"], "responses": {**responses, **bearer}, **extra}


def unauthenticated(summary: str, tag: str, responses: Doc, **extra: Any) -> Doc:
    return {"summary": summary, "tags": [tag], "security": [], "responses": responses, **extra}
