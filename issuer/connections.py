"""What a listener lets a client hold: bounded time and count per connection, TLS that reloads.

aiohttp bounds none of these by default (its keep-alive is an hour, the body has no
bound), so one host with a thousand idle or trickling sockets could take every file
descriptor of a worker. Each listener gets:

- a cap on open connections (``ISSUER_MAX_CONNECTIONS``; the admin listener has its
  own, so probes and scrapes answer while the public one is flooded): a connection
  over the cap is answered ``503`` in JSON and closed at once;
- a bound from connecting to the end of the first request head
  (``ISSUER_HEADER_TIMEOUT``), and the keep-alive bound between requests
  (``ISSUER_KEEPALIVE_TIMEOUT``, which aiohttp also applies to the next head); the
  body's bound is the edge's (:mod:`issuer.http.middleware`);
- aiohttp's own parser errors (a line or header over 8 KiB, a malformed request
  line) answered as the documented JSON error with ``X-Request-ID``, logged as one
  line that carries no request bytes (the offending header may be a credential).

Each overload condition is logged through :func:`issuer.logs.overload`: one line per
condition per interval, with a count, never one line per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from issuer import logs, metrics
from issuer.config import Settings
from issuer.errors import ConfigError
from issuer.http.middleware import SECURITY_HEADERS, new_request_id, note_finished
from issuer.http.render import json_response

log = logging.getLogger("issuer.connections")
BACKLOG = 1024
# asyncio accepts up to its ``backlog`` connections in one go, before any protocol
# factory runs: that many descriptors can be in use at once beyond the cap, until
# the Guard refuses them. A small batch keeps a burst inside the file budget.
ACCEPT_BATCH = 32
# How often each worker looks at the certificate files for a renewal.
TLS_CHECK_INTERVAL = 10.0
# File descriptors a worker needs besides its connections: listeners, database
# connections, the metrics files, the KEK, logs.
RESERVED_FILES = 60 + 2 * ACCEPT_BATCH


@dataclass(frozen=True, slots=True)
class Limits:
    listener: str  # "public" or "admin", for logs and metrics
    setting: str  # the variable that sets max_connections, named in the overload line
    max_connections: int
    header_timeout: float
    keepalive_timeout: float
    # How long an unread body is drained after an early answer (413, say), so that
    # the client sees the answer rather than a reset; aiohttp's default is 10 s.
    lingering_time: float


def limits(settings: Settings) -> tuple[Limits, Limits]:
    """(public, admin)."""
    return (
        Limits(
            "public",
            "ISSUER_MAX_CONNECTIONS",
            settings.max_connections,
            settings.header_timeout,
            settings.keepalive_timeout,
            settings.body_timeout,
        ),
        Limits(
            "admin",
            "ISSUER_ADMIN_MAX_CONNECTIONS",
            settings.admin_max_connections,
            settings.header_timeout,
            settings.keepalive_timeout,
            settings.body_timeout,
        ),
    )


def check_open_files(settings: Settings) -> None:
    """Raise the soft open-file limit as far as allowed; refuse limits that cannot fit.

    Past the open-file limit, accept() fails and asyncio logs an ERROR for every
    attempt, and the admin listener can no longer accept a probe either.
    """
    import resource

    need = settings.max_connections + settings.admin_max_connections + RESERVED_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < need:
        raise ConfigError(
            f"ISSUER_MAX_CONNECTIONS: {settings.max_connections} connections (plus "
            f"ISSUER_ADMIN_MAX_CONNECTIONS {settings.admin_max_connections} and "
            f"{RESERVED_FILES} spare) need {need} open files, but the limit is {soft} "
            "(ulimit -n): lower the setting or raise the limit"
        )


def _error_bytes(status: int, reason: str, error: str, description: str) -> bytes:
    """A whole HTTP/1.1 error response, for a connection that never reaches aiohttp."""
    body = json_response({"error": error, "error_description": description}).body
    assert isinstance(body, bytes)
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Connection": "close",
        "Cache-Control": "no-store",
        "Retry-After": "1",
        "X-Request-ID": new_request_id(),
        **SECURITY_HEADERS,
    }
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


class _Refused(asyncio.Protocol):
    """A connection over the cap: told 503 and closed, holding its descriptor a moment only."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not an asyncio.Transport subclass under uvloop.
        transport = cast(asyncio.Transport, transport)
        transport.write(
            _error_bytes(
                503,
                "Service Unavailable",
                "temporarily_unavailable",
                "too many open connections; retry shortly",
            )
        )
        transport.close()

    def data_received(self, data: bytes) -> None:
        pass


