"""The Dockerfile and .dockerignore, read as text: no Docker engine runs in the test suite.

What can be run is: the HEALTHCHECK command, against a local HTTP server.
"""

from __future__ import annotations

import contextlib
import fnmatch
import http.server
import os
import re
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import fields

import pytest

from issuer.config import Settings

from .support import DOCKERIGNORE, REPO, Instruction, dockerfile_stages, final_stage, image_user


def instructions(stage: list[Instruction], keyword: str) -> list[str]:
    return [i.args for i in stage if i.keyword == keyword]


def test_build_is_multi_stage_and_the_runtime_copies_only_the_built_venv() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    build_names = [stage[0].args.split()[-1] for stage in stages[:-1]]
    copies_from = [a for a in instructions(final_stage(), "COPY") if a.startswith("--from=")]
    assert copies_from, "the final stage must copy its install from a build stage"
    assert all(a.split()[0].removeprefix("--from=") in build_names for a in copies_from)


def test_every_stage_starts_from_an_official_slim_python_image() -> None:
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert default, "the base image is set once, as ARG PYTHON_IMAGE"
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", default.group(1))
    for stage in dockerfile_stages():
        assert stage[0].args.startswith("${PYTHON_IMAGE}")


def test_final_stage_installs_no_build_tools_and_fetches_nothing() -> None:
    run = " ".join(instructions(final_stage(), "RUN"))
    for tool in ("apt-get", "apk", "gcc", "build-essential", "pip install", "curl", "wget"):
        assert tool not in run


def test_runs_as_a_fixed_numeric_non_root_user() -> None:
    uid, gid = image_user()
    assert uid >= 1000
    assert gid >= 1000
    # The account exists, so tools that look the UID up (ps, id) show a name.
    run = " ".join(instructions(final_stage(), "RUN"))
    assert f"--uid {uid}" in run
    assert f"--gid {gid}" in run


def test_entrypoint_is_the_issuer_command_and_serve_is_the_default() -> None:
    [entrypoint] = [i for i in final_stage() if i.keyword == "ENTRYPOINT"]
    [cmd] = [i for i in final_stage() if i.keyword == "CMD"]
    # Exec form: the issuer is PID 1 and receives SIGTERM itself, so it drains.
    assert entrypoint.exec_form() == ["issuer"]
    assert cmd.exec_form() == ["serve"]


def test_environment_is_ready_for_a_container() -> None:
    env = " ".join(instructions(final_stage(), "ENV"))
    assert "ISSUER_HOST=0.0.0.0" in env
    assert "ISSUER_ADMIN_HOST=0.0.0.0" in env
    # A read-only root filesystem: never try to write .pyc files next to the sources.
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    known = {"ISSUER_" + f.name.upper() for f in fields(Settings)}
    assert set(re.findall(r"\bISSUER_[A-Z_]+(?==)", env)) <= known


def test_exposes_the_public_and_admin_ports() -> None:
    exposed = " ".join(instructions(final_stage(), "EXPOSE")).split()
    assert exposed == [str(Settings().port), str(Settings().admin_port)]


def healthcheck() -> Instruction:
    [check] = [i for i in final_stage() if i.keyword == "HEALTHCHECK"]
    return check


def test_healthcheck_probes_livez_with_python_alone() -> None:
    command = healthcheck().exec_form()
    # Slim images have no curl or wget.
    assert command[:2] == ["python", "-c"]
    assert "/livez" in command[2]


@contextlib.contextmanager
def livez_answering(status: int) -> Iterator[int]:
    """A local HTTP server whose /livez answers `status`; yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/livez" else 404)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            thread.join()


def run_healthcheck(port: int) -> int:
    _, flag, code = healthcheck().exec_form()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUER_")}
    env["ISSUER_PORT"] = str(port)
    return subprocess.run(
        [sys.executable, flag, code], env=env, capture_output=True, timeout=30, check=False
    ).returncode


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_exit_status_follows_livez(status: int, healthy: bool) -> None:
    with livez_answering(status) as port:
        assert (run_healthcheck(port) == 0) is healthy


def test_healthcheck_fails_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert run_healthcheck(port) != 0


def dockerignore_allowed() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*", ".dockerignore is an allowlist: it starts by excluding everything"
    return [p[1:].rstrip("/") for p in patterns if p.startswith("!")]


def test_dockerignore_admits_only_the_package_sources() -> None:
    assert sorted(dockerignore_allowed()) == ["README.md", "issuer", "pyproject.toml"]


def test_every_file_the_build_copies_is_in_the_build_context() -> None:
    allowed = dockerignore_allowed()
    for stage in dockerfile_stages():
        for args in instructions(stage, "COPY"):
            if args.startswith("--from="):
                continue
            *sources, _ = args.split()
            for source in sources:
                assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"


def test_the_wheel_carries_every_data_file_of_the_package() -> None:
    # The image installs a wheel, not the source tree: migrations and py.typed reach it only
    # through package-data.
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"].get("package-data", {}).get("issuer", [])
    package = REPO / "issuer"
    data = [
        p.relative_to(package).as_posix()
        for p in package.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    missing = [f for f in data if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert not missing, f"not in [tool.setuptools.package-data] issuer: {missing}"
