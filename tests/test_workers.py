"""``issuer serve --workers N``: key creation once, metrics across workers, restarts, SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from issuer import cli as issuer_cli
from issuer.clock import SystemClock
from issuer.config import Settings
from issuer.context import Context
from issuer.keyring import KeyState
from issuer.lifecycle import start, stop
from tests.conftest import basic_auth
from tests.live import Served, cli, http, issuer_env, serve

WORKERS = 2


async def test_workers_starting_together_on_an_empty_database_make_two_keys(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=database_url, kek=(os.urandom(32),), kek_file=tmp_path / "kek.json"
    )
    contexts = [Context(settings, SystemClock()) for _ in range(4)]
    await asyncio.gather(*(start(ctx) for ctx in contexts))
    try:
        for ctx in contexts:
            await ctx.keyring.load()
            states = sorted(v.state for v in ctx.keyring.views())
            assert states == sorted([KeyState.ACTIVE, KeyState.PENDING])
    finally:
        for ctx in contexts:
            await stop(ctx)


def children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return {int(p) for p in out.stdout.split()}


def wait_for(probe: Any, what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def draining(served: Served) -> int:
    return sum("draining" in d.get("event", "") for d in served.log_lines())


def serving(served: Served, pids: set[int]) -> bool:
    started = {d["pid"] for d in served.log_lines() if "serving on" in d.get("event", "")}
    return pids <= started


def metric(served: Served, name: str) -> float:
    _, body = http(served.admin + "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.slow
async def test_workers_share_the_ports_restart_and_drain_on_sigterm(tmp_path: Path) -> None:
    env = issuer_env(tmp_path, ISSUER_WORKERS=str(WORKERS), ISSUER_LOG_LEVEL="INFO")
    with serve(env, tmp_path / "issuer.log", ["--workers", str(WORKERS)]) as served:
        served.wait_ready()
        parent = served.proc.pid
        wait_for(lambda: len(children(parent)) == WORKERS, "the workers")
        wait_for(lambda: serving(served, children(parent)), "the workers to listen")
        keys = json.loads(cli(env, "keys", "list", "--json"))["keys"]
        assert sorted(k["state"] for k in keys) == ["active", "pending"]
        client = json.loads(cli(env, "clients", "create", "svc", "--scope", "read"))
        auth = basic_auth(client["client_id"], client["client_secret"])

        # A worker that dies is replaced; the service stays up.
        victim = min(children(parent))
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: victim not in children(parent) and len(children(parent)) == WORKERS,
            "the replacement worker",
        )
        wait_for(lambda: serving(served, children(parent)), "the replacement to listen")

        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            # Counters add up over every worker, the dead one's included.
            before = metric(served, "issuer_tokens_issued_total")
            for _ in range(20):
                async with session.post(
                    served.public + "/token",
                    data={"grant_type": "client_credentials"},
                    headers=auth,
                ) as resp:
                    assert resp.status == 200

            # The scraped worker adds its own tally at once, the other within
            # metrics.FLUSH_SECONDS: never more than were issued, all of them soon.
            def issued() -> float:
                return metric(served, "issuer_tokens_issued_total") - before

            wait_for(lambda: issued() == 20, "every worker's tokens in the metrics", within=5)
            assert issued() == 20
            pids = {
                d["pid"] for d in served.log_lines() if d.get("route") == "/token" and "status" in d
            }
            assert len(pids) >= 2, "one worker served every connection"

            results = await _sigterm_under_load(served, session, auth)

        assert served.proc.wait(timeout=60) == 0, served.logs()
    _judge(results, served)


Outcome = tuple[str, int | BaseException]


async def _sigterm_under_load(
    served: Served, session: aiohttp.ClientSession, auth: dict[str, str]
) -> list[Outcome]:
    stop_sent, busy = asyncio.Event(), asyncio.Event()
    done = 0

    async def one(i: int) -> Outcome:
        nonlocal done
        rid = f"load-{i}-{uuid.uuid4().hex[:8]}"
        try:
            if i % 2:
                call = session.get(
                    served.public + "/.well-known/jwks.json", headers={"X-Request-ID": rid}
                )
            else:
                call = session.post(
                    served.public + "/token",
                    data={"grant_type": "client_credentials"},
                    headers={**auth, "X-Request-ID": rid},
                )
            async with call as resp:
                await resp.read()
                return rid, resp.status
        except aiohttp.ClientError as exc:
            return rid, exc
        finally:
            done += 1
            if done == 50:
                busy.set()

    async def more_after_the_stop() -> list[Outcome]:
        # New requests keep coming while the workers drain, until the ports refuse them:
        # they may be refused, never reset once the app has them.
        await stop_sent.wait()
        out: list[Outcome] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            batch = await asyncio.gather(*(one(10_000 + len(out) + i) for i in range(20)))
            out.extend(batch)
            if any(isinstance(r, aiohttp.ClientConnectorError) for _, r in batch):
                break
        return out

    held_in = asyncio.Event()

    async def held_across_the_stop() -> Outcome:
        # Forced, whatever the load: a worker has taken this request in (it answered
        # 100 Continue) when SIGTERM comes, and its body arrives only once every worker
        # says it is draining. It must still be answered.
        rid = f"held-{uuid.uuid4().hex[:8]}"
        body = b"grant_type=client_credentials"
        url = urlsplit(served.public)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        head = (
            f"POST /token HTTP/1.1\r\nHost: {url.netloc}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Authorization: {auth['Authorization']}\r\nX-Request-ID: {rid}\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
        )
        writer.write(head.encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100 ")
        held_in.set()
        await stop_sent.wait()
        await asyncio.to_thread(wait_for, lambda: draining(served) >= WORKERS, "the drain")
        writer.write(body)
        line = await reader.readline()
        assert line, "the worker closed a request it had taken in without answering"
        status = int(line.split()[1])
        writer.close()
        return rid, status

    async def stop_when_busy() -> None:
        await busy.wait()
        await held_in.wait()
        os.kill(served.proc.pid, signal.SIGTERM)
        stop_sent.set()

    held = asyncio.create_task(held_across_the_stop())
    first = asyncio.gather(*(one(i) for i in range(400)))
    late = asyncio.create_task(more_after_the_stop())
    await stop_when_busy()
    return [await held, *await first, *await late]


def _judge(results: list[Outcome], served: Served) -> None:
    seen = {
        d.get("request_id"): d for d in served.log_lines() if d.get("logger") == "issuer.access"
    }
    ok = [rid for rid, r in results if r == 200]
    refused = [rid for rid, r in results if isinstance(r, aiohttp.ClientConnectorError)]
    assert len(ok) >= 50, f"only {len(ok)} requests succeeded"
    assert refused, "the ports never stopped accepting"
    # The request held across the stop was answered after every worker began to stop.
    (held,) = [rid for rid, _ in results if rid.startswith("held-")]
    assert held in ok, results[0]
    stopping = max(d["time"] for d in served.log_lines() if "draining" in d.get("event", ""))
    assert seen[held]["time"] > stopping
    for rid, r in results:
        if r == 200 or rid in refused:
            continue
        # Anything else must be a connection the server never took in: an HTTP status
        # (a 5xx above all) or a reset after the app saw the request is a failed request.
        assert isinstance(r, aiohttp.ClientError), f"{rid}: HTTP {r}"
        assert rid not in seen, f"{rid} reached the app ({seen[rid]}) but failed: {r!r}"
    print(
        f"{len(ok)} ok, {len(refused)} refused, "
        f"{len(results) - len(ok) - len(refused)} dropped before the app saw them"
    )
    assert "Traceback" not in served.logs()


@pytest.mark.parametrize(("setting", "loop"), [("true", "uvloop"), ("false", "asyncio")])
def test_serve_runs_on_uvloop_unless_turned_off(tmp_path: Path, setting: str, loop: str) -> None:
    env = issuer_env(tmp_path, ISSUER_WORKERS="1", ISSUER_UVLOOP=setting)
    with serve(env, tmp_path / "issuer.log") as served:
        served.wait_ready()
        started = [d for d in served.log_lines() if "serving on" in d.get("event", "")]
        assert [d["event_loop"] for d in started] == [loop]
        status, _ = http(served.public + "/.well-known/jwks.json")
        assert status == 200


async def _sighup_blocked_in_a_spawned_child() -> bool:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "print(open('/proc/self/status').read())",
            stdout=asyncio.subprocess.PIPE,
        )
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    status = (await proc.communicate())[0].decode()
    (blocked,) = [line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")]
    return bool(int(blocked, 16) & (1 << (signal.SIGHUP - 1)))


def test_the_supervisor_runs_on_a_loop_whose_workers_start_with_sighup_blocked() -> None:
    """A worker starts with SIGHUP blocked until its handler is in place; under uvloop
    (libuv's spawn unblocks every signal in the child) a reload forwarded to a worker
    still starting killed it (exit -1) while the other served."""
    settings = Settings(workers=2, uvloop=True)
    serve_ = issuer_cli.cmd_serve
    supervisor = issuer_cli._loop_factory(settings, serve_, argparse.Namespace(worker=False))
    with asyncio.Runner(loop_factory=supervisor) as runner:
        assert runner.run(_sighup_blocked_in_a_spawned_child())
    # The processes that serve requests still get uvloop.
    worker = issuer_cli._loop_factory(settings, serve_, argparse.Namespace(worker=True))
    assert worker is not None
    assert worker.__module__.startswith("uvloop")
