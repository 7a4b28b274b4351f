"""NUL characters and other input PostgreSQL cannot store are refused as 400/401, not 500s."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp.test_utils import TestClient


async def test_nul_in_basic_credentials_is_invalid_client(client: TestClient[Any, Any]) -> None:
    for raw in (b"a%00b:secret", b"id:se%00cret", b"\x00:x"):
        header = "Basic " + base64.b64encode(raw).decode()
        resp = await client.post(
            "/token", data={"grant_type": "client_credentials"}, headers={"Authorization": header}
        )
        assert resp.status == 401, raw
        assert (await resp.json())["error"] == "invalid_client"


async def test_nul_in_a_client_name_is_invalid_request(
    admin: TestClient[Any, Any], admin_token: str
) -> None:
    resp = await admin.post(
        "/admin/clients",
        json={"name": "a\x00b"},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"
