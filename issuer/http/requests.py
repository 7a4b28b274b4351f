"""Reading requests: JSON object bodies, query parameters, and text no store can hold.

OAuth form bodies (RFC 6749 §3.2) are read by :mod:`issuer.http.forms`, with the
same :func:`require_storable` check.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from issuer.appkeys import body_key
from issuer.errors import InvalidRequestError


def storable(text: str) -> bool:
    """Text every store can hold: Unicode scalar values only (no lone surrogate, which
    UTF-8 cannot encode, RFC 3629 §3) and no NUL (PostgreSQL's text type refuses it)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def require_storable(text: str, what: str) -> str:
    if not storable(text):
        raise InvalidRequestError(f"{what} contains a NUL or an invalid Unicode character")
    return text


def _storable_strings(value: Any, what: str) -> None:
    if isinstance(value, str):
        require_storable(value, what)
    elif isinstance(value, list):
        for item in value:
            _storable_strings(item, what)


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    for name, value in pairs:
        # "\ud800" and "\u0000" are valid JSON escapes, but no store can hold them.
        # (Nested objects have been through this hook already.)
        require_storable(name, "a JSON member name")
        _storable_strings(value, f"JSON member {name[:40]!r}")
    body = dict(pairs)
    if len(body) != len(pairs):
        # {"name": "a", "name": "b"}: which one did the operator mean?
        raise InvalidRequestError("a JSON member is repeated")
    return body


async def body_of(request: web.Request) -> bytes:
    """The request's body: what the edge read (``middleware._read_body``), else read now."""
    body = request.get(body_key)
    return body if body is not None else await request.read()


async def read_json(request: web.Request) -> dict[str, Any]:
    """A JSON object body; an empty body counts as ``{}``."""
    raw = await body_of(request)
    if not raw.strip():
        return {}
    if request.content_type != "application/json":
        raise InvalidRequestError("the body must be application/json")
    try:
        body = json.loads(raw, object_pairs_hook=_unique_members)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequestError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a JSON object")
    return body


def only_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise InvalidRequestError(f"unknown field {sorted(unknown)[0][:40]!r}")


def field(body: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    """``body[name]`` if it is a ``kind``, ``default`` when absent; null is not absent (400)."""
    if name not in body:
        return default
    value = body[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRequestError(f"{name} must be a {kind.__name__}")
    return value


def only_query(request: web.Request, allowed: set[str]) -> None:
    """Only these query parameters, each holding text a store can hold."""
    unknown = set(request.query) - allowed
    if unknown:
        name = sorted(unknown)[0]
        require_storable(name, "a query parameter name")
        raise InvalidRequestError(f"unknown parameter {name[:40]!r}")
    for name, value in request.query.items():
        require_storable(value, f"query parameter {name}")