class Guard:
    """The protocol factory of one listener: counts connections and refuses past the cap."""

    def __init__(self, server: web.Server, lim: Limits) -> None:
        self.server = server
        self.limits = lim
        self.open = 0
        # Made but not yet connected: asyncio accepts a burst of connections and calls
        # connection_made a loop iteration later (after the TLS handshake, with TLS), so
        # counting only open ones would let a burst through. One whose handshake never
        # completes is forgotten once the handshake timeout has surely passed.
        self.pending: dict[GuardedHandler, float] = {}

    def __call__(self) -> asyncio.Protocol:
        loop = asyncio.get_running_loop()
        now = loop.time()
        stale = now - self.limits.header_timeout - 1.0
        for handler in [h for h, t in self.pending.items() if t < stale]:
            del self.pending[handler]
        if self.open + len(self.pending) >= self.limits.max_connections:
            metrics.connection_closed(self.limits.listener, "limit")
            logs.overload(
                f"{self.limits.listener}:limit",
                "connections refused: %s (%d) reached on the %s listener",
                self.limits.setting,
                self.limits.max_connections,
                self.limits.listener,
            )
            return _Refused()
        handler = GuardedHandler(
            self,
            self.server,
            loop=loop,
            keepalive_timeout=self.limits.keepalive_timeout,
            lingering_time=self.limits.lingering_time,
            access_log=None,
        )
        self.pending[handler] = now
        return handler


