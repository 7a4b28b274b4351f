"""Real servers on threads for the adapter tests: a JWKS/feed endpoint and each framework's app.

Every app runs in a real server (aiohttp's runner, uvicorn, waitress) on its own
thread and is reached over real HTTP with ``http.client``, so the tests see
exactly the bytes a client sees, duplicate headers included.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class KeyServer:
    """The issuer's JWKS and revocation feed, served by the standard library on a thread."""

    keys: list[dict[str, Any]]
    feed_items: list[dict[str, Any]] = field(default_factory=list)
    user_agents: list[str] = field(default_factory=list)
    jwks_hits: int = 0
    gate: threading.Event | None = None  # when set, JWKS requests wait for it
    url: str = ""

    @contextmanager
    def running(self) -> Iterator[KeyServer]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.user_agents.append(self.headers.get("User-Agent", ""))
                if self.path.startswith("/.well-known/jwks.json"):
                    outer.jwks_hits += 1
                    if outer.gate is not None:
                        outer.gate.wait(10)
                    body = json.dumps({"keys": outer.keys}).encode()
                    self._send(body, "public, max-age=300")
                elif self.path.startswith("/revocations"):
                    after = self.path.partition("after=")[2]
                    start = int(after) if after else 0
                    page = outer.feed_items[start:]
                    body = json.dumps({"items": page, "next": str(start + len(page))}).encode()
                    self._send(body, "no-store")
                else:
                    self.send_error(404)

            def _send(self, body: bytes, cache_control: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", cache_control)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(port: int, path: str, headers: list[tuple[str, str]] = ()) -> Answer:  # type: ignore[assignment]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
    finally:
        conn.close()


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def aiohttp_server(make_app: Callable[[], Any]) -> Iterator[int]:
    from aiohttp import web

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(make_app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box["runner"] = runner
        box["port"] = runner.addresses[0][1]

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(box["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield box["port"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@contextmanager
def uvicorn_server(app: Any) -> Iterator[int]:
    import uvicorn

    sock = free_socket()
    config = uvicorn.Config(app, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        threading.Event().wait(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def waitress_server(app: Any) -> Iterator[int]:
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield int(server.effective_port)
    finally:
        # The loop runs while any channel is open: close them all, then it returns.
        server.task_dispatcher.shutdown()
        for channel in list(server._map.values()):
            channel.close()
        thread.join(10)
