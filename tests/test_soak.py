"""The soak (``bench/soak.py``) in 20 seconds: what the 5-minute run checks, on every CI run.

Two workers on PostgreSQL, a new signing key every 6 s, one worker SIGKILLed at
10 s, mixed traffic with every token verified by ``issuer.verifier`` over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[1] / "bench" / "soak.py"


@pytest.mark.slow
@pytest.mark.postgres
def test_twenty_seconds_of_mixed_traffic_rotation_and_a_killed_worker(
    postgres_url: str, tmp_path: Path
) -> None:
    summary = tmp_path / "soak.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--duration",
            "20",
            "--rotation",
            "6",
            "--postgres-dsn",
            postgres_url,
            "--json",
            str(summary),
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    shown = done.stdout + done.stderr
    assert summary.exists(), shown
    report = json.loads(summary.read_text())
    requests = report["requests"]
    assert all(requests[kind]["count"] > 0 for kind in requests), shown
    assert requests["jwks"]["count"] > requests["client_credentials"]["count"], shown
    assert report["five_xx"] == 0, shown
    assert report["connection_errors_other"] == 0, shown
    assert report["unexpected_count"] == 0, shown
    assert report["tokens_issued"] > 0, shown
    assert report["verifications"] == 2 * report["tokens_issued"], shown
    assert report["verification_failures"] == 0, shown
    assert report["expired_before_verification"] == 0, shown
    assert report["rotations"] >= 2, shown
    assert report["verified_across_rotation"] > 0, shown
    assert report["issued_within_2s_before_rotation"] > 0, shown
    assert report["keys_signing_before_the_verifier_had_them"] == 0, shown
    keys = report["keys_at_the_end"]
    assert keys["active"] == 1, shown
    assert min(report["seconds_between_activations"]) >= 5, shown
    assert report["killed"] is not None, shown
    assert report["replaced"] is not None, shown
    judged = [m for m in report["rss"].values() if m["judged"]]
    assert judged, shown
    assert all(m["growth"] < 0.10 for m in judged), shown
    assert report["server_exit"] == 0, shown
    assert report["passed"], shown
    assert done.returncode == 0, shown
