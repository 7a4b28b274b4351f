"""Writing responses: JSON bodies, and the no-store headers of token responses (RFC 6749 §5.1)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from issuer.jsontext import json_str
from issuer.services.grants import TokenResponse

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# json.dumps with any option makes a new encoder per call; this one is made once.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_COMPACT.encode(body).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def token_response(result: TokenResponse) -> web.Response:
    # RFC 6749 §5.1: token responses must never be cached.
    return web.Response(body=token_body(result), content_type="application/json", headers=NO_STORE)


def token_body(result: TokenResponse) -> bytes:
    """``result.as_json()`` as compact JSON, written by hand: a quarter of the encoder's
    cost, on the endpoint every client calls. Its strings are JWS compact and random
    tokens (base64url and dots) and scope tokens (RFC 6749 §3.3: printable ASCII, no
    quote, no backslash), which JSON writes as they are; ``json_str`` still escapes
    anything else as the encoder would."""
    body = (
        f'{{"access_token":{json_str(result.access_token)},"token_type":"Bearer",'
        f'"expires_in":{int(result.expires_in)},"scope":{json_str(result.scope)}'
    )
    if result.refresh_token is not None:
        body += f',"refresh_token":{json_str(result.refresh_token)}'
    if result.id_token is not None:
        body += f',"id_token":{json_str(result.id_token)}'
    return (body + "}").encode()
