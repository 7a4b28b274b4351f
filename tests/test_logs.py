"""JSON log lines: context fields, exceptions, access lines, and no secrets in a full run."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from issuer import logs
from issuer.context import Context
from issuer.jsontext import json_str
from issuer.kek import load_kek
from issuer.later import Later
from issuer.logs import (
    JSONFormatter,
    LibraryFloodFilter,
    TextFormatter,
    request_id_var,
    route_var,
)
from tests.conftest import MakeClient, basic_auth


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Everything logged during the test, formatted as the server formats it."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buf
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def configure_json(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[], logs.JSONLineHandler]]:
    """Set up the service's own logging (``configure``), from within the test: pytest adds
    its capture handler to the root logger after the fixtures have run. The test's
    handlers are put back after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    monkeypatch.setattr(logs, "_json_handler", None)

    def configure() -> logs.JSONLineHandler:
        logs.configure("INFO", "json")
        assert logs._json_handler is not None
        return logs._json_handler

    try:
        yield configure
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)


def parsed(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_json_line_has_context_extra_fields_and_the_exception() -> None:
    rid = request_id_var.set("req-1")
    route = route_var.set("/token")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            record = logging.getLogger("issuer.test").makeRecord(
                "issuer.test", logging.ERROR, __file__, 1, "it %s", ("failed",), None
            )
            record.exc_info = sys.exc_info()
        record.status = 500
        line = JSONFormatter().format(record)
    finally:
        request_id_var.reset(rid)
        route_var.reset(route)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["event"] == "it failed"
    assert doc["level"] == "ERROR"
    assert doc["logger"] == "issuer.test"
    assert doc["request_id"] == "req-1"
    assert doc["route"] == "/token"
    assert doc["status"] == 500
    assert doc["time"].endswith("+00:00")
    assert doc["exception"]["type"] == "ValueError"
    assert doc["exception"]["message"] == "boom"
    assert "Traceback" in doc["exception"]["traceback"]


def test_text_format_is_one_line_with_the_fields() -> None:
    record = logging.makeLogRecord({"msg": "GET /x 200", "levelname": "INFO", "status": 200})
    line = TextFormatter().format(record)
    assert "GET /x 200" in line
    assert "status=200" in line


async def test_a_full_run_logs_access_lines_and_no_secret(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    ctx: Context,
    make_client: MakeClient,
    admin_token: str,
    log_lines: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bearer = {"Authorization": f"Bearer {admin_token}"}
    # An admin creates a client over the API and gets its secret once.
    created = await admin.post(
        "/admin/clients", json={"name": "svc", "scopes": ["read"]}, headers=bearer
    )
    assert created.status == 201
    new = await created.json()
    ok = await client.post(
        "/token?debug=secret-in-query",
        data={"grant_type": "client_credentials"},
        headers={**basic_auth(new["client_id"], new["client_secret"]), "X-Request-ID": "trace-1"},
    )
    assert ok.status == 200
    access_token = (await ok.json())["access_token"]
    wrong = await client.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": new["client_id"],
            "client_secret": "hunter2-wrong-secret",
        },
    )
    assert wrong.status == 401
    for path in ("/admin/keys", "/admin/audit", "/admin/clients"):
        assert (await admin.get(path, headers=bearer)).status == 200
    assert (
        await admin.post("/admin/keys/rotate", json={"immediate": True}, headers=bearer)
    ).status == 201
    assert (
        await admin.get("/admin/keys", headers={"Authorization": "Bearer forged.token.x"})
    ).status == 401

    async def broken() -> None:
        raise RuntimeError("the database fell over")

    monkeypatch.setattr(ctx.store, "list_clients", broken)
    failed = await admin.get("/admin/clients", headers=bearer)
    assert failed.status == 500
    failed_rid = failed.headers["X-Request-ID"]

    text = log_lines.getvalue()
    lines = parsed(log_lines)
    access = [d for d in lines if d["logger"] == "issuer.access"]
    token_line = next(d for d in access if d.get("request_id") == "trace-1")
    assert token_line["route"] == "/token"
    assert token_line["method"] == "POST"
    assert token_line["status"] == 200
    assert isinstance(token_line["duration_ms"], float)
    assert any(d["status"] == 401 and d["route"] == "/token" for d in access)
    error = next(d for d in lines if d.get("exception"))
    assert error["request_id"] == failed_rid
    assert error["route"] == "/admin/clients"
    assert error["exception"]["type"] == "RuntimeError"
    assert "the database fell over" in error["exception"]["message"]

    kek = load_kek(ctx.settings).keys[0]
    secrets = {
        "client secret": new["client_secret"],
        "wrong secret": "hunter2-wrong-secret",
        "access token": access_token,
        "admin token": admin_token,
        "token signature": access_token.rsplit(".", 1)[1],
        "query string": "secret-in-query",
        "kek": base64.urlsafe_b64encode(kek).rstrip(b"=").decode(),
        "private key": "PRIVATE KEY",
        "basic header": basic_auth(new["client_id"], new["client_secret"])["Authorization"],
    }
    for what, value in secrets.items():
        assert value not in text, f"the {what} appears in the logs"


