"""``bench/load.py`` keeps working: a short run on SQLite writes the table, the JSON, the chart.

It asserts that every scenario ran without a failed request, not how fast: the
figures depend on the machine. PostgreSQL is left out to keep this short; the
full run (README, "Performance: the service under load") covers both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SCENARIOS = {
    "jwks",
    "jwks_304",
    "discovery",
    "client_credentials",
    "password",
    "refresh",
    "introspection",
    "revocations",
    "jwks_under_logins",
}


@pytest.mark.slow
def test_a_short_load_run_writes_the_json_and_the_chart(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("wrk is not installed (./run test installs it with apt-get)")
        pytest.skip("wrk is not installed: apt-get install -y wrk")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUER_")}
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "load.py"),
            "--seconds=1",
            "--connections=2",
            "--memory-tokens=10",
            "--databases=sqlite",
            f"--out={tmp_path}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr

    result = json.loads((tmp_path / "load.json").read_text())
    runs = result["databases"]["sqlite"]["scenarios"]
    assert set(runs) == SCENARIOS
    for name, run in runs.items():
        assert run["errors"] == 0, name
        # A login (argon2) can take longer than the one second on a busy machine.
        assert run["requests"] > 0 or name == "password", name
    assert all(result["limits"][k] > 0 for k in ("sign", "verify", "argon2", "bare"))
    # The judged scenarios have their limit measured beside them: between slices of
    # the scenario, or right before and after it.
    for name in ("jwks", "client_credentials"):
        extra = runs[name]["extra"]
        assert len(extra["limit_slices"]) == extra["slices"] + 1, name
        assert extra["limit"] == sum(extra["limit_slices"]) / len(extra["limit_slices"]) > 0
    for name in ("password", "refresh"):
        extra = runs[name]["extra"]
        assert extra["limit"] == (extra["limit_before"] + extra["limit_after"]) / 2 > 0, name
    # Measured at the start and at the end; judged against the higher.
    for k in ("sign", "verify", "argon2", "bare"):
        ends = (result["limits_at_start"][k], result["limits_at_end"][k])
        assert result["limits"][k] == max(ends) > 0
    memory = result["databases"]["sqlite"]["memory"]
    first, second = memory["samples"]
    assert first["issued"] >= 10
    assert second["issued"] >= first["issued"] + 10
    assert len(first["rss_mib"]) == os.cpu_count()
    verdicts = {t["target"]: t["pass"] for t in result["targets"]}
    assert verdicts["client-credentials/s on PostgreSQL >= 0.9 x SQLite"] is None
    assert verdicts["JWKS/s on sqlite >= 0.8 x bare handler"] in (True, False)

    assert (tmp_path / "load.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "client-credentials token" in out.stdout
    assert "JWKS/s on sqlite >= 0.8 x bare handler" in out.stdout
