"""The races of issue 8 through HTTP, against a started ``issuer serve --workers 2``.

Requests go over separate connections (``force_close``), so the two workers and
their own database connections take them in whatever order the kernel hands them
out: these are the races as a client produces them, on each store.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import basic_auth
from tests.live import Served, cli, issuer_env, serve

WORKERS = 2
# How long eight clients log in and out while the feed is polled (issue 8 asks 15 s;
# CI keeps it short).
FEED_SECONDS = float(os.environ.get("FEED_LOAD_SECONDS", "3"))


def _user(env: dict[str, str]) -> tuple[str, str]:
    name, password = f"user-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    done = subprocess.run(
        [sys.executable, "-m", "issuer", "users", "create", name, "--password-stdin"],
        env=env,
        input=password,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return name, password


class Api:
    def __init__(self, served: Served, session: aiohttp.ClientSession, auth: dict[str, str]):
        self.base = served.public
        self.session = session
        self.auth = auth

    async def post(self, path: str, data: dict[str, str], **headers: str) -> tuple[int, Any]:
        async with self.session.post(
            self.base + path, data=data, headers={**self.auth, **headers}
        ) as resp:
            body = await resp.read()
            return resp.status, json.loads(body) if body else None

    async def login(self, user: tuple[str, str]) -> dict[str, Any]:
        status, body = await self.post(
            "/token", {"grant_type": "password", "username": user[0], "password": user[1]}
        )
        assert status == 200, body
        return dict(body)

    async def refresh(self, token: str) -> tuple[int, Any]:
        return await self.post("/token", {"grant_type": "refresh_token", "refresh_token": token})

    async def logout(self, access: str, refresh_token: str | None = None) -> int:
        data = {} if refresh_token is None else {"refresh_token": refresh_token}
        async with self.session.post(
            self.base + "/logout", data=data, headers={"Authorization": f"Bearer {access}"}
        ) as resp:
            await resp.read()
            return resp.status

    async def feed(self, after: str | None) -> dict[str, Any]:
        params = {} if after is None else {"after": after}
        async with self.session.get(
            self.base + "/revocations", params=params, headers=self.auth
        ) as resp:
            assert resp.status == 200, await resp.text()
            return dict(await resp.json())


async def _refresh_races(api: Api, user: tuple[str, str]) -> None:
    for trials, width in ((10, 2), (3, 50)):
        for _ in range(trials):
            token = (await api.login(user))["refresh_token"]
            results = await asyncio.gather(*(api.refresh(token) for _ in range(width)))
            winners = [body for status, body in results if status == 200]
            assert len(winners) == 1, [status for status, _ in results]
            assert all(status == 400 for status, _ in results if status != 200)
            # The others were reuses: the family is revoked, the winner's token too.
            status, _ = await api.refresh(winners[0]["refresh_token"])
            assert status == 400


async def _feed_under_load(api: Api, users: list[tuple[str, str]]) -> None:
    start = (await api.feed(None))["next"]
    logged_out: set[str] = set()
    seen: set[str] = set()
    stop = asyncio.Event()

    async def in_and_out(user: tuple[str, str]) -> None:
        while not stop.is_set():
            tokens = await api.login(user)
            assert await api.logout(tokens["access_token"]) == 204
            claims = tokens["access_token"].split(".")[1]
            logged_out.add(json.loads(_b64(claims))["jti"])

    async def poll() -> None:
        cursor = start
        while True:
            # Judged only by pages read after every logout had its answer.
            last = writers_done.is_set()
            page = await api.feed(cursor)
            seen.update(item["jti"] for item in page["items"] if "jti" in item)
            cursor = page["next"]
            if last and not page["items"]:
                return

    async def timer() -> None:
        await asyncio.sleep(FEED_SECONDS)  # the load's duration, not an ordering
        stop.set()

    writers_done = asyncio.Event()
    poller = asyncio.create_task(poll())
    await asyncio.gather(timer(), *(in_and_out(u) for u in users))
    writers_done.set()
    await poller
    assert logged_out
    assert logged_out <= seen, f"{len(logged_out - seen)} entries never came through the cursor"


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


async def _logout_revoke_refresh(api: Api, user: tuple[str, str]) -> None:
    for _ in range(15):
        first, second = await api.login(user), await api.login(user)
        statuses = await asyncio.gather(
            api.logout(first["access_token"], second["refresh_token"]),
            api.post("/revoke", {"token": second["refresh_token"]}),
            api.refresh(second["refresh_token"]),
        )
        flat = [s if isinstance(s, int) else s[0] for s in statuses]
        assert all(s < 500 for s in flat), flat
        assert flat[:2] == [204, 200], flat


@pytest.mark.slow
async def test_races_through_http_on_two_workers(database_url: str, tmp_path: Path) -> None:
    env = issuer_env(
        tmp_path,
        ISSUER_DATABASE_URL=database_url,
        ISSUER_WORKERS=str(WORKERS),
        ISSUER_LOGIN_MAX_FAILURES="1000",
        ISSUER_LOGIN_MAX_FAILURES_PER_ADDRESS="1000",
    )
    with serve(env, tmp_path / "issuer.log", ["--workers", str(WORKERS)]) as served:
        served.wait_ready()
        app = json.loads(cli(env, "clients", "create", "app", "--scope", "read", "--first-party"))
        users = [_user(env) for _ in range(4)]
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            api = Api(served, session, basic_auth(app["client_id"], app["client_secret"]))
            await _refresh_races(api, users[0])
            await _feed_under_load(api, users)
            await _logout_revoke_refresh(api, users[1])
        assert "Traceback" not in served.logs(), served.logs()
