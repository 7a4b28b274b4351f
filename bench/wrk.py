"""Running ``wrk`` with a generated Lua script and reading its result back as JSON."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent / "lua"


@dataclass
class Run:
    """One wrk run: successful requests per second and latency in milliseconds."""

    rps: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    name: str
    title: str
    limit: str  # key into the limits
    path: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    script: str = ""  # Lua appended after the request definition
    issues_tokens: bool = False


def lua_string(value: str) -> str:
    text = json.dumps(value)
    assert "\\u" not in text, "only ASCII goes into a Lua script"
    return text


def run_wrk(
    url: str,
    lua: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    workdir: Path,
    name: str,
) -> Run:
    script = workdir / f"{name}.lua"
    script.write_text(lua + "\n" + (LUA / "report.lua").read_text())
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{max(connections, threads)}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK-RESULT ")), None)
    for note in (x for x in out.stdout.splitlines() if x.startswith("NOTE ")):
        print(f"{name}: {note.removeprefix('NOTE ')}", flush=True)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"load.py: wrk failed for {name}: {out.stdout}{out.stderr}")
    r = json.loads(line.removeprefix("WRK-RESULT "))
    errors = sum(v for k, v in r.items() if k.startswith("errors_"))
    took = r["duration_us"] / 1e6
    return Run(
        rps=(r["requests"] - errors) / took,
        requests=r["requests"],
        errors=errors,
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        seconds=took,
    )


def request_lua(s: Scenario) -> str:
    lines = [f"wrk.method = {lua_string(s.method)}", f"wrk.path = {lua_string(s.path)}"]
    for k, v in s.headers.items():
        lines.append(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}")
    if s.body is not None:
        lines.append(f"wrk.body = {lua_string(s.body)}")
    return "\n".join(lines) + "\n" + s.script
