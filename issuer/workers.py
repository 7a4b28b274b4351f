"""``issuer serve``: one worker process, or a small parent that runs N of them on the same ports.

With ``--workers N`` (default: one per core) the parent migrates the database
once, then starts N copies of ``issuer serve --worker``; each binds both ports
with ``SO_REUSEPORT``, so the kernel spreads connections over them. The parent
restarts a worker that dies, forwards SIGTERM/SIGINT, and exits 0 once every
worker has drained and exited 0. It serves nothing itself and holds no state.

A worker that gets SIGTERM stops accepting (connections the kernel has already
queued are taken and served, not reset), lets requests in flight finish within
``ISSUER_SHUTDOWN_GRACE``, and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from issuer import __version__
from issuer.app import create_app, open_store
from issuer.appkeys import admin_app_key
from issuer.config import Settings
from issuer.errors import ConfigError
from issuer.kek import load_kek
from issuer.metrics import MULTIPROC_ENV

log = logging.getLogger("issuer.workers")
BACKLOG = 1024
# Time for requests on connections taken at shutdown to be read and started.
SETTLE = 0.5
RESTART_BACKOFF = (0.5, 30.0)
# A worker that lived this long had not been crash-looping: restart it at once.
STABLE_AFTER = 30.0


# -- one worker ---------------------------------------------------------------------


def listen_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family, _, _, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.create_server(addr[:2], family=family, backlog=BACKLOG, reuse_port=reuse_port)
    sock.setblocking(False)
    return sock


def take_queued(sock: socket.socket) -> list[socket.socket]:
    """Connections the kernel completed but nobody accepted yet: closing would reset them."""
    taken: list[socket.socket] = []
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:  # BlockingIOError: the queue is empty
            return taken
        conn.setblocking(False)
        taken.append(conn)


@dataclass
class Listener:
    runner: web.AppRunner
    sock: socket.socket
    site: web.SockSite | None = None

    async def start(self) -> None:
        self.site = web.SockSite(self.runner, self.sock)
        await self.site.start()

    async def stop_accepting(self) -> None:
        assert self.site is not None
        queued = take_queued(self.sock)
        # No await between taking the queue and closing the socket (site.stop closes it
        # synchronously), so no connection can slip into the queue in between.
        await self.site.stop()
        loop = asyncio.get_running_loop()
        for conn in queued:
            await loop.connect_accepted_socket(self.runner.server, sock=conn)  # type: ignore[arg-type]


async def serve(settings: Settings, *, reuse_port: bool = False) -> int:
    """Serve both listeners in this process until SIGTERM or SIGINT; then drain and exit 0."""
    app = create_app(settings)
    grace = settings.shutdown_grace
    public_runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace)
    admin_runner = web.AppRunner(app[admin_app_key], access_log=None, shutdown_timeout=grace)
    await public_runner.setup()
    await admin_runner.setup()
    listeners: list[Listener] = []
    try:
        for runner, host, port in (
            (public_runner, settings.host, settings.port),
            (admin_runner, settings.admin_host, settings.admin_port),
        ):
            listeners.append(Listener(runner, listen_socket(host, port, reuse_port=reuse_port)))
        for listener in listeners:
            await listener.start()
        log.info(
            "issuer %s serving on http://%s:%d (admin http://%s:%d), iss=%s",
            __version__,
            settings.host,
            listeners[0].sock.getsockname()[1],
            settings.admin_host,
            listeners[1].sock.getsockname()[1],
            settings.issuer,
        )
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        orphan_watch = None
        if reuse_port:
            orphan_watch = asyncio.create_task(_stop_when_orphaned(stopping))
        await stopping.wait()
        if orphan_watch is not None:
            orphan_watch.cancel()
        log.info("stopping: draining requests in flight (up to %ss)", grace)
        for listener in listeners:
            await listener.stop_accepting()
        await asyncio.sleep(SETTLE)
    finally:
        for listener in listeners:
            listener.sock.close()
        # Admin first: the public app's cleanup closes the store both use.
        await admin_runner.cleanup()
        await public_runner.cleanup()
    log.info("stopped")
    return 0


async def _stop_when_orphaned(stopping: asyncio.Event) -> None:
    """A worker whose parent died (SIGKILL, OOM) stops instead of serving on unsupervised."""
    parent = os.getppid()
    while os.getppid() == parent:  # noqa: ASYNC110 (no event tells us; polling is the way)
        await asyncio.sleep(1)
    log.warning("the parent process is gone; stopping")
    stopping.set()


# -- the parent -----------------------------------------------------------------------


def check_ports_free(settings: Settings) -> None:
    """SO_REUSEPORT would let us share a port with another server: refuse that up front."""
    for name, host, port in (
        ("ISSUER_PORT", settings.host, settings.port),
        ("ISSUER_ADMIN_PORT", settings.admin_host, settings.admin_port),
    ):
        try:
            listen_socket(host, port, reuse_port=False).close()
        except OSError as exc:
            raise ConfigError(f"{name}: cannot listen on {host}:{port}: {exc.strerror}") from None


async def prepare(settings: Settings) -> None:
    """Once, before any worker starts: the KEK file and the schema."""
    load_kek(settings)
    if settings.auto_migrate:
        store = await open_store(settings)
        await store.close()


def metrics_dir() -> tuple[Path, bool]:
    """PROMETHEUS_MULTIPROC_DIR: the operator's (emptied), or a fresh one we remove at exit."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        # Files of a previous run would be added to this run's counters.
        for stale in path.glob("*.db"):
            stale.unlink()
        return path, False
    return Path(tempfile.mkdtemp(prefix="issuer-metrics-")), True


