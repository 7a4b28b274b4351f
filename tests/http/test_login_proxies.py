"""The client address behind trusted proxies (ISSUER_TRUSTED_PROXIES)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, make_mocked_request

from issuer.http.addresses import client_address
from tests.conftest import MakeClient

TRUSTED = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8"))


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"login_max_failures_per_address": 2, "trusted_proxies": TRUSTED}


async def test_each_forwarded_client_is_counted_on_its_own(
    client: TestClient[Any, Any], make_client: MakeClient
) -> None:
    app = await make_client(first_party=True)

    async def attempt(xff: str) -> int:
        resp = await client.post(
            "/token",
            data={"grant_type": "password", "username": xff, "password": "guess"},
            headers={**app.basic(), "X-Forwarded-For": xff},
        )
        return resp.status

    # The peer (127.0.0.1) is a trusted proxy: the address is the right-most untrusted hop.
    assert [await attempt("203.0.113.7, 10.1.1.1") for _ in range(3)] == [400, 400, 429]
    assert await attempt("203.0.113.8") == 400
    # A client-chosen left-most entry does not move its real address.
    assert await attempt("198.51.100.1, 203.0.113.7, 10.1.1.1") == 429


def request_from(peer: str, xff: str | None) -> Any:
    headers = {} if xff is None else {"X-Forwarded-For": xff}
    req = make_mocked_request("POST", "/token", headers=headers)
    return req.clone(remote=peer)


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # untrusted peer: header ignored
        ("10.0.0.1", None, "10.0.0.1"),
        ("10.0.0.1", "1.2.3.4", "1.2.3.4"),
        ("10.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.2", "1.2.3.4"),
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),  # every hop ours: the left-most
        ("10.0.0.1", "junk, 1.2.3.4", "1.2.3.4"),
        ("10.0.0.1", "1.2.3.4, junk", "10.0.0.1"),  # unverifiable beyond the junk
        ("10.0.0.1", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_address(peer: str, xff: str | None, expected: str) -> None:
    assert client_address(request_from(peer, xff), TRUSTED) == expected
