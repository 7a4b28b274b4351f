"""The OpenAPI path groups of the session and user routes: valid 3.1, and complete."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from openapi_spec_validator import validate

from issuer.appkeys import admin_app_key
from issuer.context import Context
from issuer.http import sessions, users
from issuer.http.sessions_openapi import SECURITY_SCHEMES, admin_user_paths, session_paths

MINE = {sessions.__name__, users.__name__}


def my_routes(app: web.Application) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        if getattr(route.handler, "__module__", None) in MINE:
            out.add((route.resource.canonical, route.method.lower()))
    return out


def documented(paths: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in paths.items() for method in item}


def as_document(paths: dict[str, Any]) -> dict[str, Any]:
    # The parts of issuer.http.openapi's document that these groups refer to.
    return {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "0"},
        "paths": paths,
        "components": {
            "schemas": {"OAuthError": {"type": "object", "required": ["error"]}},
            "securitySchemes": {
                "clientBasic": {"type": "http", "scheme": "basic"},
                "adminBearer": {"type": "http", "scheme": "bearer"},
                **SECURITY_SCHEMES,
            },
        },
    }


def test_the_groups_are_valid_and_cover_exactly_these_routes(
    app: web.Application, ctx: Context
) -> None:
    public, admin = session_paths(ctx), admin_user_paths(ctx)
    validate(as_document(public))
    validate(as_document(admin))
    assert documented(public) == my_routes(app)
    assert documented(admin) == my_routes(app[admin_app_key])
