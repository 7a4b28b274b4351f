"""Property: no input makes any route answer 5xx; bad input gets a documented 4xx.

The routes come from walking both apps' routers, so a new route is covered
without touching this file. Hypothesis feeds each one arbitrary path segments
(NUL, lone surrogates, invalid UTF-8 escapes), query strings, form bodies and
JSON bodies, with real credentials often enough to get past authentication.
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from yarl import URL

from issuer.appkeys import admin_app_key
from issuer.services import passwords
from tests.conftest import GetToken, Login, MakeClient, MakeUser

EXAMPLES = 10  # each example sends one request to every route
FORM_NAMES = [
    "grant_type",
    "client_id",
    "client_secret",
    "username",
    "password",
    "refresh_token",
    "scope",
    "token",
    "token_type_hint",
]
JSON_NAMES = [
    "name",
    "scopes",
    "first_party",
    "public",
    "disabled",
    "immediate",
    "username",
    "password",
    "roles",
]
GRANT_TYPES = ["client_credentials", "password", "refresh_token", "authorization_code"]


def routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves."""
    found = []
    for route in app.router.routes():
        # "*": the edge's catch-all for what no route matches.
        if route.method in ("HEAD", "OPTIONS", "*") or route.resource is None:
            continue
        found.append((route.method, route.resource.canonical))
    return sorted(set(found))


def encode(text: str) -> str:
    # Lone surrogates become the bytes a careless client would send (%ED%A0%80).
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def fill(template: str, values: list[str]) -> str:
    out, rest = "", template
    for value in values:
        head, _, tail = rest.partition("{")
        _, _, rest = tail.partition("}")
        out += head + encode(value)
    return out + rest


texts = st.text(max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(JSON_NAMES) | texts, inner, max_size=4)
    ),
    max_leaves=8,
)


@pytest.fixture
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 at its lowest cost: these requests test parsing, not hashing."""
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", lambda: hasher)
    monkeypatch.setattr(
        passwords, "_dummy_hash", functools.cache(lambda: hasher.hash("not anyone's"))
    )


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_route_answers_5xx_to_any_input(
    data: st.DataObject,
    cheap_argon2: None,
    app: web.Application,
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    get_token: GetToken,
) -> None:
    # Built once per test run, not per example: the fixtures are function-scoped.
    known = getattr(test_no_route_answers_5xx_to_any_input, "known", None)
    if known is None or known["app"] is not app:
        registered = await make_client(first_party=True)
        user = await make_user(password="a good password")
        tokens = await login(registered, user)
        known = {
            "app": app,
            "client": registered,
            "user": user,
            "refresh": tokens["refresh_token"],
            "access": tokens["access_token"],
            "admin": await get_token("issuer:admin"),
        }
        test_no_route_answers_5xx_to_any_input.known = known  # type: ignore[attr-defined]
    listeners = [(client, app), (admin, app[admin_app_key])]
    for listener, served in listeners:
        for method, template in routes(served):
            await _one_request(data, listener, method, template, known)


async def _one_request(
    data: st.DataObject,
    listener: TestClient[Any, Any],
    method: str,
    template: str,
    known: dict[str, Any],
) -> None:
    ids = [known["client"].client_id, known["user"].user_id, known["user"].username]
    params = [
        data.draw(texts | st.sampled_from(ids), label="segment") for _ in range(template.count("{"))
    ]
    path = fill(template, params)
    query = data.draw(
        st.dictionaries(st.sampled_from(["after", "limit"]) | texts, texts, max_size=3),
        label="query",
    )
    if query:
        path += "?" + "&".join(f"{encode(k)}={encode(v)}" for k, v in query.items())
    auth = data.draw(
        st.sampled_from(["basic", "admin", "access", "none", "junk"]), label="authorization"
    )
    headers: dict[str, str] = {}
    if auth == "basic":
        headers.update(known["client"].basic())
    elif auth in ("admin", "access"):
        headers["Authorization"] = f"Bearer {known[auth]}"
    elif auth == "junk":
        printable = st.characters(min_codepoint=32, max_codepoint=255, exclude_categories=["Cc"])
        junk = data.draw(st.text(printable, max_size=30))
        headers["Authorization"] = data.draw(st.sampled_from(["Basic ", "Bearer ", ""])) + junk
    kind = data.draw(st.sampled_from(["none", "form", "json", "bytes"]), label="body")
    body: bytes | None = None
    if kind == "form":
        values = texts | st.sampled_from(
            [*GRANT_TYPES, known["refresh"], known["access"], known["user"].username, *ids]
        )
        fields = data.draw(
            st.dictionaries(st.sampled_from(FORM_NAMES) | texts, values, max_size=5),
            label="form",
        )
        body = "&".join(f"{encode(k)}={encode(v)}" for k, v in fields.items()).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif kind == "json":
        value = data.draw(json_values, label="json")
        body = json.dumps(value).encode()  # lone surrogates go out as \\ud800 escapes
        headers["Content-Type"] = "application/json"
    elif kind == "bytes":
        body = data.draw(st.binary(max_size=60), label="bytes")
        headers["Content-Type"] = data.draw(
            st.sampled_from(["application/json", "application/x-www-form-urlencoded"])
        )
    resp = await listener.request(method, URL(path, encoded=True), data=body, headers=headers)
    text = await resp.text()
    assert resp.status < 500, (method, path, resp.status, text)
    if resp.status >= 400 and resp.content_type == "text/html":
        # The browser-login pages answer with their error page: never JSON, never a redirect.
        assert 'role="alert"' in text, (method, path, text)
        assert "Location" not in resp.headers, (method, path)
    elif resp.status >= 400:
        # The documented error format: RFC 6749 JSON.
        assert "error" in json.loads(text), (method, path, text)
