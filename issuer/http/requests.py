"""Reading admin requests: JSON object bodies and query parameters.

OAuth form bodies (RFC 6749 §3.2) are read by :mod:`issuer.http.forms`.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from issuer.errors import InvalidRequestError


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body = dict(pairs)
    if len(body) != len(pairs):
        # {"name": "a", "name": "b"}: which one did the operator mean?
        raise InvalidRequestError("a JSON member is repeated")
    return body


async def read_json(request: web.Request) -> dict[str, Any]:
    """A JSON object body; an empty body counts as ``{}``."""
    raw = await request.read()
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
    unknown = set(request.query) - allowed
    if unknown:
        raise InvalidRequestError(f"unknown parameter {sorted(unknown)[0][:40]!r}")
