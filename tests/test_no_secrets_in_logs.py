"""No password, refresh token or access token in any log record.

conftest records every log record of the whole run at DEBUG and every secret at
its source (argon2 and the token response), and fails the run at the end if any
secret shows up in any record, whichever tests ran and in whatever order. These
tests check that the machinery itself works.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import Iterator

import pytest

from tests.conftest import (
    ISSUED_SECRETS,
    LOG_MESSAGES,
    Login,
    MakeClient,
    MakeUser,
    _attach_recorder,
    find_leaks,
)
from tests.live import Served, issuer_env, serve


def test_recording_survives_a_test_that_reconfigures_logging() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    # What the autouse fixture does before the next test:
    _attach_recorder()
    logging.getLogger("issuer.test").debug("recorded again")
    assert LOG_MESSAGES[-1].endswith("recorded again")


def test_a_planted_secret_is_found() -> None:
    assert find_leaks(["login ok token=s3cr3t-t0ken"], {"s3cr3t-t0ken"}) == ["s3cr3t…"]
    assert find_leaks(["nothing here"], {"s3cr3t-t0ken"}) == []


async def test_secrets_are_registered_and_every_record_is_kept(
    make_client: MakeClient, make_user: MakeUser, login: Login
) -> None:
    root = logging.getLogger()
    assert root.level == logging.DEBUG
    user = await make_user()
    tokens = await login(await make_client(first_party=True), user)
    mine = {user.password, tokens["access_token"], tokens["refresh_token"]}
    assert mine <= ISSUED_SECRETS
    logging.getLogger("issuer.test").debug("a marker record")
    assert LOG_MESSAGES[-1].endswith("a marker record")
    assert find_leaks(LOG_MESSAGES, mine) == []


# -- aiohttp's own parser errors, against a started `issuer serve` ------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("parser-errors")
    env = issuer_env(tmp, ISSUER_WORKERS="1", ISSUER_LOG_LEVEL="DEBUG")
    with serve(env, tmp / "issuer.log") as s:
        s.wait_ready()
        yield s


def _send(served: Served, raw: bytes) -> bytes:
    port = int(served.env["ISSUER_PORT"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def _assert_json_error(raw: bytes) -> str:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].split()[1] == "400", raw[:200]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"].startswith("application/json")
    assert headers["cache-control"] == "no-store"
    assert json.loads(body) == {
        "error": "invalid_request",
        "error_description": "malformed HTTP request",
    }
    return headers["x-request-id"]


def _slices(secret: bytes, width: int = 12) -> set[str]:
    """Every stretch of the secret long enough to matter, as it would appear in a log."""
    text = secret.decode()
    return {text[i : i + width] for i in range(0, len(text) - width + 1)}


CREDENTIAL = base64.b64encode(b"billing:" + b"s3cret-" * 1300)  # about 12 KiB


@pytest.mark.parametrize(
    "raw",
    [
        # A header over aiohttp's 8 KiB field limit: it used to log its first 100 bytes.
        b"POST /token HTTP/1.1\r\nHost: issuer\r\nAuthorization: Basic "
        + CREDENTIAL
        + b"\r\nContent-Length: 0\r\n\r\n",
        # The credential earlier, then an over-long line that fails the parse.
        b"POST /token HTTP/1.1\r\nHost: issuer\r\nAuthorization: Basic "
        + CREDENTIAL[:60]
        + b"\r\nX-Pad: "
        + b"p" * 9000
        + b"\r\n\r\n",
        # Malformed request lines: they used to log a traceback each.
        b"GET /token?x=" + CREDENTIAL[:60] + b" HTTP/1.1 extra\r\nHost: issuer\r\n\r\n",
        b"\x16\x03\x01\x02\x00" + CREDENTIAL[:60] + b"\r\n\r\n",  # TLS to the plain port
        b"G\x00T /token HTTP/1.1\r\nAuthorization: Basic " + CREDENTIAL[:60] + b"\r\n\r\n",
        b"GET " + b"/" + CREDENTIAL[:60] + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
    ],
    ids=[
        "header-over-8k",
        "credential-then-long-header",
        "bad-request-line",
        "tls-bytes",
        "nul-in-method",
        "request-line-over-8k",
    ],
)
def test_parser_errors_answer_json_and_log_no_request_bytes(served: Served, raw: bytes) -> None:
    rid = _assert_json_error(_send(served, raw))
    deadline = time.monotonic() + 5
    # Both lines: the access line is written within ACCESS_FLUSH_SECONDS of the answer.
    while {d["logger"] for d in served.log_lines() if d.get("request_id") == rid} != {
        "issuer.connections",
        "issuer.access",
    }:
        assert time.monotonic() < deadline, served.logs()
        time.sleep(0.05)
    log = served.logs()
    assert find_leaks([log], _slices(CREDENTIAL[:60])) == []
    assert "Traceback" not in log
    assert not [d for d in served.log_lines() if d["level"] == "ERROR"]
    mine = [d for d in served.log_lines() if d.get("request_id") == rid]
    assert {d["logger"] for d in mine} == {"issuer.connections", "issuer.access"}
