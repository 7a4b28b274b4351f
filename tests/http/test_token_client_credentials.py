"""POST /token with grant_type=client_credentials (RFC 6749 §4.4), on both stores."""

from __future__ import annotations

import base64
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from issuer.context import Context
from tests.conftest import MakeClient, basic_auth


async def test_basic_auth_gets_an_rfc9068_token_that_pyjwt_verifies(
    client: TestClient[Any, Any], make_client: MakeClient, ctx: Context
) -> None:
    reg = await make_client(scopes="read write")
    resp = await client.post(
        "/token", data={"grant_type": "client_credentials"}, headers=reg.basic()
    )
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert body["scope"] == "read write"
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}

    header = jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    active = next(v for v in ctx.keyring.views() if v.state == "active")
    assert header["kid"] == active.kid

    jwks = await (await client.get("/.well-known/jwks.json")).json()
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims = jwt.decode(
        body["access_token"],
        key.key,
        algorithms=["RS256"],
        audience="test-api",
        issuer="http://issuer.test",
        options={"require": ["exp", "iat", "nbf", "jti", "sub"]},
    )
    assert claims["sub"] == reg.client_id
    assert claims["client_id"] == reg.client_id
    assert claims["scope"] == "read write"
    assert claims["exp"] - claims["iat"] == 600
    assert "roles" not in claims


async def test_client_secret_post_and_narrowed_scope(
    client: TestClient[Any, Any], make_client: MakeClient
) -> None:
    reg = await make_client(scopes="read write")
    resp = await client.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": reg.client_id,
            "client_secret": reg.client_secret or "",
            "scope": "write",
        },
    )
    assert resp.status == 200
    assert (await resp.json())["scope"] == "write"


@pytest.mark.parametrize(
    ("scope", "error"),
    [("admin", "invalid_scope"), ("read admin", "invalid_scope"), ('read "x"', "invalid_scope")],
)
async def test_scope_beyond_allowed_is_refused(
    client: TestClient[Any, Any], make_client: MakeClient, scope: str, error: str
) -> None:
    reg = await make_client(scopes="read write")
    resp = await client.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": scope},
        headers=reg.basic(),
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == error
    assert resp.headers["Cache-Control"] == "no-store"


async def test_wrong_secret_unknown_client_and_no_auth_are_invalid_client(
    client: TestClient[Any, Any], make_client: MakeClient
) -> None:
    reg = await make_client()
    for auth in (basic_auth(reg.client_id, "wrong"), basic_auth("nobody", "x")):
        resp = await client.post("/token", data={"grant_type": "client_credentials"}, headers=auth)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic")
        body = await resp.json()
        assert body["error"] == "invalid_client"
        assert "wrong" not in body["error_description"]
    resp = await client.post("/token", data={"grant_type": "client_credentials"})
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid_client"


async def test_basic_credentials_are_form_urldecoded(
    client: TestClient[Any, Any], make_client: MakeClient
) -> None:
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
    reg = await make_client()
    raw = f"{reg.client_id}:{reg.client_secret}".replace("-", "%2D")
    header = "Basic " + base64.b64encode(raw.encode()).decode()
    resp = await client.post(
        "/token", data={"grant_type": "client_credentials"}, headers={"Authorization": header}
    )
    assert resp.status == 200


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        (
            b"grant_type=client_credentials",
            {"Content-Type": "application/json"},
            400,
            "invalid_request",
        ),
        (b"{}", {"Content-Type": "application/json"}, 400, "invalid_request"),
        (b"", {"Content-Type": "application/x-www-form-urlencoded"}, 400, "invalid_request"),
        (
            b"grant_type=foo",
            {"Content-Type": "application/x-www-form-urlencoded"},
            400,
            "unsupported_grant_type",
        ),
        (
            b"grant_type=client_credentials&grant_type=client_credentials",
            {"Content-Type": "application/x-www-form-urlencoded"},
            400,
            "invalid_request",
        ),
        (
            b"grant_type=\xff\xfe",
            {"Content-Type": "application/x-www-form-urlencoded"},
            400,
            "invalid_request",
        ),
        (b"%%%=%%%", {"Content-Type": "application/x-www-form-urlencoded"}, 400, "invalid_request"),
        (
            b"a=" + b"x" * (65 * 1024),
            {"Content-Type": "application/x-www-form-urlencoded"},
            413,
            "invalid_request",
        ),
    ],
    ids=[
        "json-type",
        "json-body",
        "empty",
        "unknown-grant",
        "repeated",
        "not-utf8",
        "garbage",
        "too-big",
    ],
)
async def test_bad_input_gets_an_oauth_error_not_a_500(
    client: TestClient[Any, Any], body: bytes, headers: dict[str, str], status: int, error: str
) -> None:
    resp = await client.post("/token", data=body, headers=headers)
    assert resp.status == status
    payload = await resp.json()
    assert payload["error"] == error
    assert "Traceback" not in payload["error_description"]
    assert resp.headers["Cache-Control"] == "no-store"


async def test_get_on_token_is_405_json(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/token")
    assert resp.status == 405
    assert (await resp.json())["error"] == "invalid_request"
    assert "POST" in resp.headers["Allow"]


async def test_unknown_path_is_404_json(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/nope")
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
