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
from issuer.http.operations import (
    BAD_REQUEST,
    CLIENT_SETTINGS,
    NOT_FOUND,
    TOO_LARGE,
    admin,
    error,
    json_body,
    json_request,
    listing,
    operation,
    page,
    query,
    ref,
)
from issuer.http.render import json_response
from issuer.http.requests import field, only_fields, only_query, read_json
from issuer.services import accounts, audit
from issuer.services.accounts import client_json

AUDIT_PAGE_MAX = 500
AUDIT_ID_MAX = 2**63 - 1  # audit ids are 64-bit: a larger number would overflow the driver
ONE_KEY = json_body(
    {"type": "object", "required": ["key"], "properties": {"key": ref("Key")}}, "The key"
)
KID = [{"name": "kid", "in": "path", "required": True, "schema": {"type": "string"}}]
CLIENT_REF = [
    {
        "name": "client_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "The client_id, or the client's name",
    }
]


@operation(
    admin(
        "Every signing key with its state",
        {"200": json_body(listing("keys", ref("Key")), "Keys, newest first")},
    )
)
async def handle_list_keys(request: web.Request) -> web.Response:
    views = await request.app[context_key].keys.list_keys()
    return json_response({"keys": [v.as_json() for v in views]})


@operation(
    admin(
        "Publish a new key",
        {"201": ONE_KEY, "400": BAD_REQUEST, "413": TOO_LARGE},
        requestBody=json_request(
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "immediate": {
                        "type": "boolean",
                        "description": "Sign with the new key at once (emergency) instead of "
                        "after the publish lead",
                    }
                },
            },
            required=False,
        ),
    )
)
async def handle_rotate_key(request: web.Request) -> web.Response:
    body = await read_json(request)
    only_fields(body, {"immediate"})
    immediate = field(body, "immediate", bool, False)
    view = await request.app[context_key].keys.rotate(immediate=immediate, actor=actor(request))
    return json_response({"key": view.as_json()}, status=201)


@operation(
    admin(
        "Withdraw a key from the JWKS at once; a fresh key signs if it was the signer",
        {"200": ONE_KEY, "404": NOT_FOUND},
        parameters=KID,
    )
)
async def handle_revoke_key(request: web.Request) -> web.Response:
    kid = request.match_info["kid"]
    view = await request.app[context_key].keys.revoke(kid, actor=actor(request))
    return json_response({"key": view.as_json()})


@operation(
    admin(
        "Every client",
        {"200": json_body(listing("clients", ref("Client")), "Clients")},
    )
)
async def handle_list_clients(request: web.Request) -> web.Response:
    clients = await accounts.list_clients(request.app[context_key].store)
    return json_response({"clients": [client_json(c) for c in clients]})


@operation(
    admin(
        "Register a client; a confidential client's secret is shown this once",
        {
            "201": json_body(ref("Client"), "The new client"),
            "400": BAD_REQUEST,
            "409": error("A client with this name exists (`conflict`)"),
            "413": TOO_LARGE,
        },
        requestBody=json_request(
            {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": accounts.MAX_CLIENT_NAME,
                    },
                    **CLIENT_SETTINGS,
                },
            }
        ),
    )
)
async def handle_create_client(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    body = await read_json(request)
    only_fields(
        body,
        {
            "name",
            "scopes",
            "first_party",
            "public",
            "redirect_uris",
            "post_logout_redirect_uris",
            "web_origins",
        },
    )
    name = field(body, "name", str)
    if name is None:
        raise InvalidRequestError("name is required")
    lists: dict[str, list[str] | None] = {}
    for name_ in ("scopes", "redirect_uris", "post_logout_redirect_uris", "web_origins"):
        value = field(body, name_, list)
        if value is not None and not all(isinstance(s, str) for s in value):
            raise InvalidRequestError(f"{name_} must be a list of strings")
        lists[name_] = value
    new = await accounts.create_client(
        ctx.store,
        ctx.clock,
        name=name,
        scopes=lists["scopes"] or [],
        first_party=field(body, "first_party", bool, False),
        public=field(body, "public", bool, False),
        redirect_uris=lists["redirect_uris"] or [],
        post_logout_redirect_uris=lists["post_logout_redirect_uris"] or [],
        web_origins=lists["web_origins"],
        actor=actor(request),
    )
    out = client_json(new.client)
    if new.client_secret is not None:
        out["client_secret"] = new.client_secret
    return json_response(out, status=201, headers={"Cache-Control": "no-store"})


@operation(
    admin(
        "Disable or enable a client; disabling also cuts off every token it holds",
        {
            "200": json_body(ref("Client"), "The client"),
            "400": BAD_REQUEST,
            "404": NOT_FOUND,
            "413": TOO_LARGE,
        },
        parameters=CLIENT_REF,
        requestBody=json_request(
            {
                "type": "object",
                "required": ["disabled"],
                "additionalProperties": False,
                "properties": {"disabled": {"type": "boolean"}},
            }
        ),
    )
)
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
        cache=ctx.clients,
    )
    return json_response(client_json(client))


@operation(
    admin(
        "The audit log, oldest first, paged by id",
        {
            "200": json_body(
                page(ref("AuditEvent"), {"type": "string", "pattern": "^[0-9]+$"}),
                "A page of events; pass `next` as `after` for the next page",
            ),
            "400": BAD_REQUEST,
        },
        parameters=[
            query("after", {"type": "integer", "minimum": 0, "maximum": AUDIT_ID_MAX}),
            query(
                "limit",
                {"type": "integer"},
                f"Clamped to 1…{AUDIT_PAGE_MAX} (default 100)",
            ),
        ],
    )
)
async def handle_audit(request: web.Request) -> web.Response:
    only_query(request, {"after", "limit"})
    try:
        after = int(request.query.get("after", "0"))
        limit = min(AUDIT_PAGE_MAX, max(1, int(request.query.get("limit", "100"))))
    except ValueError:
        raise InvalidRequestError("after and limit must be integers") from None
    if not 0 <= after <= AUDIT_ID_MAX:
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
