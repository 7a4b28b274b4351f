"""The admin API: offline bearer authentication, keys, clients, audit."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from issuer.context import Context
from tests.conftest import GetToken, MakeClient


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({}, 401, None),
        ({"Authorization": "Bearer"}, 401, "invalid_token"),
        ({"Authorization": "Basic Zm9vOmJhcg=="}, 401, "invalid_token"),
        ({"Authorization": "Bearer not.a.token"}, 401, "invalid_token"),
        ({"Authorization": "Bearer " + "a.b." * 2030}, 401, "invalid_token"),
    ],
    ids=["none", "empty", "basic", "garbage", "oversized"],
)
async def test_admin_needs_a_valid_bearer_token(
    admin: TestClient[Any, Any], headers: dict[str, str], status: int, error: str | None
) -> None:
    resp = await admin.get("/admin/keys", headers=headers)
    assert resp.status == status
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    body = await resp.json()
    assert body["error"] == "invalid_token"
    if error is None:
        assert "error=" not in challenge  # RFC 6750 §3.1: no error code without credentials
    else:
        assert f'error="{error}"' in challenge


async def test_a_token_without_the_admin_scope_is_forbidden(
    admin: TestClient[Any, Any], get_token: GetToken
) -> None:
    resp = await admin.get("/admin/keys", headers=bearer(await get_token("read")))
    assert resp.status == 403
    assert (await resp.json())["error"] == "insufficient_scope"
    assert 'scope="issuer:admin"' in resp.headers["WWW-Authenticate"]


async def test_a_token_from_a_revoked_key_is_refused(
    admin: TestClient[Any, Any], ctx: Context, admin_token: str, get_token: GetToken
) -> None:
    other = await get_token("issuer:admin")
    signer = next(v for v in ctx.keyring.views() if v.state == "active")
    resp = await admin.post(f"/admin/keys/{signer.kid}/revoke", headers=bearer(admin_token))
    assert resp.status == 200
    resp = await admin.get("/admin/keys", headers=bearer(other))
    assert resp.status == 401


async def test_list_rotate_and_audit(
    admin: TestClient[Any, Any], ctx: Context, admin_token: str
) -> None:
    resp = await admin.get("/admin/keys", headers=bearer(admin_token))
    assert resp.status == 200
    keys = (await resp.json())["keys"]
    assert [k["state"] for k in keys] == ["pending", "active"]
    assert set(keys[0]) == {
        "kid",
        "alg",
        "state",
        "created_at",
        "activates_at",
        "retires_at",
        "expires_at",
        "revoked_at",
    }

    resp = await admin.post("/admin/keys/rotate", headers=bearer(admin_token))
    assert resp.status == 201
    new = (await resp.json())["key"]
    assert new["state"] == "pending"
    lead = ctx.settings.key_publish_lead
    created = ctx.clock.now().timestamp()
    from datetime import datetime

    activates = datetime.fromisoformat(new["activates_at"]).timestamp()
    assert activates == pytest.approx(created + lead, abs=1)

    resp = await admin.get("/admin/audit", headers=bearer(admin_token))
    items = (await resp.json())["items"]
    rotate = [i for i in items if i["action"] == "key.rotate"]
    assert len(rotate) == 1
    assert rotate[0]["target"] == new["kid"]
    assert rotate[0]["actor"].startswith("token:")
    assert rotate[0]["detail"] == {"immediate": False}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"immediate": "yes"}', "application/json"),
        (b'{"immediate": 1}', "application/json"),
        (b'{"bogus": true}', "application/json"),
        (b'{"immediate": true, "immediate": false}', "application/json"),
        (b"[true]", "application/json"),
        (b"{not json", "application/json"),
        (b"immediate=true", "application/x-www-form-urlencoded"),
    ],
)
async def test_rotate_rejects_bad_bodies_with_400(
    admin: TestClient[Any, Any], admin_token: str, body: bytes, content_type: str
) -> None:
    resp = await admin.post(
        "/admin/keys/rotate",
        data=body,
        headers={**bearer(admin_token), "Content-Type": content_type},
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"


async def test_revoke_unknown_kid_is_404(admin: TestClient[Any, Any], admin_token: str) -> None:
    resp = await admin.post("/admin/keys/..%2F..%2Fetc/revoke", headers=bearer(admin_token))
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"


async def test_revoke_twice_is_idempotent(
    admin: TestClient[Any, Any], ctx: Context, admin_token: str
) -> None:
    pending = next(v for v in ctx.keyring.views() if v.state == "pending")
    for _ in range(2):
        resp = await admin.post(f"/admin/keys/{pending.kid}/revoke", headers=bearer(admin_token))
        assert resp.status == 200
        assert (await resp.json())["key"]["state"] == "revoked"
    audit = await ctx.store.list_audit()
    assert [e.action for e in audit].count("key.revoke") == 1


async def test_the_successor_made_because_an_admin_revoked_is_that_admins(
    admin: TestClient[Any, Any], admin_token: str
) -> None:
    keys = (await (await admin.get("/admin/keys", headers=bearer(admin_token))).json())["keys"]
    pending = next(k["kid"] for k in keys if k["state"] == "pending")
    audit = await admin.get("/admin/audit", headers=bearer(admin_token))
    after = (await audit.json())["next"]
    assert isinstance(after, str), "a cursor is an opaque string, as on every paged list"
    resp = await admin.post(f"/admin/keys/{pending}/revoke", headers=bearer(admin_token))
    assert resp.status == 200
    audit = await admin.get(f"/admin/audit?after={after}", headers=bearer(admin_token))
    rows = [(e["action"], e["actor"]) for e in (await audit.json())["items"]]
    # Revoking the only successor makes the schedule plan a new one.
    assert sorted(a for a, _ in rows) == ["key.create", "key.revoke"]
    sub = jwt.decode(admin_token, options={"verify_signature": False})["sub"]
    assert {actor for _, actor in rows} == {f"token:{sub}"}, rows


async def test_create_and_list_clients(admin: TestClient[Any, Any], admin_token: str) -> None:
    resp = await admin.post(
        "/admin/clients",
        json={"name": "billing", "scopes": ["read", "write"]},
        headers=bearer(admin_token),
    )
    assert resp.status == 201
    assert resp.headers["Cache-Control"] == "no-store"
    created = await resp.json()
    assert len(created["client_secret"]) >= 43
    resp = await admin.get("/admin/clients", headers=bearer(admin_token))
    listed = {c["name"]: c for c in (await resp.json())["clients"]}
    assert listed["billing"]["scopes"] == ["read", "write"]
    assert "client_secret" not in listed["billing"]
    assert "secret_hash" not in listed["billing"]
    dup = await admin.post("/admin/clients", json={"name": "billing"}, headers=bearer(admin_token))
    assert dup.status == 409


async def test_create_a_client_with_redirect_uris(
    admin: TestClient[Any, Any], admin_token: str
) -> None:
    resp = await admin.post(
        "/admin/clients",
        json={
            "name": "web",
            "scopes": ["openid"],
            "redirect_uris": ["https://web.example/callback"],
            "post_logout_redirect_uris": ["https://web.example/"],
        },
        headers=bearer(admin_token),
    )
    assert resp.status == 201
    created = await resp.json()
    assert created["redirect_uris"] == ["https://web.example/callback"]
    assert created["post_logout_redirect_uris"] == ["https://web.example/"]
    assert created["web_origins"] == ["https://web.example"]
    for bad in (
        {"redirect_uris": "https://web.example/cb"},
        {"redirect_uris": [1]},
        {"redirect_uris": ["https://web.example/cb#x"]},
        {"web_origins": ["https://web.example/path"]},
    ):
        refused = await admin.post(
            "/admin/clients", json={"name": "bad", **bad}, headers=bearer(admin_token)
        )
        assert refused.status == 400, bad
        assert (await refused.json())["error"] == "invalid_request"


async def test_admin_routes_are_not_on_the_public_listener(
    client: TestClient[Any, Any], admin_token: str
) -> None:
    resp = await client.get("/admin/keys", headers=bearer(admin_token))
    assert resp.status == 404


async def test_disabling_a_client_stops_it_and_cuts_off_its_tokens(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    admin_token: str,
    make_client: MakeClient,
) -> None:
    leaked = await make_client(name="leaked", scopes="issuer:admin")
    resp = await client.post(
        "/token", data={"grant_type": "client_credentials"}, headers=leaked.basic()
    )
    stolen = (await resp.json())["access_token"]
    assert (await admin.get("/admin/keys", headers=bearer(stolen))).status == 200

    resp = await admin.patch(
        "/admin/clients/leaked", json={"disabled": True}, headers=bearer(admin_token)
    )
    assert resp.status == 200
    assert (await resp.json())["disabled"] is True
    assert (await admin.get("/admin/keys", headers=bearer(stolen))).status == 401
    resp = await client.post(
        "/token", data={"grant_type": "client_credentials"}, headers=leaked.basic()
    )
    assert resp.status == 401

    resp = await admin.patch(
        f"/admin/clients/{leaked.client_id}", json={"disabled": False}, headers=bearer(admin_token)
    )
    assert resp.status == 200
    resp = await client.post(
        "/token", data={"grant_type": "client_credentials"}, headers=leaked.basic()
    )
    assert resp.status == 200
    for body in ({}, {"disabled": "yes"}, {"disabled": True, "name": "x"}):
        resp = await admin.patch("/admin/clients/leaked", json=body, headers=bearer(admin_token))
        assert resp.status == 400
    resp = await admin.patch(
        "/admin/clients/nobody", json={"disabled": True}, headers=bearer(admin_token)
    )
    assert resp.status == 404
