"""Slow, idle and abandoned connections against a real ``issuer serve`` over real sockets.

The bounds are set small (half a second, a second) so that the waits for the
server's own timeouts stay short; nothing here sleeps to hope. The upper bounds
leave room for a loaded CI machine and are still far below what a bound that
does not work gives (aiohttp's keep-alive is an hour; the trickle lasts 10 s).
"""

from __future__ import annotations

import json
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.live import Served, http, issuer_env, serve

HEADER_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5
KEEPALIVE_TIMEOUT = 1.0
MAX_CONNECTIONS = 20


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("connections")
    env = issuer_env(
        tmp,
        ISSUER_WORKERS="1",
        ISSUER_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        ISSUER_BODY_TIMEOUT=str(BODY_TIMEOUT),
        ISSUER_KEEPALIVE_TIMEOUT=str(KEEPALIVE_TIMEOUT),
        ISSUER_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        ISSUER_ADMIN_MAX_CONNECTIONS="4",
    )
    with serve(env, tmp / "issuer.log") as s:
        s.wait_ready()
        yield s


def connect(served: Served, *, admin: bool = False) -> socket.socket:
    port = int(served.env["ISSUER_ADMIN_PORT" if admin else "ISSUER_PORT"])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def closed_after(sock: socket.socket) -> tuple[bytes, float]:
    start = time.monotonic()
    data = read_all(sock)
    return data, time.monotonic() - start


def parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body) if body else None


GET_LIVEZ = b"GET /livez HTTP/1.1\r\nHost: issuer\r\n\r\n"


def test_an_idle_socket_is_closed_after_the_header_timeout(served: Served) -> None:
    with connect(served) as sock:
        data, waited = closed_after(sock)
    assert data == b""
    assert HEADER_TIMEOUT * 0.8 <= waited < HEADER_TIMEOUT + 5


def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout(
    served: Served,
) -> None:
    with connect(served) as sock:
        sock.sendall(GET_LIVEZ)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        data, waited = closed_after(sock)
    assert data == b""
    assert KEEPALIVE_TIMEOUT * 0.8 <= waited < KEEPALIVE_TIMEOUT + 5


def test_trickled_headers_are_cut_off(served: Served) -> None:
    request = b"GET /livez HTTP/1.1\r\nHost: issuer\r\nX-Slow: " + b"a" * 200
    with connect(served) as sock:
        start = time.monotonic()
        closed = False
        for byte in request:  # one byte every 50 ms: 10 s if nobody stops it
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            sock.settimeout(0.05)
            try:
                if sock.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        waited = time.monotonic() - start
    assert closed, "the server kept reading a head that never ended"
    assert waited < HEADER_TIMEOUT + 5


def test_a_body_that_never_finishes_gets_408_and_a_close(served: Served) -> None:
    with connect(served) as sock:
        sock.sendall(
            b"POST /token HTTP/1.1\r\nHost: issuer\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
            b"grant_type=client_cre"
        )
        data, waited = closed_after(sock)
    status, headers, body = parse(data)
    assert status == 408
    assert body["error"] == "invalid_request"
    assert headers["x-request-id"]
    assert headers["connection"] == "close"
    assert waited < BODY_TIMEOUT + 5


