"""The OpenAPI operations of the session and user routes: valid 3.1, complete, and built
from the validators (a pattern copied by hand once disagreed with the code)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from issuer.appkeys import admin_app_key
from issuer.http import sessions, users
from issuer.http.openapi import document, paths_of
from issuer.services.users import ROLE_PATTERN

MINE = {sessions.__name__, users.__name__}


def my_routes(app: web.Application) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        if getattr(route.handler, "__module__", None) in MINE:
            out.add((route.resource.canonical, route.method.lower()))
    return out


def documented(paths: dict[str, Any], of: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in paths.items() for method in item} & of


def test_the_operations_are_valid_and_cover_exactly_these_routes(app: web.Application) -> None:
    for listener in (app, app[admin_app_key]):
        validate(document(listener, "t", []))
        mine = my_routes(listener)
        assert mine
        assert documented(paths_of(listener), mine) == mine


async def test_the_role_pattern_is_the_validators(admin: TestClient[Any, Any]) -> None:
    doc = await (await admin.get("/openapi.json")).json()
    schema = doc["paths"]["/admin/users"]["post"]["requestBody"]["content"]["application/json"]
    role = schema["schema"]["properties"]["roles"]["items"]["pattern"]
    assert ROLE_PATTERN in role
    # JSON Schema's "$" does not match before a final newline, unlike Python's re.match.
    assert re.search(role.replace("$", r"\Z"), "issuer:admin")
    assert not re.search(role.replace("$", r"\Z"), "issuer:admin\n")
