"""The admin API for users: create, list, show, change, and cut off every session.

Mounted on the admin listener by :func:`issuer.app.create_app`, behind the
same ``issuer:admin`` bearer check; every change goes to the audit log.
"""

from __future__ import annotations

from aiohttp import web

from issuer.appkeys import context_key
from issuer.errors import InvalidRequestError
from issuer.http.auth import actor
from issuer.http.operations import (
    BAD_REQUEST,
    TOO_LARGE,
    Doc,
    admin,
    error,
    json_body,
    json_request,
    operation,
    page,
    pattern,
    query,
)
from issuer.http.render import json_response
from issuer.http.requests import field, only_fields, only_query, read_json
from issuer.services import users
from issuer.services.passwords import MAX_PASSWORD, MIN_NEW_PASSWORD
from issuer.services.users import user_json

PAGE_MAX = 500
ROLE = {"type": "string", "pattern": pattern(users.ROLE_PATTERN)}
PASSWORD = {"type": "string", "minLength": MIN_NEW_PASSWORD, "maxLength": MAX_PASSWORD}
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
ONE_USER = json_body(USER, "The user (never its password hash)")
USER_NOT_FOUND = error("No such user")


@operation(
    admin(
        "Create a user",
        {
            "201": ONE_USER,
            "400": BAD_REQUEST,
            "409": error("The username is taken (compared after NFKC, any case)"),
            "413": TOO_LARGE,
        },
        requestBody=json_request(
            {
                "type": "object",
                "required": ["username", "password"],
                "additionalProperties": False,
                "properties": {
                    "username": {"type": "string", "minLength": 1, "maxLength": users.MAX_USERNAME},
                    "password": PASSWORD,
                    "roles": {"type": "array", "items": ROLE},
                },
            }
        ),
    )
)
async def handle_create_user(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    body = await read_json(request)
    only_fields(body, {"username", "password", "roles"})
    username = field(body, "username", str)
    password = field(body, "password", str)
    if username is None or password is None:
        raise InvalidRequestError("username and password are required")
    user = await users.create_user(
        ctx.store,
        ctx.clock,
        username=username,
        password=password,
        roles=field(body, "roles", list, []),
        actor=actor(request),
    )
    return json_response(user_json(user), status=201)


@operation(
    admin(
        "Users in username order, paged",
        {
            "200": json_body(
                page(USER, {"type": ["string", "null"]}),
                "A page; pass `next` as `after` while it is not null",
            ),
            "400": BAD_REQUEST,
        },
        parameters=[
            query("after", {"type": "string"}),
            query("limit", {"type": "integer"}, f"Clamped to 1…{PAGE_MAX} (default 100)"),
        ],
    )
)
async def handle_list_users(request: web.Request) -> web.Response:
    only_query(request, {"after", "limit"})
    try:
        limit = min(PAGE_MAX, max(1, int(request.query.get("limit", "100"))))
    except ValueError:
        raise InvalidRequestError("limit must be an integer") from None
    after = request.query.get("after")
    if after is not None and ("\x00" in after or len(after) > 4 * users.MAX_USERNAME):
        raise InvalidRequestError("after must be a next value of this endpoint")
    items, nxt = await users.list_users(request.app[context_key].store, after=after, limit=limit)
    return json_response({"items": items, "next": nxt})


@operation(admin("One user", {"200": ONE_USER, "404": USER_NOT_FOUND}))
async def handle_get_user(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    user = await users.find_user(ctx.store, user_id=request.match_info["id"])
    return json_response(user_json(user))


@operation(
    admin(
        "Change roles, disabled or password",
        {"200": ONE_USER, "400": BAD_REQUEST, "404": USER_NOT_FOUND, "413": TOO_LARGE},
        requestBody=json_request(
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "roles": {"type": "array", "items": ROLE},
                    "disabled": {"type": "boolean"},
                    "password": PASSWORD,
                },
            }
        ),
    )
)
async def handle_patch_user(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    body = await read_json(request)
    only_fields(body, {"roles", "disabled", "password"})
    user = await users.update_user(
        ctx.store,
        ctx.clock,
        ctx.settings,
        request.match_info["id"],
        roles=field(body, "roles", list),
        disabled=field(body, "disabled", bool),
        password=field(body, "password", str),
        actor=actor(request),
    )
    return json_response(user_json(user))


@operation(
    admin(
        "End every session of the user and cut off their access tokens",
        {
            "200": json_body(
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
            "404": USER_NOT_FOUND,
        },
    )
)
async def handle_revoke_user_tokens(request: web.Request) -> web.Response:
    ctx = request.app[context_key]
    user_id = request.match_info["id"]
    families = await users.revoke_user_tokens(
        ctx.store, ctx.clock, ctx.settings, user_id, actor=actor(request)
    )
    return json_response({"id": user_id, "revoked_families": families})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/admin/users", handle_create_user)
    app.router.add_get("/admin/users", handle_list_users)
    app.router.add_get("/admin/users/{id}", handle_get_user)
    app.router.add_patch("/admin/users/{id}", handle_patch_user)
    app.router.add_post("/admin/users/{id}/revoke-tokens", handle_revoke_user_tokens)
