"""The soak's load: mixed requests, every token verified twice, worker RSS, one SIGKILL.

See ``bench/soak.py`` for the command and what it checks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import heapq
import json
import os
import random
import signal
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from argon2 import PasswordHasher

from issuer.verifier import TokenError, Verifier

KINDS = ("jwks", "client_credentials", "refresh", "password")
WEIGHTS = (80, 15, 4, 1)
EXPECTED = {"jwks": {200, 304}, "client_credentials": {200}, "refresh": {200}, "password": {200}}
NEW_CONNECTIONS = 0.1
SESSIONS_KEPT = 64


@dataclass
class Accounts:
    service: dict[str, str]  # the Authorization header of each client
    service_id: str
    app: dict[str, str]
    app_id: str
    users: list[tuple[str, str, str]]  # username, password, user id


def children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


# argon2id's working memory: one anonymous mapping of m KiB (glibc adds a page) per hash
# in flight, freed when the hash ends.
_ARGON2_KIB = PasswordHasher().memory_cost
ARGON2_MAPPING_KIB = (_ARGON2_KIB, _ARGON2_KIB + 4)


def rss_kib(pid: int) -> int | None:
    """Resident KiB, not counting argon2's working memory of hashes in flight.

    Each password hash holds 64 MiB while it runs, and on a busy machine (logins hash
    at nice 10) a hash can last seconds: counted, it would hide a leak or fake one.
    """
    total = argon2 = 0
    size = 0
    anonymous = False
    try:
        with open(f"/proc/{pid}/smaps") as smaps:
            for line in smaps:
                field, _, rest = line.partition(" ")
                if not field.endswith(":"):  # a mapping's header: address perms ... [path]
                    anonymous = len(line.split()) == 5
                elif field == "Size:":
                    size = int(rest.split()[0])
                elif field == "Rss:":
                    kib = int(rest.split()[0])
                    total += kib
                    if anonymous and size in ARGON2_MAPPING_KIB:
                        argon2 += kib
    except (OSError, ValueError):
        return None
    return total - argon2 if total else None


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
    key_states: dict[str, int] = field(default_factory=dict)
    key_gaps: list[float] = field(default_factory=list)  # between activations, in order
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
