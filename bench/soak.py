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
of up to one rotation interval, so tokens issued just before a rotation are
verified after it. Each worker's RSS is sampled from ``/proc``.

It prints a summary and exits 1 when a criterion fails: any 5xx; a connection error
or timeout other than those within a few seconds of the kill (requests in flight on
the killed worker); any other unexpected status; any verification failure; too few
rotations or none crossed by a verification; no replacement worker; a worker whose
RSS grew by 10% or more over the second half; a server that did not stop cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import heapq
import itertools
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
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg

from issuer.config import is_loopback_host
from issuer.verifier import JWKSClient, TokenError, Verifier

KINDS = ("jwks", "client_credentials", "refresh", "password")
WEIGHTS = (80, 15, 4, 1)
EXPECTED = {"jwks": {200, 304}, "client_credentials": {200}, "refresh": {200}, "password": {200}}
# Connection errors this long after the SIGKILL are requests that were in flight on
# (or kept-alive connections to) the killed worker.
KILL_WINDOW = 5.0
MAX_RSS_GROWTH = 0.10
MIN_OWN_WINDOW = 30.0
USERS = 16
NEW_CONNECTIONS = 0.1
SESSIONS_KEPT = 64
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


def children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


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


@dataclass
class Accounts:
    service: dict[str, str]  # the Authorization header of each client
    service_id: str
    app: dict[str, str]
    app_id: str
    users: list[tuple[str, str, str]]  # username, password, user id


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(client_id, secret)}


async def provision(http: aiohttp.ClientSession, env: dict[str, str], public: str) -> Accounts:
    """An admin client (by the CLI), then through the admin API two clients and the users."""
    created = await run_cli(env, "clients", "create", "soak-admin", "--scope", "issuer:admin")
    admin = json.loads(created)
    admin_url = f"http://127.0.0.1:{env['ISSUER_ADMIN_PORT']}/admin"

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        # A fresh admin token each time: with the compressed schedule they live seconds.
        async with http.post(
            public + "/token",
            data={"grant_type": "client_credentials"},
            headers=basic(admin["client_id"], admin["client_secret"]),
        ) as resp:
            assert resp.status == 200, await resp.text()
            bearer = {"Authorization": "Bearer " + (await resp.json())["access_token"]}
        async with http.post(admin_url + path, json=body, headers=bearer) as resp:
            assert resp.status == 201, await resp.text()
            doc: dict[str, Any] = await resp.json()
            return doc

    service = await post("/clients", {"name": "soak-service", "scopes": ["read"]})
    app = await post("/clients", {"name": "soak-app", "scopes": ["read"], "first_party": True})
    users = []
    for i in range(USERS):
        password = secrets.token_urlsafe(12)
        user = await post("/users", {"username": f"soak{i}", "password": password})
        users.append((f"soak{i}", password, user["id"]))
    return Accounts(
        basic(service["client_id"], service["client_secret"]),
        service["client_id"],
        basic(app["client_id"], app["client_secret"]),
        app["client_id"],
        users,
    )


# -- the run ------------------------------------------------------------------------------


@dataclass
class Issued:
    token: str
    kid: str
    exp: float
    at: float  # time.monotonic() when the answer arrived
    client_id: str
    sub: str | None
    ok: list[bool] = field(default_factory=list)


def unverified(token: str) -> tuple[str, float]:
    """The header's kid and the payload's exp, read without any check (bookkeeping only)."""
    head, body = (
        json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in token.split(".")[:2]
    )
    return str(head["kid"]), float(body["exp"])


