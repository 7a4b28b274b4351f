"""A real ``issuer serve`` in a subprocess on free ports, killed on teardown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def issuer_env(tmp: Path, **overrides: str) -> dict[str, str]:
    """The parent's environment without ISSUER_* or Prometheus settings, plus a fresh setup."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ISSUER_", "PROMETHEUS_", "prometheus_"))
    }
    port, admin_port = free_port(), free_port()
    env.update(
        ISSUER_DATABASE_URL=f"sqlite:///{tmp}/issuer.db",
        ISSUER_KEK_FILE=str(tmp / "kek.json"),
        ISSUER_PORT=str(port),
        ISSUER_ADMIN_PORT=str(admin_port),
        ISSUER_ISSUER=f"http://127.0.0.1:{port}",
        ISSUER_SHUTDOWN_GRACE="10",
    )
    env.update(overrides)
    return env


def cli(env: dict[str, str], *args: str) -> str:
    """Run ``issuer ARGS`` to completion; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "issuer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def http(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    log: Path
    stderr: IO[bytes] = field(repr=False)

    @property
    def public(self) -> str:
        return f"http://127.0.0.1:{self.env['ISSUER_PORT']}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.env['ISSUER_ADMIN_PORT']}"

    def logs(self) -> str:
        return self.log.read_text("utf-8", errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"issuer exited early:\n{self.logs()}"
            try:
                public = http(self.public + "/readyz")[0]
                admin = http(self.admin + "/readyz")[0]
            except OSError:
                time.sleep(0.1)
                continue
            if public == admin == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"issuer not ready after {timeout}s:\n{self.logs()}")

    def admin_token(self) -> str:
        """A client with scope issuer:admin (made with the CLI), then client_credentials."""
        created = json.loads(
            cli(self.env, "clients", "create", "ops-admin", "--scope", "issuer:admin")
        )
        status, body = http(
            self.public + "/token",
            data=f"grant_type=client_credentials&client_id={created['client_id']}"
            f"&client_secret={created['client_secret']}".encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 200, body
        token: str = json.loads(body)["access_token"]
        return token


@contextmanager
def serve(
    env: dict[str, str], log: Path, args: Sequence[str] = (), cwd: Path | None = None
) -> Iterator[Served]:
    """``issuer serve ARGS`` (in CWD); on exit, SIGKILL whatever of its process group is left."""
    stderr = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "issuer", "serve", *args],
        env=env,
        cwd=cwd,
        stdout=stderr,
        stderr=stderr,
        start_new_session=True,
    )
    try:
        yield Served(proc, env, log, stderr)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        stderr.close()
