"""Every start-up failure of ``issuer serve``: one line naming the setting, one exit code."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live import issuer_env

CONFIG_ERROR = 2


def start(env: dict[str, str], *args: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "issuer", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stderr.strip().splitlines()


def assert_one_line(lines: list[str], prefix: str) -> None:
    assert len(lines) == 1, lines
    assert lines[0].startswith("issuer: configuration error: " + prefix), lines
    for internal in ("Traceback", "invalid literal", "OSError", "Errno"):
        assert internal not in lines[0]


def test_a_port_that_is_not_a_number(tmp_path: Path) -> None:
    code, lines = start(issuer_env(tmp_path, ISSUER_PORT="abc"), "--workers", "1")
    assert code == CONFIG_ERROR
    assert_one_line(lines, "ISSUER_PORT: expected a port number from 0 to 65535")


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_busy_port_says_so_the_same_way_whatever_the_workers(
    tmp_path: Path, busy_port: int, workers: str
) -> None:
    env = issuer_env(tmp_path, ISSUER_PORT=str(busy_port))
    code, lines = start(env, "--workers", workers)
    assert code == CONFIG_ERROR
    assert_one_line(
        lines, f"ISSUER_PORT: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    )
    assert lines[0].endswith("Address already in use")
    assert not (tmp_path / "issuer.db").exists()  # nothing was set up for nothing


def test_a_busy_admin_port_names_its_setting(tmp_path: Path, busy_port: int) -> None:
    code, lines = start(issuer_env(tmp_path, ISSUER_ADMIN_PORT=str(busy_port)), "--workers", "1")
    assert code == CONFIG_ERROR
    assert_one_line(lines, "ISSUER_ADMIN_PORT: cannot listen on")


def test_port_zero_is_refused_with_several_workers(tmp_path: Path) -> None:
    code, lines = start(issuer_env(tmp_path, ISSUER_PORT="0"), "--workers", "2")
    assert code == CONFIG_ERROR
    assert_one_line(lines, "ISSUER_PORT: 0 (a random port) needs --workers 1")


def test_a_missing_certificate_names_its_setting(tmp_path: Path) -> None:
    env = issuer_env(
        tmp_path,
        ISSUER_TLS_CERT_FILE=str(tmp_path / "nope.pem"),
        ISSUER_TLS_KEY_FILE=str(tmp_path / "nope.key"),
    )
    for workers in ("1", "2"):
        code, lines = start(env, "--workers", workers)
        assert code == CONFIG_ERROR
        assert_one_line(lines, f"ISSUER_TLS_CERT_FILE: cannot read {tmp_path}/nope.pem")