@dataclass
class Soak:
    public: str
    accounts: Accounts
    verifier: Verifier
    server_pid: int
    duration: float
    concurrency: int
    rotation: int
    kill_at: float
    max_requests: int | None
    rng: random.Random
    t0: float = field(default_factory=time.monotonic)
    sent: int = 0
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[tuple[float, str, str]] = field(default_factory=list)
    unexpected: list[tuple[float, str, int, str]] = field(default_factory=list)
    server_errors: list[tuple[float, str, int, str]] = field(default_factory=list)
    sessions: list[tuple[str, int]] = field(default_factory=list)  # refresh token, user index
    refresh_fallbacks: int = 0
    issued: list[Issued] = field(default_factory=list)
    due: list[tuple[float, int, Issued]] = field(default_factory=list)
    first_seen: dict[str, float] = field(default_factory=dict)
    unpublished: list[str] = field(default_factory=list)
    late: int = 0
    verified: int = 0
    crossed: int = 0
    failures: list[tuple[float, str, str]] = field(default_factory=list)
    rss: dict[int, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    killed: tuple[float, int] | None = None
    replaced: tuple[float, int] | None = None
    etag: str | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    # -- traffic

    async def traffic(self, http: aiohttp.ClientSession) -> None:
        while self.now() < self.duration and (
            self.max_requests is None or self.sent < self.max_requests
        ):
            self.sent += 1
            kind = self.rng.choices(KINDS, WEIGHTS)[0]
            if kind == "refresh" and not self.sessions:
                self.refresh_fallbacks += 1
                kind = "password"
            await self.one(http, kind)

    async def one(self, http: aiohttp.ClientSession, kind: str) -> None:
        acc = self.accounts
        url, data, headers = self.public + "/token", None, {}
        session: tuple[str, int] | None = None
        if kind == "jwks":
            url = self.public + "/.well-known/jwks.json"
            # Half conditional, as a caching verifier would send them.
            if self.etag is not None and self.rng.random() < 0.5:
                headers["If-None-Match"] = self.etag
        elif kind == "client_credentials":
            data, headers = {"grant_type": "client_credentials", "scope": "read"}, acc.service
        elif kind == "refresh":
            session = self.sessions.pop(self.rng.randrange(len(self.sessions)))
            data, headers = {"grant_type": "refresh_token", "refresh_token": session[0]}, acc.app
        else:
            index = self.rng.randrange(len(acc.users))
            username, password, _ = acc.users[index]
            session = ("", index)
            data = {"grant_type": "password", "username": username, "password": password}
            headers = acc.app
        if self.rng.random() < NEW_CONNECTIONS:
            # Some clients come and go: new connections keep reaching every worker
            # (the kernel spreads them), the replacement of the killed one included.
            headers = {**headers, "Connection": "close"}
        start = time.monotonic()
        try:
            method = "GET" if data is None else "POST"
            async with http.request(method, url, data=data, headers=headers) as resp:
                body = await resp.read()
                status = resp.status
                if kind == "jwks" and status == 200:
                    self.etag = resp.headers.get("ETag")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors.append((self.now(), kind, type(exc).__name__))
            return
        self.latencies[kind].append((time.monotonic() - start) * 1000)
        self.statuses[kind][status] += 1
        if status not in EXPECTED[kind]:
            seen = (self.now(), kind, status, body[:200].decode(errors="replace"))
            (self.server_errors if status >= 500 else self.unexpected).append(seen)
            return
        if kind == "jwks":
            return
        doc = json.loads(body)
        if session is not None:
            self.sessions.append((doc["refresh_token"], session[1]))
            del self.sessions[:-SESSIONS_KEPT]
            sub: str | None = acc.users[session[1]][2]
            client_id = acc.app_id
        else:
            sub, client_id = None, acc.service_id
        await self.record(doc["access_token"], client_id, sub)

    # -- verification

    async def record(self, token: str, client_id: str, sub: str | None) -> None:
        kid, exp = unverified(token)
        issued = Issued(token, kid, exp, time.monotonic(), client_id, sub)
        if issued.kid not in self.first_seen:
            self.first_seen[issued.kid] = issued.at
            if issued.kid not in self.verifier.jwks.keys:
                # Signing before the verifier's last fetch saw the key: the publish lead
                # failed, and verification leans on refetch-on-unknown-kid.
                self.unpublished.append(issued.kid)
        self.issued.append(issued)
        await self.verify(issued)
        # Later, across a rotation as often as not, but while the token is still valid.
        delay = min(self.rng.uniform(0.5, self.rotation), exp - time.time() - 1)
        heapq.heappush(self.due, (issued.at + max(0.0, delay), len(self.issued), issued))

    async def verify(self, issued: Issued) -> None:
        if time.time() >= issued.exp + self.verifier.policy.leeway:
            # It expired before we got to it (answered late, or this process lagged):
            # not verified, counted apart from the verifier's refusals.
            issued.ok.append(False)
            self.late += 1
            return
        try:
            claims = await self.verifier.verify(issued.token)
        except TokenError as exc:
            issued.ok.append(False)
            self.failures.append((self.now(), issued.kid, exc.reason))
            return
        wrong = [
            name
            for name, want in (("client_id", issued.client_id), ("sub", issued.sub))
            if want is not None and claims.get(name) != want
        ]
        if wrong:
            issued.ok.append(False)
            self.failures.append((self.now(), issued.kid, "wrong " + ", ".join(wrong)))
            return
        issued.ok.append(True)
        self.verified += 1

    async def verify_later(self, until_empty: asyncio.Event) -> None:
        """Verify each token again when it is due; after the traffic stops, the rest at once."""
        while True:
            now = time.monotonic()
            while self.due and (self.due[0][0] <= now or until_empty.is_set()):
                _, _, issued = heapq.heappop(self.due)
                newest = max(self.first_seen, key=self.first_seen.__getitem__)
                if issued.kid != newest:
                    self.crossed += 1  # its key no longer signs: verified across a rotation
                await self.verify(issued)
            if until_empty.is_set():
                return
            await asyncio.sleep(0.05)

    # -- the workers

    async def sample_rss(self, every: float) -> None:
        while True:
            now = self.now()
            for pid in children(self.server_pid):
                kib = rss_kib(pid)
                if kib is not None:
                    self.rss[pid].append((now, kib))
            await asyncio.sleep(every)

    async def kill_one_worker(self) -> None:
        await asyncio.sleep(max(0.0, self.t0 + self.duration * self.kill_at - time.monotonic()))
        before = children(self.server_pid)
        if not before:
            return
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        self.killed = (self.now(), victim)
        while True:
            new = children(self.server_pid) - before
            if new:
                self.replaced = (self.now(), min(new))
                return
            await asyncio.sleep(0.05)

    async def run(self, http: aiohttp.ClientSession) -> None:
        drained = asyncio.Event()
        later = asyncio.create_task(self.verify_later(drained))
        # Start sessions for the refresh chains: one per concurrent request can be in use.
        await asyncio.gather(*(self.one(http, "password") for _ in range(self.concurrency)))
        self.t0 = time.monotonic()  # the run's clock starts with the traffic
        background = [
            asyncio.create_task(self.sample_rss(max(0.25, min(1.0, self.duration / 100)))),
            asyncio.create_task(self.kill_one_worker()),
        ]
        await asyncio.gather(*(self.traffic(http) for _ in range(self.concurrency)))
        drained.set()
        await later
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# -- the verdict ------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_growth(samples: list[tuple[float, int]], half: float) -> tuple[float, int, int] | None:
    """Growth of the RSS floor over the second half of the run (or of the worker's life).

    Each password hash holds 64 MiB (argon2id, argon2-cffi's defaults) while it runs,
    up to one per core at once, so RSS jumps by 64 MiB steps and back many times a
    second. A leak raises the floor under those steps: compare the lowest sample of
    the window's first third with the lowest of its last third.
    """
    if not samples:
        return None
    start = half if samples[0][0] < half else (samples[0][0] + samples[-1][0]) / 2
    window = [kib for t, kib in samples if t >= start]
    if len(window) < 6:
        return None
    third = len(window) // 3
    first, last = min(window[:third]), min(window[-third:])
    return last / first - 1, first, last


def scan_log(path: Path) -> dict[str, Any]:
    levels: Counter[str] = Counter()
    per_pid: Counter[int] = Counter()
    server_5xx = 0
    errors: Counter[str] = Counter()
    for line in path.read_text("utf-8", errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            levels["(not json)"] += 1
            continue
        levels[doc.get("level", "?")] += 1
        if doc.get("logger") == "issuer.access":
            per_pid[doc.get("pid", 0)] += 1
            if int(doc.get("status", 0)) >= 500:
                server_5xx += 1
        if doc.get("level") in ("ERROR", "CRITICAL"):
            errors[str(doc.get("event"))[:160]] += 1
    return {
        "levels": dict(levels),
        "access_lines_per_pid": {str(k): v for k, v in per_pid.items()},
        "access_5xx": server_5xx,
        "errors": dict(errors.most_common(10)),
    }


def verdict(
    soak: Soak, exit_code: int | None, log: dict[str, Any], rotation: int
) -> dict[str, Any]:
    kill_t = soak.killed[0] if soak.killed else None
    at_kill = [
        e for e in soak.errors if kill_t is not None and kill_t <= e[0] <= kill_t + KILL_WINDOW
    ]
    other_errors = [e for e in soak.errors if e not in at_kill]
    fives = sum(n for c in soak.statuses.values() for s, n in c.items() if s >= 500)
    tokens = len(soak.issued)
    not_twice = sum(1 for i in soak.issued if i.ok != [True, True])
    # Tokens issued in the 2 s before the first token of the next key.
    order = sorted(soak.first_seen, key=soak.first_seen.__getitem__)
    edge = [
        i
        for prev, nxt in itertools.pairwise(order)
        for i in soak.issued
        if i.kid == prev and soak.first_seen[nxt] - 2 <= i.at < soak.first_seen[nxt]
    ]
    rotations = len(order) - 1
    wanted_rotations = int(soak.duration // rotation) - 1
    half = soak.duration / 2
    last_t = max((s[-1][0] for s in soak.rss.values() if s), default=0.0)
    memory: dict[str, dict[str, Any]] = {}
    for pid, samples in sorted(soak.rss.items()):
        if samples[-1][0] < last_t - 3:
            continue  # not alive at the end (the killed worker)
        grown = rss_growth(samples, half)
        # A worker started after the midpoint is judged on the second half of its own
        # life, once that is long enough to be past its warm-up (not in a 20 s run).
        through = samples[0][0] < half
        judged = through or samples[-1][0] - samples[0][0] >= 2 * MIN_OWN_WINDOW
        memory[str(pid)] = {
            "judged": judged,
            "samples": len(samples),
            "first_kib": samples[0][1],
            "floor_start_kib": grown[1] if grown else None,
            "floor_end_kib": grown[2] if grown else None,
            "peak_kib": max(kib for _, kib in samples),
            "growth": round(grown[0], 4) if grown else None,
            "series": [[round(t, 1), kib] for t, kib in samples],
        }
    checks = {
        "no 5xx": fives == 0,
        "no connection errors or timeouts but at the kill": not other_errors,
        "no other unexpected status": not soak.unexpected,
        "every token verified twice, none failed": not soak.failures and not_twice == 0,
        f"keys rotated (>= {wanted_rotations})": rotations >= wanted_rotations,
        "verifications across a rotation": soak.crossed > 0,
        "each key in the verifier's JWKS before its first token": not soak.unpublished,
        "a worker was killed and replaced": soak.killed is not None and soak.replaced is not None,
        "the replacement served requests": soak.replaced is not None
        and log["access_lines_per_pid"].get(str(soak.replaced[1]), 0) > 0,
        "worker RSS growth < 10% over the second half": bool(memory)
        and all(
            m["growth"] is not None and m["growth"] < MAX_RSS_GROWTH
            for m in memory.values()
            if m["judged"]
        ),
        "server stopped cleanly (exit 0)": exit_code == 0,
    }
    return {
        "duration_s": soak.duration,
        "rotation_s": rotation,
        "requests": {
            kind: {
                "count": sum(soak.statuses[kind].values()),
                "statuses": {str(s): n for s, n in sorted(soak.statuses[kind].items())},
                "p50_ms": round(percentile(soak.latencies[kind], 0.5), 1),
                "p99_ms": round(percentile(soak.latencies[kind], 0.99), 1),
            }
            for kind in KINDS
        },
        "five_xx": fives,
        "connection_errors_at_kill": len(at_kill),
        "connection_errors_other": len(other_errors),
        "connection_error_kinds": dict(Counter(e[2] for e in soak.errors)),
        "five_xx_examples": [list(u) for u in soak.server_errors[:10]],
        "unexpected": [list(u) for u in soak.unexpected[:10]],
        "unexpected_count": len(soak.unexpected),
        "refresh_fallbacks_to_login": soak.refresh_fallbacks,
        "tokens_issued": tokens,
        "verifications": soak.verified,
        "verification_failures": len(soak.failures),
        "expired_before_verification": soak.late,
        "failure_examples": [list(f) for f in soak.failures[:10]],
        "verified_across_rotation": soak.crossed,
        "issued_within_2s_before_rotation": len(edge),
        "issued_within_2s_before_rotation_ok": sum(1 for i in edge if i.ok == [True, True]),
        "signing_keys_seen": len(order),
        "keys_signing_before_the_verifier_had_them": len(soak.unpublished),
        "rotations": rotations,
        "jwks_fetches_by_verifier": soak.verifier.jwks.fetches,
        "killed": list(soak.killed) if soak.killed else None,
        "replaced": list(soak.replaced) if soak.replaced else None,
        "rss": memory,
        "server_exit": exit_code,
        "server_log": log,
        "checks": checks,
        "passed": all(checks.values()),
    }


def show(report: dict[str, Any], load: tuple[float, float, float]) -> None:
    print(
        f"\nsoak: {report['duration_s']:.0f} s, a new key every {report['rotation_s']} s, "
        f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on "
        f"{os.cpu_count()} cores"
    )
    print(f"{'kind':<20}{'requests':>10}  {'p50 ms':>8}{'p99 ms':>9}  statuses")
    for kind, r in report["requests"].items():
        statuses = " ".join(f"{s}:{n}" for s, n in r["statuses"].items())
        print(f"{kind:<20}{r['count']:>10}  {r['p50_ms']:>8}{r['p99_ms']:>9}  {statuses}")
    print(
        f"5xx: {report['five_xx']}; connection errors at the kill: "
        f"{report['connection_errors_at_kill']}, elsewhere: {report['connection_errors_other']} "
        f"{report['connection_error_kinds'] or ''}; other unexpected: {report['unexpected_count']}"
    )
    print(
        f"tokens issued {report['tokens_issued']}, verifications {report['verifications']}, "
        f"failures {report['verification_failures']}, expired before they could be "
        f"verified {report['expired_before_verification']}; verified after their key stopped "
        f"signing {report['verified_across_rotation']}; issued <2 s before a rotation "
        f"{report['issued_within_2s_before_rotation']} "
        f"(all ok: {report['issued_within_2s_before_rotation_ok']})"
    )
    print(
        f"signing keys seen {report['signing_keys_seen']} ({report['rotations']} rotations); "
        f"verifier JWKS fetches {report['jwks_fetches_by_verifier']}; keys that signed before "
        f"the verifier had fetched them {report['keys_signing_before_the_verifier_had_them']}"
    )
    if report["killed"]:
        k, r = report["killed"], report["replaced"]
        replaced = f"replacement pid {r[1]} at {r[0]:.1f} s" if r else "NO replacement"
        print(f"SIGKILL worker pid {k[1]} at {k[0]:.1f} s; {replaced}")
    for pid, m in report["rss"].items():
        growth = "n/a" if m["growth"] is None else f"{m['growth']:+.1%}"
        print(
            f"worker {pid}: RSS floor {(m['floor_start_kib'] or 0) / 1024:.1f} -> "
            f"{(m['floor_end_kib'] or 0) / 1024:.1f} MiB over the second half ({growth}); "
            f"first sample {m['first_kib'] / 1024:.1f} MiB, peak {m['peak_kib'] / 1024:.1f} MiB "
            f"(argon2: 64 MiB per hash in flight); {m['samples']} samples"
            + ("" if m["judged"] else "; too young to judge")
        )
    log = report["server_log"]
    print(
        f"server log lines by level {log['levels']}; access lines by pid "
        f"{log['access_lines_per_pid']}; exit {report['server_exit']}"
    )
    for line, count in log["errors"].items():
        print(f"  server ERROR x{count}: {line}")
    for check, ok in report["checks"].items():
        print(f"  [{'ok' if ok else 'FAIL'}] {check}")
    print("PASSED" if report["passed"] else "FAILED")


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
                    accounts = await provision(http, env, public)
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
    report = asyncio.run(main_async(args))
    show(report, os.getloadavg())
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    sys.exit(0 if report["passed"] else 1)


if __name__ == "__main__":
    main()