def test_a_flood_of_library_errors_is_one_line_per_interval() -> None:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JSONFormatter())
    handler.addFilter(LibraryFloodFilter(interval=3600))
    noisy = logging.getLogger("asyncio")
    ours = logging.getLogger("issuer.test")
    for logger in (noisy, ours):
        logger.addHandler(handler)
    try:
        for _ in range(1000):
            noisy.error("socket.accept() out of system resource")
        noisy.error("another condition")
        ours.error("our own line")
        ours.error("our own line")
    finally:
        for logger in (noisy, ours):
            logger.removeHandler(handler)
    events = [d["event"] for d in parsed(buf)]
    assert events == [
        "socket.accept() out of system resource",
        "another condition",
        "our own line",
        "our own line",
    ]


def test_overload_lines_are_one_per_condition_per_interval(log_lines: io.StringIO) -> None:
    for _ in range(500):
        logs.overload("test:flood", "connections refused: %s reached", "ISSUER_MAX_CONNECTIONS")
    lines = [d for d in parsed(log_lines) if d.get("condition") == "test:flood"]
    assert len(lines) == 1
    assert lines[0]["event"].startswith("connections refused: ISSUER_MAX_CONNECTIONS reached")


def test_access_line_written_directly_matches_the_formatted_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With only the configured JSON handler, ``access`` skips the LogRecord: same line."""
    direct, via_record = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    monkeypatch.setattr(logs, "_json_handler", None)
    monkeypatch.setattr(sys, "stderr", direct)
    made: list[str] = []
    make_record = logging.Logger.makeRecord

    def counting(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(self.name)
        return make_record(self, *args, **kwargs)

    monkeypatch.setattr(logging.Logger, "makeRecord", counting)
    rid, route = request_id_var.set("req-7"), route_var.set("/token")
    try:
        logs.configure("INFO", "json")
        logs.access("POST", "/token", 401, 3.14159, quiet=False)
        logs.access("GET", "/livez", 200, 0.5, quiet=True)  # DEBUG: below INFO
        assert made == []
        # A second handler: the record goes to both, so it is made and formatted as ever.
        second = logging.StreamHandler(via_record)
        second.setFormatter(JSONFormatter())
        root.addHandler(second)
        logs.access("POST", "/token", 401, 3.14159, quiet=False)
        assert made == ["issuer.access"]
    finally:
        request_id_var.reset(rid)
        route_var.reset(route)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
    first, *rest = direct.getvalue().splitlines()
    assert len(rest) == 1  # the second line: the formatted record, to stderr as well
    fast, slow = json.loads(first), json.loads(via_record.getvalue())
    assert list(fast) == list(slow)
    assert {k: v for k, v in fast.items() if k != "time"} == {
        k: v for k, v in slow.items() if k != "time"
    }
    assert fast["event"] == "POST /token 401"
    assert fast["duration_ms"] == 3.14
    assert fast["time"][:19] <= slow["time"][:19]
    assert len(fast["time"]) == len(slow["time"])
    assert fast["time"].endswith("+00:00")


async def test_access_lines_go_out_in_one_write_after_a_pause_and_before_any_later_record(
    configure_json: Callable[[], logs.JSONLineHandler], monkeypatch: pytest.MonkeyPatch
) -> None:
    json_handler = configure_json()
    writes: list[str] = []

    class Recording(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    monkeypatch.setattr(json_handler, "stream", Recording())
    loop = asyncio.get_running_loop()
    scheduled: list[tuple[float, Callable[[], None]]] = []
    monkeypatch.setattr(
        loop, "call_later", lambda delay, callback: scheduled.append((delay, callback))
    )
    logs.access("GET", "/flush-test", 200, 1.0, quiet=False)
    logs.access("GET", "/flush-test", 304, 1.0, quiet=False)
    # One write scheduled for both, and nothing written before it is due.
    assert [delay for delay, _ in scheduled] == [logs.ACCESS_FLUSH_SECONDS]
    assert writes == []
    scheduled[0][1]()
    assert len(writes) == 1  # both lines, one write
    assert [json.loads(x)["status"] for x in writes[0].splitlines()] == [200, 304]
    logs.access("GET", "/flush-test", 404, 1.0, quiet=False)
    logging.getLogger("issuer.test").warning("after the 404")
    # The record waited for nothing: the queued line went out first, then it.
    events = [json.loads(x)["event"] for w in writes[1:] for x in w.splitlines()]
    assert events == ["GET /flush-test 404", "after the 404"]


def test_a_forked_child_writes_its_own_pid_in_access_lines(
    configure_json: Callable[[], logs.JSONLineHandler], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hand-made line's fixed parts are kept per route; the pid among them is the
    writer's own, also in a child forked after the parent wrote the same route."""
    json_handler = configure_json()
    monkeypatch.setattr(json_handler, "stream", io.StringIO())
    logs.access("GET", "/fork-test", 200, 1.0, quiet=False)  # the parent's fragments
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's coverage is not collected)
        try:
            json_handler.stream = os.fdopen(write_end, "w")
            logs.access("GET", "/fork-test", 200, 1.0, quiet=False)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        line = json.loads(pipe.read())
    os.waitpid(child, 0)
    assert line["event"] == "GET /fork-test 200"
    assert line["pid"] == child != os.getpid()