@dataclass
class Worker:
    slot: int
    proc: asyncio.subprocess.Process
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(self, settings: Settings, env: dict[str, str], metrics_path: Path) -> None:
        self.settings = settings
        self.env = env
        self.metrics_path = metrics_path
        self.stopping = asyncio.Event()
        self.failed = False
        self.workers: dict[int, Worker] = {}

    async def spawn(self, slot: int) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "issuer", "serve", "--worker", env=self.env
        )
        log.info("worker %d started (pid %d)", slot, proc.pid)
        worker = self.workers[slot] = Worker(slot, proc)
        if self.stopping.is_set():
            # The stop began while it was starting: it missed the forwarded signal.
            proc.send_signal(signal.SIGTERM)
        return worker

    async def keep(self, slot: int) -> None:
        """Run worker ``slot``; restart it when it dies, until we are stopping."""
        delay = RESTART_BACKOFF[0]
        while True:
            worker = await self.spawn(slot)
            code = await worker.proc.wait()
            _mark_dead(worker.proc.pid, self.metrics_path)
            if self.stopping.is_set():
                if code != 0:
                    log.warning("worker %d (pid %d) exited with %d", slot, worker.proc.pid, code)
                    self.failed = True
                return
            lived = time.monotonic() - worker.started
            delay = (
                RESTART_BACKOFF[0] if lived > STABLE_AFTER else min(delay * 2, RESTART_BACKOFF[1])
            )
            log.warning(
                "worker %d (pid %d) died unexpectedly (exit %d); restarting in %.1fs",
                slot,
                worker.proc.pid,
                code,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.stopping.wait()
            if self.stopping.is_set():
                return

    async def run(self, count: int) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        tasks = [asyncio.create_task(self.keep(slot)) for slot in range(count)]
        await self.stopping.wait()
        log.info("stopping %d workers (grace %ss)", count, self.settings.shutdown_grace)
        for worker in list(self.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        # Each worker drains both listeners in turn; past that, something is stuck.
        deadline = 2 * self.settings.shutdown_grace + 10
        _, stuck = await asyncio.wait(tasks, timeout=deadline)
        if stuck:
            for worker in self.workers.values():
                if worker.proc.returncode is None:
                    log.error(
                        "worker pid %d did not stop in %ss; killing it", worker.proc.pid, deadline
                    )
                    with contextlib.suppress(ProcessLookupError):
                        worker.proc.kill()
            await asyncio.wait(stuck)
            self.failed = True
        log.info("stopped")
        return 1 if self.failed else 0


def _mark_dead(pid: int, path: Path) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


async def supervise(settings: Settings, count: int) -> int:
    """The parent of ``count`` workers; returns the exit code."""
    check_ports_free(settings)
    await prepare(settings)
    path, ours = metrics_dir()
    env = {**os.environ, MULTIPROC_ENV: str(path), "ISSUER_AUTO_MIGRATE": "false"}
    log.info("issuer %s starting %d workers", __version__, count)
    try:
        return await Supervisor(settings, env, path).run(count)
    finally:
        if ours:
            shutil.rmtree(path, ignore_errors=True)
