"""The admin API, on its own listener: keys, clients, audit.

Every route needs ``Authorization: Bearer <access token of this issuer>`` whose
scope includes ``issuer:admin`` (RFC 6750 §2.1), verified offline against this
issuer's own published keys (:func:`issuer.http.auth.require_admin`). Every change
is written to the audit log.
"""

from __future__ import annotations

from aiohttp import web

from issuer.appkeys import context_key
from issuer.errors import InvalidRequestError
from issuer.http.auth import actor
from issuer.http.render import json_response
from issuer.http.requests import field, only_fields, only_query, read_json
from issuer.services import accounts, audit
from issuer.services.accounts import client_json

AUDIT_PAGE_MAX = 500


async def handle_list_keys(request: web.Request) -> web.Response:
    views = await request.app[context_key].keys.list_keys()
    return json_response({"keys": [v.as_json() for v in views]})


async def handle_rotate_key(request: web.Request) -> web.Response:
    body = await read_json(request)
    only_fields(body, {"immediate"})
    immediate = field(body, "immediate", bool, False)
    view = await request.app[context_key].keys.rotate(immediate=immediate, actor=actor(request))
    return json_response({"key": view.as_json()}, status=201)


async def handle_revoke_key(request: web.Request) -> web.Response:
    kid = request.match_info["kid"]
    view = await request.app[context_key].keys.revoke(kid, actor=actor(request))
    return json_response({"key": view.as_json()})


async def handle_list_clients(request: web.Request) -> web.Response:
    clients = await accounts.list_clients(request.app[context_key].store)
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
    new = await accounts.create_client(
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
    client = await accounts.set_client_disabled(
        ctx.store,
        ctx.settings,
        ctx.clock,
        request.match_info["client_id"],
        disabled=disabled,
        actor=actor(request),
    )
    return json_response(client_json(client))


async def handle_audit(request: web.Request) -> web.Response:
    only_query(request, {"after", "limit"})
    try:
        after = int(request.query.get("after", "0"))
        limit = min(AUDIT_PAGE_MAX, max(1, int(request.query.get("limit", "100"))))
    except ValueError:
        raise InvalidRequestError("after and limit must be integers") from None
    # Audit ids are 64-bit: a larger number would overflow the driver (a 500), not match.
    if not 0 <= after < 2**63:
        raise InvalidRequestError("after must be an audit id (0 or more)")
    page = await audit.list_audit(request.app[context_key].store, after=after, limit=limit)
    return json_response({"items": page.items, "next": page.next})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/keys", handle_list_keys)
    app.router.add_post("/admin/keys/rotate", handle_rotate_key)
    app.router.add_post("/admin/keys/{kid}/revoke", handle_revoke_key)
    app.router.add_get("/admin/clients", handle_list_clients)
    app.router.add_post("/admin/clients", handle_create_client)
    app.router.add_patch("/admin/clients/{client_id}", handle_patch_client)
    app.router.add_get("/admin/audit", handle_audit)
