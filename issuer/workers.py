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
from issuer.app import create_app
from issuer.appkeys import admin_app_key
from issuer.config import Settings
from issuer.connections import (
    BACKLOG,
    Certificate,
    Guard,
    GuardedSite,
    Limits,
    check_open_files,
    limits,
    load_certificate,
)
from issuer.errors import ConfigError
from issuer.kek import load_kek
from issuer.lifecycle import open_store
from issuer.metrics import MULTIPROC_ENV

log = logging.getLogger("issuer.workers")
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


def _ports(settings: Settings) -> tuple[tuple[str, str, int], tuple[str, str, int]]:
    return (
        ("ISSUER_PORT", settings.host, settings.port),
        ("ISSUER_ADMIN_PORT", settings.admin_host, settings.admin_port),
    )


def bind(name: str, host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """The listening socket, or one line naming the setting (busy port, unknown host)."""
    try:
        return listen_socket(host, port, reuse_port=reuse_port)
    except socket.gaierror as exc:
        host_name = "ISSUER_HOST" if name == "ISSUER_PORT" else "ISSUER_ADMIN_HOST"
        raise ConfigError(f"{host_name}: cannot resolve {host!r}: {exc.strerror}") from None
    except OSError as exc:
        # create_server's strerror repeats the address in Python's words; errno's is enough.
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(f"{name}: cannot listen on {host}:{port}: {why}") from None


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
    limits: Limits
    tls: Certificate | None = None
    site: GuardedSite | None = None

    async def start(self) -> None:
        assert self.runner.server is not None
        self.guard = Guard(self.runner.server, self.limits)
        tls = self.tls.context if self.tls is not None else None
        self.site = GuardedSite(self.runner, self.sock, self.guard, tls)
        await self.site.start()

    async def stop_accepting(self) -> None:
        assert self.site is not None
        queued = take_queued(self.sock)
        # No await between taking the queue and closing the socket (site.stop closes it
        # synchronously), so no connection can slip into the queue in between.
        await self.site.stop()
        loop = asyncio.get_running_loop()
        tls = self.tls.context if self.tls is not None else None
        for conn in queued:
            await loop.connect_accepted_socket(
                self.guard,
                sock=conn,
                ssl=tls,
                ssl_handshake_timeout=self.limits.header_timeout if tls else None,
            )


async def serve(settings: Settings, *, reuse_port: bool = False) -> int:
    """Serve both listeners in this process until SIGTERM or SIGINT; then drain and exit 0."""
    check_open_files(settings)
    certificate = load_certificate(settings)
    # Bind before opening the database: a busy port is the operator's to fix, and
    # says so in one line, without a database having been created for nothing.
    socks: list[socket.socket] = []
    try:
        for name, host, port in _ports(settings):
            socks.append(bind(name, host, port, reuse_port=reuse_port))
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    app = create_app(settings)
    grace = settings.shutdown_grace
    public_runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace)
    admin_runner = web.AppRunner(app[admin_app_key], access_log=None, shutdown_timeout=grace)
    listeners: list[Listener] = []
    try:
        await public_runner.setup()
        await admin_runner.setup()
        for runner, sock, lim in zip(
            (public_runner, admin_runner), socks, limits(settings), strict=True
        ):
            listeners.append(Listener(runner, sock, lim, certificate))
        for listener in listeners:
            await listener.start()
        scheme = "https" if certificate is not None else "http"
        log.info(
            "issuer %s serving on %s://%s:%d (admin %s://%s:%d), iss=%s",
            __version__,
            scheme,
            settings.host,
            socks[0].getsockname()[1],
            scheme,
            settings.admin_host,
            socks[1].getsockname()[1],
            settings.issuer,
            extra={"event_loop": type(asyncio.get_running_loop()).__module__.partition(".")[0]},
        )
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        loop.add_signal_handler(signal.SIGHUP, _reload, certificate)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        background = []
        if certificate is not None:
            background.append(asyncio.create_task(certificate.watch(), name="tls-watch"))
        if reuse_port:
            background.append(asyncio.create_task(_stop_when_orphaned(stopping)))
        await stopping.wait()
        for task in background:
            task.cancel()
        log.info("stopping: draining requests in flight (up to %ss)", grace)
        for listener in listeners:
            await listener.stop_accepting()
        await asyncio.sleep(SETTLE)
    finally:
        for sock in socks:
            sock.close()
        # Admin first: the public app's cleanup closes the store both use.
        await admin_runner.cleanup()
        await public_runner.cleanup()
    log.info("stopped")
    return 0


def _reload(certificate: Certificate | None) -> None:
    if certificate is None:
        log.info("SIGHUP: no TLS certificate to reload (ISSUER_TLS_CERT_FILE is not set)")
    else:
        certificate.reload()


async def _stop_when_orphaned(stopping: asyncio.Event) -> None:
    """A worker whose parent died (SIGKILL, OOM) stops instead of serving on unsupervised."""
    parent = os.getppid()
    while os.getppid() == parent:  # noqa: ASYNC110 (no event tells us; polling is the way)
        await asyncio.sleep(1)
    log.warning("the parent process is gone; stopping")
    stopping.set()


# -- the parent -----------------------------------------------------------------------


def check_ports(settings: Settings, count: int) -> None:
    """SO_REUSEPORT would let us share a port with another server: refuse that up front.

    Port 0 is refused with several workers: each worker binds its own socket (so
    the kernel spreads connections over them), and each would get a different
    random port, which no client could use.
    """
    for name, host, port in _ports(settings):
        if port == 0:
            raise ConfigError(
                f"{name}: 0 (a random port) needs --workers 1; with {count} workers each "
                "would listen on a different port"
            )
        bind(name, host, port, reuse_port=False).close()


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
        # The worker starts with SIGHUP blocked (a blocked mask is inherited across
        # exec) and unblocks it once its handler is installed: a reload forwarded
        # while it starts would otherwise kill it after it has begun to listen.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "issuer", "serve", "--worker", env=self.env
            )
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
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

    def forward(self, sig: signal.Signals) -> None:
        for worker in list(self.workers.values()):
            if worker.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(sig)

    async def run(self, count: int) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        # SIGHUP reloads the TLS certificate: each worker does it for itself.
        loop.add_signal_handler(signal.SIGHUP, self.forward, signal.SIGHUP)
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
    check_ports(settings, count)
    check_open_files(settings)
    load_certificate(settings)  # a bad certificate stops the parent, not N workers in a loop
    await prepare(settings)
    path, ours = metrics_dir()
    env = {**os.environ, MULTIPROC_ENV: str(path), "ISSUER_AUTO_MIGRATE": "false"}
    log.info("issuer %s starting %d workers", __version__, count)
    try:
        return await Supervisor(settings, env, path).run(count)
    finally:
        if ours:
            shutil.rmtree(path, ignore_errors=True)
