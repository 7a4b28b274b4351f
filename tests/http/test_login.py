"""POST /token with grant_type=password (RFC 6749 §4.3), first-party clients only."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher

from issuer.context import Context
from issuer.services.users import user_store
from tests.conftest import Login, MakeClient, MakeUser, RegisteredUser


async def test_first_party_login_gets_an_access_and_refresh_token(
    client: TestClient[Any, Any], make_client: MakeClient, make_user: MakeUser, login: Login
) -> None:
    app_client = await make_client(scopes="read write", first_party=True)
    user = await make_user(roles=("reader", "editor"))
    body = await login(app_client, user, scope="read")

    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
    assert body["scope"] == "read"
    assert len(body["refresh_token"]) >= 43  # 256 bits, base64url
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    kid = jwt.get_unverified_header(body["access_token"])["kid"]
    claims = jwt.decode(
        body["access_token"],
        jwt.PyJWKSet.from_dict(jwks)[kid].key,
        algorithms=["RS256"],
        audience="test-api",
        issuer="http://issuer.test",
    )
    assert claims["sub"] == user.user_id
    assert claims["sub"] != user.username
    assert claims["client_id"] == app_client.client_id
    assert claims["roles"] == ["reader", "editor"]
    assert claims["scope"] == "read"
    assert {"jti", "iat", "nbf", "exp"} <= set(claims)


async def test_public_first_party_client_sends_only_its_id(
    make_client: MakeClient, make_user: MakeUser, login: Login
) -> None:
    app_client = await make_client(scopes="read", first_party=True, public=True)
    body = await login(app_client, await make_user())
    assert body["scope"] == "read"
    assert "refresh_token" in body


async def test_username_is_case_insensitive_after_nfkc(
    make_client: MakeClient, make_user: MakeUser, login: Login
) -> None:
    app_client = await make_client(first_party=True)
    user = await make_user(username="\uff2daria")  # FULLWIDTH LATIN CAPITAL LETTER M
    body = await login(app_client, RegisteredUser(user.user_id, "MARIA", user.password))
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["sub"] == (
        user.user_id
    )


async def test_clients_not_first_party_are_unauthorized(
    client: TestClient[Any, Any], make_client: MakeClient, make_user: MakeUser
) -> None:
    third_party = await make_client()
    user = await make_user()
    resp = await client.post(
        "/token",
        data={"grant_type": "password", "username": user.username, "password": user.password},
        headers=third_party.basic(),
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "unauthorized_client"


async def test_confidential_client_must_authenticate(
    client: TestClient[Any, Any], make_client: MakeClient, make_user: MakeUser
) -> None:
    app_client = await make_client(first_party=True)
    user = await make_user()
    resp = await client.post(
        "/token",
        data={
            "grant_type": "password",
            "client_id": app_client.client_id,
            "username": user.username,
            "password": user.password,
        },
    )
    assert resp.status == 401
    assert (await resp.json())["error"] == "invalid_client"


async def test_scope_beyond_the_client_is_invalid_scope(
    client: TestClient[Any, Any], make_client: MakeClient, make_user: MakeUser
) -> None:
    app_client = await make_client(scopes="read", first_party=True)
    user = await make_user()
    resp = await client.post(
        "/token",
        data={
            "grant_type": "password",
            "username": user.username,
            "password": user.password,
            "scope": "read admin",
        },
        headers=app_client.basic(),
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_scope"


async def test_unknown_user_wrong_password_and_disabled_user_look_the_same(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    admin_token: str,
    make_client: MakeClient,
    make_user: MakeUser,
) -> None:
    app_client = await make_client(first_party=True)
    user = await make_user()
    disabled = await make_user()
    resp = await admin.patch(
        f"/admin/users/{disabled.user_id}",
        json={"disabled": True},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert resp.status == 200
    answers = []
    for username, password in (
        ("nobody-" + user.username, user.password),
        (user.username, user.password + "x"),
        (disabled.username, disabled.password),
    ):
        resp = await client.post(
            "/token",
            data={"grant_type": "password", "username": username, "password": password},
            headers=app_client.basic(),
        )
        answers.append((resp.status, await resp.read(), resp.headers["Cache-Control"]))
    assert answers[0] == answers[1] == answers[2]
    status, body, cache = answers[0]
    assert status == 400
    assert b'"invalid_grant"' in body
    assert cache == "no-store"


async def test_a_password_over_1024_characters_is_refused_before_hashing(
    client: TestClient[Any, Any], make_client: MakeClient, ctx: Context
) -> None:
    app_client = await make_client(first_party=True)
    calls = 0
    real = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> Any:
        nonlocal calls
        calls += 1
        return real(self, hash, password)

    PasswordHasher.verify = counting  # type: ignore[method-assign]
    try:
        resp = await client.post(
            "/token",
            data={"grant_type": "password", "username": "someone", "password": "p" * 1025},
            headers=app_client.basic(),
        )
    finally:
        PasswordHasher.verify = real  # type: ignore[method-assign]
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"
    assert calls == 0


async def test_a_password_of_exactly_1024_characters_works(
    make_client: MakeClient, make_user: MakeUser, login: Login
) -> None:
    app_client = await make_client(first_party=True)
    user = await make_user(password="é" * 1024)
    assert "access_token" in await login(app_client, user)


@pytest.mark.real_argon2
async def test_an_outdated_hash_is_upgraded_after_login(
    make_client: MakeClient, make_user: MakeUser, login: Login, ctx: Context
) -> None:
    app_client = await make_client(first_party=True)
    user = await make_user()
    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(user.password)
    store = user_store(ctx.store)
    await store.update_user(user.user_id, ctx.clock.now(), password_hash=weak)

    await login(app_client, user)

    record = await store.get_user(user.user_id)
    assert record is not None
    assert record.password_hash != weak
    assert not PasswordHasher().check_needs_rehash(record.password_hash)
    await login(app_client, user)  # the new hash still verifies


async def test_logins_are_audited_without_the_password(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    admin_token: str,
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
) -> None:
    app_client = await make_client(first_party=True)
    user = await make_user()
    await login(app_client, user)
    await client.post(
        "/token",
        data={"grant_type": "password", "username": user.username, "password": "wrong-pw-1"},
        headers=app_client.basic(),
    )
    resp = await admin.get("/admin/audit", headers={"Authorization": f"Bearer {admin_token}"})
    events = (await resp.json())["items"]
    actions = [(e["action"], e["target"]) for e in events]
    assert ("login.success", user.user_id) in actions
    failure = next(e for e in events if e["action"] == "login.failure")
    assert failure["detail"]["reason"] == "wrong_password"
    text = str(events)
    assert user.password not in text
    assert "wrong-pw-1" not in text