@pytest.mark.parametrize(
    "text",
    [
        "POST /token 401",
        "/admin/keys/{kid}",
        'a"b',
        "back\\slash",
        "tab\there",
        "new\nline",
        "\x7f",
        "\x00",
        "é",
        "名前",
        "\u2028",
        "",
        "-",
    ],
)
def test_the_hand_made_access_line_escapes_as_json_does(text: str) -> None:
    assert json_str(text) == json.dumps(text, ensure_ascii=False)
    assert json.loads(json_str(text)) == text


@pytest.mark.parametrize(
    ("route", "rid"), [("/odd%s%%d{x}", 'a"b\\c%s'), ("/token", "-"), ("/t", "0123abcd")]
)
def test_an_access_line_with_percent_signs_and_any_request_id_is_its_json(
    configure_json: Callable[[], logs.JSONLineHandler],
    monkeypatch: pytest.MonkeyPatch,
    route: str,
    rid: str,
) -> None:
    """The line is a %-template per route and status: a % in what the template holds
    stays a %, and the request id is escaped as JSON wherever it came from."""
    json_handler = configure_json()
    out = io.StringIO()
    monkeypatch.setattr(json_handler, "stream", out)
    logs.access("GET", route, 200, 2.5, quiet=False, request_id=None if rid == "-" else rid)
    (line,) = out.getvalue().splitlines()
    doc = json.loads(line)
    assert doc["event"] == f"GET {route} 200"
    assert doc.get("request_id", "-") == rid
    assert (doc["status"], doc["duration_ms"]) == (200, 2.5)


