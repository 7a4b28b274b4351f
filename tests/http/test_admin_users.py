"""The admin API for users (issuer:admin scope, audited)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from issuer.clock import SettableClock
from tests.conftest import GetToken, Login, MakeClient, MakeUser, Refresh, RegisteredUser

USER_FIELDS = {"id", "username", "roles", "disabled", "created_at", "updated_at"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_create_show_list_and_change_a_user(
    admin: TestClient[Any, Any],
    admin_token: str,
    make_client: MakeClient,
    login: Login,
) -> None:
    auth = bearer(admin_token)
    resp = await admin.post(
        "/admin/users",
        json={"username": "Dana", "password": "a long passphrase", "roles": ["reader"]},
        headers=auth,
    )
    assert resp.status == 201
    created = await resp.json()
    assert set(created) == USER_FIELDS  # never the hash
    assert created["username"] == "Dana"
    assert created["roles"] == ["reader"]
    user_id = created["id"]

    shown = await (await admin.get(f"/admin/users/{user_id}", headers=auth)).json()
    assert shown == created
    listed = await (await admin.get("/admin/users", headers=auth)).json()
    assert [u["id"] for u in listed["items"]] == [user_id]
    assert "argon2" not in str(listed)

    resp = await admin.patch(
        f"/admin/users/{user_id}",
        json={"roles": ["editor", "reader"], "password": "another passphrase"},
        headers=auth,
    )
    assert resp.status == 200
    assert (await resp.json())["roles"] == ["editor", "reader"]
    app = await make_client(first_party=True)
    await login(app, RegisteredUser(user_id, "dana", "another passphrase"))

    audit = await (await admin.get("/admin/audit", headers=auth)).json()
    actions = [e["action"] for e in audit["items"] if e["target"] == user_id]
    assert actions[:2] == ["user.create", "user.update"]
    assert "passphrase" not in str(audit)


async def test_duplicate_usernames_conflict_case_insensitively(
    admin: TestClient[Any, Any], admin_token: str
) -> None:
    body = {"username": "erin", "password": "a long passphrase"}
    assert (await admin.post("/admin/users", json=body, headers=bearer(admin_token))).status == 201
    body["username"] = "ERIN"
    resp = await admin.post("/admin/users", json=body, headers=bearer(admin_token))
    assert resp.status == 409
    assert (await resp.json())["error"] == "conflict"


BAD_BODIES: list[dict[str, Any]] = [
    {"username": "x"},
    {"password": "a long passphrase"},
    {"username": "x", "password": "short"},
    {"username": "x", "password": "p" * 1025},
    {"username": "", "password": "a long passphrase"},
    {"username": "x", "password": "a long passphrase", "roles": "admin"},
    {"username": "x", "password": "a long passphrase", "roles": ["bad role"]},
    {"username": "x", "password": "a long passphrase", "extra": 1},
    {"username": "a\u0000b", "password": "a long passphrase"},
]


async def test_bad_user_input_is_invalid_request(
    admin: TestClient[Any, Any], admin_token: str
) -> None:
    for body in BAD_BODIES:
        resp = await admin.post("/admin/users", json=body, headers=bearer(admin_token))
        assert resp.status == 400, body
        assert (await resp.json())["error"] == "invalid_request"


async def test_a_role_with_a_trailing_newline_is_refused_not_trimmed(
    admin: TestClient[Any, Any], admin_token: str
) -> None:
    # Stored space-joined and split back, "issuer:admin\n" would become "issuer:admin".
    body = {"username": "eve", "password": "a long passphrase", "roles": ["issuer:admin\n"]}
    resp = await admin.post("/admin/users", json=body, headers=bearer(admin_token))
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"
    body["roles"] = ["reader"]
    resp = await admin.post("/admin/users", json=body, headers=bearer(admin_token))
    assert resp.status == 201
    user = await resp.json()
    patch = {"roles": ["issuer:admin\n"]}
    path = f"/admin/users/{user['id']}"
    resp = await admin.patch(path, json=patch, headers=bearer(admin_token))
    assert resp.status == 400
    assert (await (await admin.get(path, headers=bearer(admin_token))).json())["roles"] == [
        "reader"
    ]


async def test_unknown_user_is_404(admin: TestClient[Any, Any], admin_token: str) -> None:
    for method, path in (
        ("GET", "/admin/users/nope"),
        ("PATCH", "/admin/users/nope"),
        ("POST", "/admin/users/nope/revoke-tokens"),
    ):
        resp = await admin.request(method, path, json={}, headers=bearer(admin_token))
        assert resp.status == 404, (method, path)


async def test_users_api_needs_the_admin_scope(
    admin: TestClient[Any, Any], get_token: GetToken
) -> None:
    assert (await admin.get("/admin/users")).status == 401
    resp = await admin.get("/admin/users", headers=bearer(await get_token("read")))
    assert resp.status == 403


async def test_listing_is_paged(
    admin: TestClient[Any, Any], admin_token: str, make_user: MakeUser
) -> None:
    for name in ("c", "a", "B", "d"):
        await make_user(username=name)
    resp = await admin.get("/admin/users", params={"limit": "3"}, headers=bearer(admin_token))
    first = await resp.json()
    assert [u["username"] for u in first["items"]] == ["a", "B", "c"]
    resp = await admin.get(
        "/admin/users", params={"limit": "3", "after": first["next"]}, headers=bearer(admin_token)
    )
    second = await resp.json()
    assert [u["username"] for u in second["items"]] == ["d"]
    assert second["next"] is None


async def test_revoke_tokens_ends_every_session_and_access_token(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    admin_token: str,
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
    clock: SettableClock,
) -> None:
    app = await make_client(scopes="read issuer:admin", first_party=True)
    user = await make_user(roles=("issuer:admin",))
    phone, laptop = await login(app, user), await login(app, user)
    resp = await admin.post(
        f"/admin/users/{user.user_id}/revoke-tokens", headers=bearer(admin_token)
    )
    assert resp.status == 200
    assert (await resp.json())["revoked_families"] == 2
    for session in (phone, laptop):
        assert (await refresh(app, session["refresh_token"])).status == 400
        resp = await admin.get("/admin/keys", headers=bearer(session["access_token"]))
        assert resp.status == 401
        resp = await client.post(
            "/introspect", data={"token": session["access_token"]}, headers=app.basic()
        )
        assert await resp.json() == {"active": False}
    # The user can log in again a second later (iat <= revoked_before is cut off).
    clock.advance(1)
    fresh = await login(app, user)
    assert (await admin.get("/admin/keys", headers=bearer(fresh["access_token"]))).status == 200
    audit = await (await admin.get("/admin/audit", headers=bearer(admin_token))).json()
    assert "user.revoke_tokens" in [e["action"] for e in audit["items"]]


async def test_disabling_a_user_cuts_off_their_tokens_at_once(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    admin_token: str,
    make_client: MakeClient,
    make_user: MakeUser,
    login: Login,
    refresh: Refresh,
) -> None:
    app = await make_client(scopes="read", first_party=True)
    user = await make_user()
    session = await login(app, user)
    resp = await admin.patch(
        f"/admin/users/{user.user_id}", json={"disabled": True}, headers=bearer(admin_token)
    )
    assert resp.status == 200
    assert (await resp.json())["disabled"] is True
    resp = await client.post(
        "/introspect", data={"token": session["access_token"]}, headers=app.basic()
    )
    assert await resp.json() == {"active": False}
    assert (await refresh(app, session["refresh_token"])).status == 400
    feed = await client.get("/revocations", headers=app.basic())
    subs = [i.get("sub") for i in (await feed.json())["items"]]
    assert user.user_id in subs, "offline verifiers learn of it through the feed"


async def test_a_users_token_needs_the_admin_role_not_just_the_clients_scope(
    admin: TestClient[Any, Any], make_client: MakeClient, make_user: MakeUser, login: Login
) -> None:
    console = await make_client(scopes="issuer:admin", first_party=True)
    plain = await make_user(roles=("reader",))
    operator = await make_user(roles=("issuer:admin",))
    tokens = await login(console, plain)
    assert "issuer:admin" in tokens["scope"]
    resp = await admin.get("/admin/users", headers=bearer(tokens["access_token"]))
    assert resp.status == 403
    assert (await resp.json())["error"] == "insufficient_scope"
    tokens = await login(console, operator)
    resp = await admin.get("/admin/users", headers=bearer(tokens["access_token"]))
    assert resp.status == 200
