"""An unknown username costs the same time as a wrong password (no user-enumeration oracle)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import MakeClient, MakeUser

TRIES = 15


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"login_max_failures": 1000, "login_max_failures_per_address": 1000}


async def test_unknown_user_and_wrong_password_take_the_same_time(
    client: TestClient[Any, Any], make_client: MakeClient, make_user: MakeUser
) -> None:
    app = await make_client(first_party=True)
    user = await make_user()

    async def timed(username: str) -> float:
        start = time.perf_counter()
        resp = await client.post(
            "/token",
            data={"grant_type": "password", "username": username, "password": "wrong password"},
            headers=app.basic(),
        )
        elapsed = time.perf_counter() - start
        assert resp.status == 400
        return elapsed

    for _ in range(2):  # warm up both paths (the dummy hash is made on first use)
        await timed("nobody")
        await timed(user.username)
    unknown, wrong = [], []
    for i in range(TRIES):  # interleaved, so load from elsewhere hits both alike
        unknown.append(await timed(f"nobody-{i}"))
        wrong.append(await timed(user.username))
    a, b = statistics.median(unknown), statistics.median(wrong)
    assert abs(a - b) / max(a, b) <= 0.25, f"unknown {a * 1000:.1f} ms, wrong {b * 1000:.1f} ms"
