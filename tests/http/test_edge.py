"""What no route matches still goes through the listener's edge (issuer.http.middleware):
the edge wraps each route's handler, and a last route answers 404 or 405 through it."""

from __future__ import annotations

import os
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from issuer.http.middleware import SECURITY_HEADERS, new_request_id


@pytest.mark.parametrize(
    "path", ["/nope", "/token/", "/.well-known/", "/%00", "/a%0Ab", "/interaction/a/b%0D%0A"]
)
async def test_an_unknown_path_is_a_404_with_the_edges_headers(
    client: TestClient[Any, Any], path: str
) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Request-ID"]
    assert {k: resp.headers[k] for k in SECURITY_HEADERS} == SECURITY_HEADERS


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/token", {"POST"}),
        ("DELETE", "/.well-known/jwks.json", {"GET", "HEAD"}),
        ("POST", "/interaction/abc", {"GET", "HEAD"}),  # a template with a segment
        ("GET", "/end_session", None),  # GET and POST both exist: no 405
    ],
)
async def test_a_path_that_exists_for_other_methods_is_a_405_listing_them(
    client: TestClient[Any, Any], method: str, path: str, allowed: set[str] | None
) -> None:
    resp = await client.request(method, path)
    if allowed is None:
        assert resp.status != 405
        return
    assert resp.status == 405
    assert (await resp.json())["error"] == "invalid_request"
    assert set(resp.headers["Allow"].split(",")) == allowed
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_admin_listener_asks_who_before_saying_what_does_not_exist(
    admin: TestClient[Any, Any], admin_token: str
) -> None:
    anonymous = await admin.get("/admin/nope")
    assert anonymous.status == 401
    known = await admin.get("/admin/nope", headers={"Authorization": f"Bearer {admin_token}"})
    assert known.status == 404
    assert (await known.json())["error"] == "not_found"


def test_a_forked_worker_draws_request_ids_of_its_own() -> None:
    """Workers are forked from one parent: each must not repeat the ids the others make."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out without pytest's teardown
        os.write(write, " ".join(new_request_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 4096).decode().split()
    os.close(read)
    parent = [new_request_id() for _ in range(3)]
    assert len(child) == 3
    assert all(len(x) == 32 for x in child + parent)
    assert not set(child) & set(parent)


async def test_no_response_names_the_server_software_or_its_version(
    client: TestClient[Any, Any],
) -> None:
    """aiohttp's default ``Server: Python/3.x aiohttp/3.y`` tells an attacker versions."""
    answers = [
        await client.get("/.well-known/jwks.json"),
        await client.get("/.well-known/openid-configuration"),
        await client.post("/token", data={"grant_type": "client_credentials"}),
        await client.get("/nope"),
    ]
    assert [r.status for r in answers] == [200, 200, 401, 404]
    assert [r.headers.getall("Server") for r in answers] == [["issuer"]] * 4