class GuardedHandler(RequestHandler):
    """aiohttp's request handler with a bound on the first head and JSON parser errors."""

    def __init__(self, guard: Guard, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._counted = False
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._guard.pending.pop(self, None)
        self._guard.open += 1
        self._counted = True
        super().connection_made(transport)
        self._head_timer = asyncio.get_running_loop().call_later(
            self._guard.limits.header_timeout, self._head_timed_out
        )

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._counted = False
            self._guard.open -= 1
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        # aiohttp counts a request once its whole head has been parsed.
        if self._request_count == 0 and self.transport is not None:
            lim = self._guard.limits
            metrics.connection_closed(lim.listener, "header_timeout")
            logs.overload(
                f"{lim.listener}:header_timeout",
                "connections closed: no complete request head within ISSUER_HEADER_TIMEOUT "
                "(%ss) on the %s listener",
                lim.header_timeout,
                lim.listener,
            )
            self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The parser's errors (and aiohttp's last-resort 500): JSON, and no request bytes logged.

        aiohttp's own version logs the exception, whose message quotes up to 100
        bytes of the offending line (an ``Authorization`` header, say), with a
        traceback, and answers in plain text with that message in the body.
        """
        rid = new_request_id()
        if status >= 500:
            # Our own bug past the middleware (which renders every handler error): the
            # traceback is needed, and it is not the parser quoting the request.
            log.error("unhandled error", exc_info=exc, extra={"request_id": rid})
            body = {
                "error": "server_error",
                "error_description": "internal error; quote the request id to the operator",
                "request_id": rid,
            }
        else:
            # The class name only: the message may hold request bytes.
            log.info(
                "bad request refused by the HTTP parser (%s)",
                type(exc).__name__,
                extra={"request_id": rid},
            )
            body = {"error": "invalid_request", "error_description": "malformed HTTP request"}
        note_finished("OTHER", "unparsed", logging.INFO, status, 0.0, rid)
        if request.writer.output_size > 0:
            raise ConnectionError("the response has begun; cannot send an error")
        headers = {"Cache-Control": "no-store", "X-Request-ID": rid, **SECURITY_HEADERS}
        response = json_response(body, status, headers)
        response.force_close()
        return response


class GuardedSite(web.SockSite):
    """``SockSite`` whose connections go through a :class:`Guard`."""

    def __init__(
        self, runner: web.BaseRunner, sock: socket.socket, guard: Guard, tls: ssl.SSLContext | None
    ) -> None:
        super().__init__(runner, sock, ssl_context=tls, backlog=BACKLOG)
        self.guard = guard
        self.tls = tls

    async def start(self) -> None:
        self._runner._reg_site(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard,
            sock=self._sock,
            ssl=self.tls,
            # The handshake is part of the head's time (and bounds the Guard's pending).
            ssl_handshake_timeout=self.guard.limits.header_timeout if self.tls else None,
            backlog=ACCEPT_BATCH,
        )
        # create_server listen()s with the batch size; the kernel's queue stays long.
        self._sock.listen(BACKLOG)


# -- TLS ------------------------------------------------------------------------------


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@contextlib.contextmanager
def _in_memory(data: bytes) -> Iterator[str]:
    """A path that reads ``data``: an anonymous in-memory file, never on disk (Linux)."""
    if not hasattr(os, "memfd_create"):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "pem"
            path.write_bytes(data)
            yield str(path)
        return
    fd = os.memfd_create("issuer-tls", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


class Certificate:
    """The TLS context of both listeners; ``reload()`` swaps in the files' current contents.

    ``load_cert_chain`` on the live context changes what new handshakes present;
    connections already open keep theirs. A renewal that does not load (a
    half-written file, a key that does not match) leaves the old certificate in use.
    """

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamps = self._read_stamps()
        self._load()

    def _read_stamps(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        for name, path in (
            ("ISSUER_TLS_CERT_FILE", self.cert_file),
            ("ISSUER_TLS_KEY_FILE", self.key_file),
        ):
            if not os.access(path, os.R_OK):
                raise ConfigError(f"{name}: cannot read {path.absolute()}")
        return _stamp(self.cert_file), _stamp(self.key_file)

    def _load(self) -> None:
        # Checked on a scratch context first: OpenSSL puts a new certificate into the
        # context before it reads the key, so a pair that does not load (a renewal caught
        # between writing its two files) would leave the live one with no usable key,
        # and every handshake would fail. Both loads read the same bytes, kept in memory.
        cert, key = self.cert_file.read_bytes(), self.key_file.read_bytes()
        with _in_memory(cert) as cert_path, _in_memory(key) as key_path:
            scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                scratch.load_cert_chain(cert_path, key_path)
            except ssl.SSLError as exc:
                raise ConfigError(
                    f"ISSUER_TLS_CERT_FILE: {self.cert_file.absolute()} and ISSUER_TLS_KEY_FILE "
                    f"{self.key_file.absolute()} do not load as a PEM chain and its key "
                    f"({exc.reason or 'unreadable'})"
                ) from None
            self.context.load_cert_chain(cert_path, key_path)

    def reload(self) -> bool:
        try:
            self._stamps = self._read_stamps()
            self._load()
        except (ConfigError, OSError) as exc:
            log.error("TLS certificate not reloaded; the previous one stays in use: %s", exc)
            return False
        log.info("TLS certificate reloaded from %s", self.cert_file)
        return True

    def changed(self) -> bool:
        try:
            return self._read_stamps() != self._stamps
        except (ConfigError, OSError):
            return False  # mid-rename: look again next time

    async def watch(self, interval: float = TLS_CHECK_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.changed():
                self.reload()


def load_certificate(settings: Settings) -> Certificate | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return Certificate(settings.tls_cert_file, settings.tls_key_file)
