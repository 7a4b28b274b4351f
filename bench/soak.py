"""Soak: mixed traffic against ``issuer serve --workers 2`` on PostgreSQL while keys rotate.

    .venv/bin/python bench/soak.py --duration 300      # the 5-minute soak (README)
    .venv/bin/python bench/soak.py --duration 20 --rotation 6   # what CI runs

It creates its own PostgreSQL database (dropped at the end) on the server named by
``--postgres-dsn``, starts ``issuer serve --workers N`` on free loopback ports with
a compressed key schedule (a new key signs every ``--rotation`` seconds), and sends
a bounded number of concurrent requests — 80% JWKS, 15% client credentials, 4%
refresh, 1% password login — for ``--duration`` seconds. Halfway through it sends
SIGKILL to one worker; the parent must start a replacement.

Every access token issued is verified twice by ``issuer.verifier`` through a real
``JWKSClient`` fetching the JWKS over HTTP: at once, and again after a random delay
of up to one rotation interval (while the token is valid), so tokens issued just
before a rotation are verified after it. Each worker's RSS is sampled from ``/proc``.

It prints a summary (``soak_report``) and exits 1 when a criterion fails: any 5xx;
a connection error or timeout other than those within a few seconds of the kill
(requests in flight on the killed worker); any other unexpected status; a token not
verified twice, or refused; too few rotations, none crossed by a verification, or a
key that signed before the verifier had fetched it; no replacement worker, or one
that served nothing; a worker whose RSS floor grew by 10% or more over the second
half; a server that did not stop cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from soak_load import Accounts, Soak, children
from soak_report import scan_log, show, verdict

from issuer.config import is_loopback_host
from issuer.verifier import JWKSClient, Verifier

USERS = 16
DEFAULT_DSN = os.environ.get(
    "ISSUER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


# -- the compressed key schedule ------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """The key schedule squeezed so a new key signs every ``rotation`` seconds.

    The server's start-up checks still hold: publish lead >= JWKS max-age + refresh
    interval (a key is in every cached JWKS before it signs), rotation interval >
    publish lead, and rotation interval >= access-token TTL.
    """

    rotation: int

    @property
    def lead(self) -> int:
        return max(3, self.rotation // 3)

    @property
    def max_age(self) -> int:
        return max(1, self.lead // 2)

    @property
    def ttl(self) -> int:
        return self.rotation

    @property
    def leeway(self) -> int:
        return max(2, self.rotation // 6)

    def env(self) -> dict[str, str]:
        return {
            "ISSUER_KEY_ROTATION_INTERVAL": str(self.rotation),
            "ISSUER_KEY_PUBLISH_LEAD": str(self.lead),
            "ISSUER_JWKS_MAX_AGE": str(self.max_age),
            "ISSUER_KEY_REFRESH_INTERVAL": "1",
            "ISSUER_ACCESS_TOKEN_TTL": str(self.ttl),
            "ISSUER_CLOCK_LEEWAY": str(self.leeway),
        }


# -- the server -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def own_database(dsn: str) -> AsyncIterator[str]:
    """A new database on the server of ``dsn`` (loopback only), dropped afterwards."""
    host = urlsplit(dsn).hostname or ""
    if not is_loopback_host(host):
        raise SystemExit(f"soak: --postgres-dsn must point at a loopback address, not {host!r}")
    name = f"issuer_soak_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield dsn.rpartition("/")[0] + "/" + name
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def server_env(database_url: str, tmp: Path, schedule: Schedule, workers: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ISSUER_", "PROMETHEUS_"))}
    port = free_port()
    env.update(
        ISSUER_DATABASE_URL=database_url,
        ISSUER_KEK_FILE=str(tmp / "kek.json"),
        ISSUER_HOST="127.0.0.1",
        ISSUER_ADMIN_HOST="127.0.0.1",
        ISSUER_PORT=str(port),
        ISSUER_ADMIN_PORT=str(free_port()),
        ISSUER_ISSUER=f"http://127.0.0.1:{port}",
        ISSUER_AUDIENCE="soak",
        ISSUER_WORKERS=str(workers),
        ISSUER_SHUTDOWN_GRACE="10",
        ISSUER_LOG_FORMAT="json",
        **schedule.env(),
    )
    return env


async def run_cli(env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "issuer",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"soak: issuer {' '.join(args)} failed: {err.decode().strip()}")
    return out.decode()


# -- accounts ---------------------------------------------------------------------------


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(client_id, secret)}


@dataclass
class Admin:
    """The admin API, with a fresh token for each call (under the soak's schedule they
    live seconds)."""

    http: aiohttp.ClientSession
    public: str
    admin_url: str
    auth: dict[str, str]

    async def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        async with self.http.post(
            self.public + "/token", data={"grant_type": "client_credentials"}, headers=self.auth
        ) as resp:
            assert resp.status == 200, await resp.text()
            bearer = {"Authorization": "Bearer " + (await resp.json())["access_token"]}
        async with self.http.request(
            method, self.admin_url + path, json=body, headers=bearer
        ) as resp:
            assert resp.status in (200, 201), await resp.text()
            doc: dict[str, Any] = await resp.json()
            return doc


async def provision(
    http: aiohttp.ClientSession, env: dict[str, str], public: str
) -> tuple[Accounts, Admin]:
    """An admin client (by the CLI), then through the admin API two clients and the users."""
    created = await run_cli(env, "clients", "create", "soak-admin", "--scope", "issuer:admin")
    ops = json.loads(created)
    admin = Admin(
        http,
        public,
        f"http://127.0.0.1:{env['ISSUER_ADMIN_PORT']}/admin",
        basic(ops["client_id"], ops["client_secret"]),
    )
    service = await admin.call("POST", "/clients", {"name": "soak-service", "scopes": ["read"]})
    app = await admin.call(
        "POST", "/clients", {"name": "soak-app", "scopes": ["read"], "first_party": True}
    )
    users = []
    for i in range(USERS):
        password = secrets.token_urlsafe(12)
        user = await admin.call("POST", "/users", {"username": f"soak{i}", "password": password})
        users.append((f"soak{i}", password, user["id"]))
    accounts = Accounts(
        basic(service["client_id"], service["client_secret"]),
        service["client_id"],
        basic(app["client_id"], app["client_secret"]),
        app["client_id"],
        users,
    )
    return accounts, admin


# -- the command ------------------------------------------------------------------------


async def wait_ready(
    http: aiohttp.ClientSession,
    env: dict[str, str],
    proc: subprocess.Popen[bytes],
    workers: int,
    log: Path,
) -> None:
    urls = [f"http://127.0.0.1:{env[p]}/readyz" for p in ("ISSUER_PORT", "ISSUER_ADMIN_PORT")]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (await asyncio.to_thread(log.read_bytes))[-2000:].decode(errors="replace")
            raise SystemExit(f"soak: issuer serve exited early with {proc.returncode}:\n{tail}")
        try:
            ok = True
            for url in urls:
                async with http.get(url) as resp:
                    ok = ok and resp.status == 200
            if ok and len(children(proc.pid)) == workers:
                return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("soak: issuer serve not ready within 120 s")


def start_server(env: dict[str, str], log: Path, workers: int) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "issuer", "serve", "--workers", str(workers)],
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


async def stop_server(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM and wait for a clean exit; past a minute, SIGKILL the whole group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(asyncio.to_thread(proc.wait), 60)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        return None


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    schedule = Schedule(args.rotation)
    async with own_database(args.postgres_dsn) as database_url:
        with tempfile.TemporaryDirectory(prefix="issuer-soak-") as tmp_name:
            tmp = Path(tmp_name)
            env = server_env(database_url, tmp, schedule, args.workers)
            log_path = Path(args.server_log) if args.server_log else tmp / "issuer.log"
            public = env["ISSUER_ISSUER"]
            proc = start_server(env, log_path, args.workers)
            exit_code: int | None = None
            try:
                timeout = aiohttp.ClientTimeout(total=30)
                connector = aiohttp.TCPConnector(limit=args.concurrency)
                async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
                    await wait_ready(http, env, proc, args.workers, log_path)
                    accounts, admin = await provision(http, env, public)
                    # A resource service's verifier, its cache tuned to the compressed
                    # schedule (the default 30 s floor on max-age would outlast a key's term).
                    jwks = JWKSClient(
                        public + "/.well-known/jwks.json",
                        min_max_age=1,
                        default_max_age=schedule.max_age,
                        cooldown=1,
                    )
                    async with jwks:
                        verifier = Verifier(
                            issuer=public,
                            audience="soak",
                            jwks=jwks,
                            leeway=schedule.leeway,
                        )
                        soak = Soak(
                            public=public,
                            accounts=accounts,
                            verifier=verifier,
                            server_pid=proc.pid,
                            duration=args.duration,
                            concurrency=args.concurrency,
                            rotation=args.rotation,
                            kill_at=args.kill_at,
                            max_requests=args.max_requests,
                            rng=random.Random(args.seed),
                        )
                        await soak.run(http)
                    # Every key ever made is still a row: one per rotation interval, no more.
                    keys = (await admin.call("GET", "/keys"))["keys"]
                    soak.key_states = dict(Counter(k["state"] for k in keys))
                    starts = sorted(datetime.fromisoformat(k["activates_at"]) for k in keys)
                    soak.key_gaps = [(b - a).total_seconds() for a, b in pairwise(starts)]
            finally:
                exit_code = await stop_server(proc)
            return verdict(soak, exit_code, scan_log(log_path), args.rotation)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of traffic")
    parser.add_argument("--rotation", type=int, default=30, help="seconds between key rotations")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at most")
    parser.add_argument("--max-requests", type=int, default=None, help="stop after this many")
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of the run")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--postgres-dsn", default=DEFAULT_DSN, help="a loopback PostgreSQL server")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--server-log", help="keep the server's log here")
    args = parser.parse_args()
    if args.rotation < 6:
        parser.error("--rotation must be at least 6 seconds")
    if args.workers < 2:
        parser.error("--workers must be at least 2 (one is killed)")
    try:
        report = asyncio.run(main_async(args))
    except KeyboardInterrupt:
        # The cleanup ran on the way out: the server is stopped, its database dropped.
        print("soak: interrupted", file=sys.stderr)
        sys.exit(130)
    show(report, os.getloadavg())
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    sys.exit(0 if report["passed"] else 1)


if __name__ == "__main__":
    main()
