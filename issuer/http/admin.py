"""The admin API, on its own listener: keys, clients, audit.

Every route needs ``Authorization: Bearer <access token of this issuer>`` whose
scope includes ``issuer:admin`` (RFC 6750 §2.1), verified offline against this
issuer's own published keys. Every change is written to the audit log.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from issuer.appkeys import claims_key, context_key
from issuer.errors import (
    InsufficientScopeError,
    InvalidRequestError,
    InvalidTokenError,
    MissingTokenError,
)
from issuer.http.forms import require_storable
from issuer.http.middleware import Handler, json_response
from issuer.services.accounts import create_client, set_client_disabled
from issuer.verifier.core import verify_token
from issuer.verifier.errors import TokenError

ADMIN_SCOPE = "issuer:admin"


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization")
    if header is None:
        raise MissingTokenError()
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidTokenError("expected Authorization: Bearer <token>")
    return token.strip()


async def authenticate(request: web.Request) -> dict[str, Any]:
    """The claims of the request's bearer token, verified offline; 401 otherwise."""
    ctx = request.app[context_key]
    keyring = ctx.keyring
    token = bearer_token(request)
    try:
        claims = verify_token(
            token,
            keyring.snapshot().verification_keys,
            keyring.verification_policy(),
            ctx.clock.now().timestamp(),
        )
    except TokenError as exc:
        raise InvalidTokenError(f"the access token is invalid ({exc.reason})") from None
    for check in ctx.token_checks:
        await check(request, claims)
    return claims


@web.middleware
async def require_admin(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in ("/livez", "/readyz", "/metrics", "/openapi.json"):
        return await handler(request)
    claims = await authenticate(request)
    if ADMIN_SCOPE not in str(claims.get("scope", "")).split():
        raise InsufficientScopeError(ADMIN_SCOPE, f"this API needs the {ADMIN_SCOPE} scope")
    if claims.get("sub") != claims.get("client_id"):
        # A user's token: the client may hold the scope (a first-party admin console),
        # but only users given the role may use it, or every user of that client
        # would be an administrator.
        roles = claims.get("roles")
        if not isinstance(roles, list) or ADMIN_SCOPE not in roles:
            raise InsufficientScopeError(
                ADMIN_SCOPE, f"this user lacks the {ADMIN_SCOPE} role for this API"
            )
    request[claims_key] = claims
    return await handler(request)


def actor(request: web.Request) -> str:
    return f"token:{request[claims_key].get('sub', '?')}"


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


async def handle_list_keys(request: web.Request) -> web.Response:
    keyring = request.app[context_key].keyring
    await keyring.load()
    return json_response({"keys": [v.as_json() for v in reversed(keyring.views())]})


async def handle_rotate_key(request: web.Request) -> web.Response:
    body = await read_json(request)
    only_fields(body, {"immediate"})
    immediate = field(body, "immediate", bool, False)
    view = await request.app[context_key].keyring.rotate(immediate=immediate, actor=actor(request))
    return json_response({"key": view.as_json()}, status=201)


async def handle_revoke_key(request: web.Request) -> web.Response:
    kid = request.match_info["kid"]
    view = await request.app[context_key].keyring.revoke(kid, actor=actor(request))
    return json_response({"key": view.as_json()})


def client_json(client: Any) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "scopes": list(client.scopes),
        "first_party": client.first_party,
        "public": client.public,
        "disabled": client.disabled,
        "created_at": client.created_at.isoformat().replace("+00:00", "Z"),
    }


async def handle_list_clients(request: web.Request) -> web.Response:
    clients = await request.app[context_key].store.list_clients()
    return json_response({"clients": [client_json(c) for c in clients]})


async def handle_create_client(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    body = await read_json(request)
    only_fields(body, {"name", "scopes", "first_party", "public"})
    name = field(body, "name", str)
    if name is None:
        raise InvalidRequestError("name is required")
    scopes = field(body, "scopes", list, [])
    if not all(isinstance(s, str) for s in scopes):
        raise InvalidRequestError("scopes must be a list of strings")
    new = await create_client(
        ctx.store,
        ctx.clock,
        name=name,
        scopes=scopes,
        first_party=field(body, "first_party", bool, False),
        public=field(body, "public", bool, False),
        actor=actor(request),
    )
    out = client_json(new.client)
    if new.client_secret is not None:
        out["client_secret"] = new.client_secret
    return json_response(out, status=201, headers={"Cache-Control": "no-store"})


async def handle_patch_client(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    body = await read_json(request)
    only_fields(body, {"disabled"})
    disabled = field(body, "disabled", bool)
    if disabled is None:
        raise InvalidRequestError("disabled is required")
    client = await set_client_disabled(
        ctx.store,
        ctx.settings,
        ctx.clock,
        request.match_info["client_id"],
        disabled=disabled,
        actor=actor(request),
    )
    return json_response(client_json(client))


async def handle_audit(request: web.Request) -> web.Response:
    unknown = set(request.query) - {"after", "limit"}
    if unknown:
        raise InvalidRequestError(f"unknown parameter {sorted(unknown)[0][:40]!r}")
    try:
        after = int(request.query.get("after", "0"))
        limit = min(500, max(1, int(request.query.get("limit", "100"))))
    except ValueError:
        raise InvalidRequestError("after and limit must be integers") from None
    # Audit ids are 64-bit: a larger number would overflow the driver (a 500), not match.
    if not 0 <= after < 2**63:
        raise InvalidRequestError("after must be an audit id (0 or more)")
    events = await request.app[context_key].store.list_audit(after=after, limit=limit)
    items = [
        {
            "id": e.id,
            "at": e.at.isoformat().replace("+00:00", "Z"),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "detail": e.detail,
        }
        for e in events
    ]
    return json_response({"items": items, "next": items[-1]["id"] if items else after})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/keys", handle_list_keys)
    app.router.add_post("/admin/keys/rotate", handle_rotate_key)
    app.router.add_post("/admin/keys/{kid}/revoke", handle_revoke_key)
    app.router.add_get("/admin/clients", handle_list_clients)
    app.router.add_post("/admin/clients", handle_create_client)
    app.router.add_patch("/admin/clients/{client_id}", handle_patch_client)
    app.router.add_get("/admin/audit", handle_audit)
    from issuer.http import users  # imported here: it builds on this module

    users.add_routes(app)