@given(second=st.integers(0, 2**32), millisecond=st.integers(0, 999))
def test_the_access_lines_timestamp_is_isoformats(second: int, millisecond: int) -> None:
    created = second + (millisecond + 0.4) / 1000  # inside the millisecond, off its edges
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert logs._iso(created) == expected


async def jwks_count(admin: TestClient[Any, Any]) -> float:
    """The JWKS 200s counted so far, as every worker's scrape adds them up."""
    scraped = await (await admin.get("/metrics")).text()
    line = 'issuer_jwks_requests_total{status="200"} '
    return sum(float(x.removeprefix(line)) for x in scraped.splitlines() if x.startswith(line))


def json_lines_into_buffer(
    configure_json: Callable[[], logs.JSONLineHandler], monkeypatch: pytest.MonkeyPatch
) -> io.StringIO:
    """The service's JSON logging, its lines written to the returned buffer."""
    out = io.StringIO()
    monkeypatch.setattr(configure_json(), "stream", out)
    return out


async def test_the_edge_holds_access_lines_back_and_writes_them_before_a_later_record(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    configure_json: Callable[[], logs.JSONLineHandler],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the real app: requests leave notes, which become access lines (with their
    request id and route) and the duration histogram's counts in one batch; a record
    logged meanwhile goes out after the lines of the requests that finished before it."""

    before = await jwks_count(admin)
    out = json_lines_into_buffer(configure_json, monkeypatch)
    assert (await client.get("/.well-known/jwks.json", headers={"X-Request-ID": "j-1"})).ok
    assert (await client.get("/no/such/path", headers={"X-Request-ID": "j-2"})).status == 404
    logging.getLogger("issuer.test").warning("after two requests")
    lines = parsed(out)
    assert [(d["event"], d.get("request_id"), d.get("route")) for d in lines] == [
        ("GET /.well-known/jwks.json 200", "j-1", "/.well-known/jwks.json"),
        ("GET unmatched 404", "j-2", "unmatched"),
        ("after two requests", None, None),
    ]
    assert [d["logger"] for d in lines[:2]] == ["issuer.access", "issuer.access"]
    assert all(isinstance(d["duration_ms"], float) for d in lines[:2])
    # The scrape counts them too (its own worker's notes first).
    assert await jwks_count(admin) == before + 1


async def test_a_record_from_another_thread_writes_the_notes_first_and_counts_them(
    client: TestClient[Any, Any],
    admin: TestClient[Any, Any],
    configure_json: Callable[[], logs.JSONLineHandler],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thread that logs (aiosqlite's, the password hashers') takes the loop's notes
    under the handler's lock: their lines come before its record, each exactly once, and
    the metrics count each request once."""

    before = await jwks_count(admin)
    out = json_lines_into_buffer(configure_json, monkeypatch)
    for n in range(3):
        resp = await client.get("/.well-known/jwks.json", headers={"X-Request-ID": f"t-{n}"})
        assert resp.ok
    await asyncio.to_thread(logging.getLogger("issuer.test").warning, "from a thread")
    lines = parsed(out)
    assert [d.get("request_id") or d["event"] for d in lines] == [
        "t-0",
        "t-1",
        "t-2",
        "from a thread",
    ]
    assert await jwks_count(admin) == before + 3
    assert parsed(out)[4:] == []  # the scrape's own line is DEBUG; nothing written twice


def test_a_forked_child_schedules_its_own_flush() -> None:
    """The child's copy of its parent's loop is not closed: a Later that believed a call
    was scheduled there would wait for it forever."""
    later = Later(0.01, lambda: None)

    async def parent() -> None:
        later.due()  # scheduled on this loop, which the child inherits unclosed

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(parent())
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            child_loop = asyncio.new_event_loop()
            scheduled: list[float] = []
            child_loop.call_later = lambda delay, *_: scheduled.append(delay)  # type: ignore[method-assign, assignment]

            async def child() -> None:
                later.due()

            child_loop.run_until_complete(child())
            os.write(write, str(len(scheduled)).encode())
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        assert os.read(read, 16) == b"1"
        os.close(read)
    finally:
        loop.close()