def _token_request(body: bytes) -> bytes:
    return (
        b"POST /token HTTP/1.1\r\nHost: issuer\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body


def test_a_body_over_the_limit_sent_with_its_head_gets_413(served: Served) -> None:
    """The edge takes a body that came whole with its head as it is: the size limit
    (64 KiB) still holds there."""
    with connect(served) as sock:
        sock.sendall(_token_request(b"a=" + b"x" * (64 * 1024)))
        status, headers, body = parse(read_all(sock))
    assert status == 413
    assert body["error"] == "invalid_request"
    assert headers["cache-control"] == "no-store"


@pytest.mark.parametrize("pieces", [1, 3], ids=["with-the-head", "after-the-head"])
def test_a_form_is_read_whole_however_it_arrives(served: Served, pieces: int) -> None:
    """Whole with its head (taken at once) or in pieces after it (read under the body
    timeout): the handler sees the whole form, so an unknown client is a 401, not the
    400 a cut-off grant_type would get."""
    body = b"grant_type=client_credentials&client_id=nobody&client_secret=wrong"
    request = _token_request(body)
    cut = len(request) - len(body) if pieces > 1 else len(request)
    step = max(1, (len(request) - cut) // (pieces - 1)) if pieces > 1 else 1
    with connect(served) as sock:
        sock.sendall(request[:cut])
        for start in range(cut, len(request), step):
            time.sleep(0.05)  # each piece its own segment, well inside BODY_TIMEOUT
            sock.sendall(request[start : start + step])
        status, _, answer = parse(read_all(sock))
    assert (status, answer["error"]) == (401, "invalid_client")


def _metric_lines(served: Served, name: str) -> list[str]:
    _, body = http(served.admin + "/metrics")
    return [line for line in body.decode().splitlines() if line.startswith(name)]


def test_a_client_that_hangs_up_mid_body_is_a_499_not_a_server_error(served: Served) -> None:
    marker = "hang-up-" + str(time.monotonic_ns())
    with connect(served) as sock:
        sock.sendall(
            b"POST /token HTTP/1.1\r\nHost: issuer\r\nX-Request-ID: " + marker.encode() + b"\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
            b"grant_type=client_cre"
        )
    # The access line is written within ACCESS_FLUSH_SECONDS of the answer.
    deadline = time.monotonic() + 5
    while not [
        d
        for d in served.log_lines()
        if d.get("request_id") == marker and d["logger"] == "issuer.access"
    ]:
        assert time.monotonic() < deadline, served.logs()
        time.sleep(0.05)
    mine = [d for d in served.log_lines() if d.get("request_id") == marker]
    access = [d for d in mine if d["logger"] == "issuer.access"]
    assert [(d["route"], d["status"]) for d in access] == [("/token", 499)]
    assert all(d["level"] in ("INFO", "DEBUG") for d in mine), mine
    assert not any("exception" in d for d in mine)
    assert not [
        line for line in _metric_lines(served, "issuer_http_request") if 'status="500"' in line
    ]
    assert not [
        line for line in _metric_lines(served, "issuer_token_errors") if "server_error" in line
    ]
    assert _metric_lines(served, "issuer_client_disconnects_total")[-1].endswith(" 1.0")
    assert [
        line
        for line in _metric_lines(served, "issuer_http_request_duration_seconds_count")
        if 'route="/token"' in line and 'status="499"' in line
    ]


def test_past_the_connection_limit_new_connections_get_503_and_admin_still_answers(
    served: Served,
) -> None:
    with ExitStack() as stack:
        held = [stack.enter_context(connect(served)) for _ in range(MAX_CONNECTIONS)]
        # Each has been accepted and counted once it has answered a request.
        for sock in held:
            sock.sendall(GET_LIVEZ)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        refused = []
        for _ in range(30):
            with connect(served) as sock:
                refused.append(read_all(sock))
        status, headers, body = parse(refused[0])
        assert status == 503
        assert body["error"] == "temporarily_unavailable"
        assert headers["x-request-id"]
        assert headers["retry-after"] == "1"
        assert all(raw.startswith(b"HTTP/1.1 503") for raw in refused)
        # The admin listener has a budget of its own.
        assert http(served.admin + "/livez")[0] == 200
        assert http(served.admin + "/readyz")[0] == 200
        for sock in held:
            sock.sendall(GET_LIVEZ)  # they are still served, past the keep-alive bound
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    lines = [d for d in served.log_lines() if d.get("condition") == "public:limit"]
    assert len(lines) == 1, lines  # 30 refusals, one line
    assert "ISSUER_MAX_CONNECTIONS (20) reached" in lines[0]["event"]
    # With the held sockets closed, the listener takes new connections again.
    deadline = time.monotonic() + 5
    while http(served.public + "/livez")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def low_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def test_the_defaults_fit_an_open_file_limit_of_1024(tmp_path: Path) -> None:
    env = issuer_env(tmp_path, ISSUER_WORKERS="1")
    with (tmp_path / "issuer.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "issuer", "serve"],
            env=env,
            stdout=out,
            stderr=out,
            preexec_fn=low_limit,
        )
        try:
            deadline = time.monotonic() + 30
            while "serving on" not in (tmp_path / "issuer.log").read_text():
                assert proc.poll() is None, (tmp_path / "issuer.log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0


def test_start_up_refuses_a_connection_limit_above_the_open_file_limit(tmp_path: Path) -> None:
    env = issuer_env(tmp_path, ISSUER_WORKERS="1", ISSUER_MAX_CONNECTIONS="5000")
    done = subprocess.run(
        [sys.executable, "-m", "issuer", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=low_limit,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        "issuer: configuration error: ISSUER_MAX_CONNECTIONS: 5000 connections"
    )
    assert "limit is 1024" in lines[0]


def test_a_burst_past_the_open_file_limit_leaves_admin_answering_and_logs_no_error(
    tmp_path: Path,
) -> None:
    """The incident: 1,100 idle sockets against a worker limited to 1,024 open files."""
    env = issuer_env(tmp_path, ISSUER_WORKERS="1")  # the default caps
    log = tmp_path / "issuer.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "issuer", "serve"],
            env=env,
            stdout=out,
            stderr=out,
            preexec_fn=low_limit,
        )
        try:
            served = Served(proc, env, log, out)
            served.wait_ready()
            with ExitStack() as stack:
                port = int(env["ISSUER_PORT"])
                for _ in range(1100):
                    stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
                assert http(served.admin + "/livez")[0] == 200
                status, body = http(served.public + "/livez")
                assert status == 503
                assert json.loads(body)["error"] == "temporarily_unavailable"
            levels = [d["level"] for d in served.log_lines()]
            assert "ERROR" not in levels, served.logs()
            refused = [d for d in served.log_lines() if d.get("condition") == "public:limit"]
            assert len(refused) == 1
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
