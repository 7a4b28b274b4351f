"""Writing responses: JSON bodies, and the no-store headers of token responses (RFC 6749 §5.1)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from issuer.services.grants import TokenResponse

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def token_response(result: TokenResponse) -> web.Response:
    # RFC 6749 §5.1: token responses must never be cached.
    return json_response(result.as_json(), headers=NO_STORE)
