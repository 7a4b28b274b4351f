"""Input no store can hold (a NUL, a lone surrogate) is a 400 at every route, on both stores.

Found by trying: ``%00`` in an admin path segment was a 500 on PostgreSQL
(CharacterNotInRepertoireError), ``"\\ud800"`` in a JSON body a 500 on both.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from issuer.context import Context
from issuer.errors import InvalidRequestError
from tests.conftest import MakeClient, MakeUser


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/admin/clients/abc%00def"),
        ("GET", "/admin/users/abc%00def"),
        ("PATCH", "/admin/users/abc%00def"),
        ("POST", "/admin/users/abc%00/revoke-tokens"),
        ("POST", "/admin/keys/abc%00/revoke"),
        ("GET", "/admin/users?after=%00"),
        ("GET", "/admin/audit?after=1&%00=1"),
    ],
)
async def test_a_nul_in_a_path_or_query_is_invalid_request(
    admin: TestClient[Any, Any], admin_token: str, method: str, path: str
) -> None:
    resp = await admin.request(method, path, json={"disabled": True}, headers=bearer(admin_token))
    assert resp.status == 400, await resp.text()
    body = await resp.json()
    assert body["error"] == "invalid_request"
    assert "NUL" in body["error_description"]


async def test_the_admin_token_is_checked_before_the_path(admin: TestClient[Any, Any]) -> None:
    """Who asks comes first: without a token, a malformed segment says nothing of itself."""
    resp = await admin.post("/admin/keys/abc%00/revoke")
    assert resp.status == 401, await resp.text()
    assert (await resp.json())["error"] == "invalid_token"


async def test_a_nul_in_a_public_query_is_invalid_request(
    client: TestClient[Any, Any], make_client: MakeClient
) -> None:
    registered = await make_client()
    resp = await client.get("/revocations?after=%00", headers=registered.basic())
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        ("POST", "/admin/users", rb'{"username": "u", "password": "aaaaaaaa\ud800"}'),
        ("POST", "/admin/users", rb'{"username": "u\ud800", "password": "aaaaaaaa"}'),
        ("POST", "/admin/users", rb'{"username": "u", "roles": ["\udfff"], "password": "x"}'),
        ("POST", "/admin/clients", rb'{"name": "x\ud800"}'),
        ("POST", "/admin/clients", rb'{"name": "x", "scopes": ["a\ud800"]}'),
        ("POST", "/admin/clients", rb'{"name": "x\u0000y"}'),
        ("POST", "/admin/clients", rb'{"name\ud800": "x"}'),
        ("PATCH", "/admin/users/{user}", rb'{"password": "aaaaaaaa\ud800"}'),
        ("PATCH", "/admin/users/{user}", rb'{"roles": [["\ud800"]]}'),
    ],
)
async def test_a_lone_surrogate_in_json_is_invalid_request(
    admin: TestClient[Any, Any],
    admin_token: str,
    make_user: MakeUser,
    method: str,
    path: str,
    raw: bytes,
) -> None:
    user = await make_user()
    resp = await admin.request(
        method,
        path.format(user=user.user_id),
        data=raw,
        headers={**bearer(admin_token), "Content-Type": "application/json"},
    )
    assert resp.status == 400, await resp.text()
    body = await resp.json()
    assert body["error"] == "invalid_request"
    assert "NUL or an invalid Unicode character" in body["error_description"]


async def test_non_ascii_basic_credentials_are_invalid_client(
    client: TestClient[Any, Any],
) -> None:
    for header in ("Basic \u00e9", "Basic YTpi\u00e9", "Basic \u00ff\u00fe"):
        resp = await client.post(
            "/token", data={"grant_type": "client_credentials"}, headers={"Authorization": header}
        )
        assert resp.status == 401, (header, await resp.text())
        assert (await resp.json())["error"] == "invalid_client"


async def test_a_surrogate_in_a_form_body_is_invalid_request(
    client: TestClient[Any, Any], make_client: MakeClient
) -> None:
    registered = await make_client(first_party=True)
    # Percent-encoded UTF-8 of U+D800: invalid UTF-8, decoded by the form parser as U+FFFD.
    for body in (b"grant_type=password&username=a%ED%A0%80&password=x", b"grant_type=%00"):
        resp = await client.post(
            "/token",
            data=body,
            headers={**registered.basic(), "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert resp.status in (400, 401), await resp.text()
        assert resp.status < 500
        assert "error" in await resp.json()


@pytest.mark.parametrize("value", ["a\x00b", "x\ud800"])
async def test_the_store_turns_values_it_cannot_hold_into_invalid_request(
    ctx: Context, value: str
) -> None:
    """Below the parsers: whatever reaches a store with such a value is a 400, not a 500."""
    if ctx.store.dialect == "sqlite" and "\x00" in value:
        assert await ctx.store.get_client(value) is None  # SQLite holds a NUL
        return
    with pytest.raises(InvalidRequestError):
        await ctx.store.get_client(value)
