"""The soak's verdict: the criteria, and the summary table it prints."""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from soak_load import KINDS, Soak

# Connection errors this long after the SIGKILL are requests that were in flight on
# (or kept-alive connections to) the killed worker.
KILL_WINDOW = 5.0
MAX_RSS_GROWTH = 0.10
MIN_OWN_WINDOW = 30.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_growth(samples: list[tuple[float, int]], half: float) -> tuple[float, int, int] | None:
    """Growth of the RSS floor over the second half of the run (or of the worker's life).

    The samples leave out argon2's working memory (64 MiB per hash in flight, see
    ``rss_kib``), yet RSS still moves with what the allocator keeps: a leak raises
    the floor under those moves, so compare the lowest sample of the window's first
    third with the lowest of its last third.
    """
    if not samples:
        return None
    start = half if samples[0][0] < half else (samples[0][0] + samples[-1][0]) / 2
    window = [kib for t, kib in samples if t >= start]
    if len(window) < 6:
        return None
    third = len(window) // 3
    first, last = min(window[:third]), min(window[-third:])
    return last / first - 1, first, last


def scan_log(path: Path) -> dict[str, Any]:
    levels: Counter[str] = Counter()
    per_pid: Counter[int] = Counter()
    server_5xx = 0
    errors: Counter[str] = Counter()
    for line in path.read_text("utf-8", errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            levels["(not json)"] += 1
            continue
        levels[doc.get("level", "?")] += 1
        if doc.get("logger") == "issuer.access":
            per_pid[doc.get("pid", 0)] += 1
            if int(doc.get("status", 0)) >= 500:
                server_5xx += 1
        if doc.get("level") in ("ERROR", "CRITICAL"):
            errors[str(doc.get("event"))[:160]] += 1
    return {
        "levels": dict(levels),
        "access_lines_per_pid": {str(k): v for k, v in per_pid.items()},
        "access_5xx": server_5xx,
        "errors": dict(errors.most_common(10)),
    }


def verdict(
    soak: Soak, exit_code: int | None, log: dict[str, Any], rotation: int
) -> dict[str, Any]:
    kill_t = soak.killed[0] if soak.killed else None
    at_kill = [
        e for e in soak.errors if kill_t is not None and kill_t <= e[0] <= kill_t + KILL_WINDOW
    ]
    other_errors = [e for e in soak.errors if e not in at_kill]
    fives = sum(n for c in soak.statuses.values() for s, n in c.items() if s >= 500)
    tokens = len(soak.issued)
    not_twice = sum(1 for i in soak.issued if i.ok != [True, True])
    # Tokens issued in the 2 s before the first token of the next key.
    order = sorted(soak.first_seen, key=soak.first_seen.__getitem__)
    edge = [
        i
        for prev, nxt in itertools.pairwise(order)
        for i in soak.issued
        if i.kid == prev and soak.first_seen[nxt] - 2 <= i.at < soak.first_seen[nxt]
    ]
    rotations = len(order) - 1
    wanted_rotations = int(soak.duration // rotation) - 1
    half = soak.duration / 2
    last_t = max((s[-1][0] for s in soak.rss.values() if s), default=0.0)
    memory: dict[str, dict[str, Any]] = {}
    for pid, samples in sorted(soak.rss.items()):
        if samples[-1][0] < last_t - 3:
            continue  # not alive at the end (the killed worker)
        grown = rss_growth(samples, half)
        # A worker started after the midpoint is judged on the second half of its own
        # life, once that is long enough to be past its warm-up (not in a 20 s run).
        through = samples[0][0] < half
        judged = through or samples[-1][0] - samples[0][0] >= 2 * MIN_OWN_WINDOW
        memory[str(pid)] = {
            "judged": judged,
            "samples": len(samples),
            "first_kib": samples[0][1],
            "floor_start_kib": grown[1] if grown else None,
            "floor_end_kib": grown[2] if grown else None,
            "peak_kib": max(kib for _, kib in samples),
            "growth": round(grown[0], 4) if grown else None,
            "series": [[round(t, 1), kib] for t, kib in samples],
        }
    checks = {
        "no 5xx": fives == 0,
        "no connection errors or timeouts but at the kill": not other_errors,
        "no other unexpected status": not soak.unexpected,
        "every token verified twice, none failed": not soak.failures and not_twice == 0,
        f"keys rotated (>= {wanted_rotations})": rotations >= wanted_rotations,
        "verifications across a rotation": soak.crossed > 0,
        "each key in the verifier's JWKS before its first token": not soak.unpublished,
        # A second key made for the same turn (two workers racing) would activate at
        # about the same time as the first.
        "one key per rotation interval, one signing at the end": bool(soak.key_gaps)
        and min(soak.key_gaps) >= rotation - 1
        and soak.key_states.get("active") == 1,
        "a worker was killed and replaced": soak.killed is not None and soak.replaced is not None,
        "the replacement served requests": soak.replaced is not None
        and log["access_lines_per_pid"].get(str(soak.replaced[1]), 0) > 0,
        "worker RSS growth < 10% over the second half": bool(memory)
        and all(
            m["growth"] is not None and m["growth"] < MAX_RSS_GROWTH
            for m in memory.values()
            if m["judged"]
        ),
        "server stopped cleanly (exit 0)": exit_code == 0,
    }
    return {
        "duration_s": soak.duration,
        "rotation_s": rotation,
        "requests": {
            kind: {
                "count": sum(soak.statuses[kind].values()),
                "statuses": {str(s): n for s, n in sorted(soak.statuses[kind].items())},
                "p50_ms": round(percentile(soak.latencies[kind], 0.5), 1),
                "p99_ms": round(percentile(soak.latencies[kind], 0.99), 1),
            }
            for kind in KINDS
        },
        "five_xx": fives,
        "connection_errors_at_kill": len(at_kill),
        "connection_errors_other": len(other_errors),
        "connection_error_kinds": dict(Counter(e[2] for e in soak.errors)),
        "five_xx_examples": [list(u) for u in soak.server_errors[:10]],
        "unexpected": [list(u) for u in soak.unexpected[:10]],
        "unexpected_count": len(soak.unexpected),
        "refresh_fallbacks_to_login": soak.refresh_fallbacks,
        "tokens_issued": tokens,
        "verifications": soak.verified,
        "verification_failures": len(soak.failures),
        "expired_before_verification": soak.late,
        "failure_examples": [list(f) for f in soak.failures[:10]],
        "verified_across_rotation": soak.crossed,
        "issued_within_2s_before_rotation": len(edge),
        "issued_within_2s_before_rotation_ok": sum(1 for i in edge if i.ok == [True, True]),
        "signing_keys_seen": len(order),
        "keys_signing_before_the_verifier_had_them": len(soak.unpublished),
        "keys_at_the_end": soak.key_states,
        "seconds_between_activations": [round(g, 3) for g in soak.key_gaps],
        "rotations": rotations,
        "jwks_fetches_by_verifier": soak.verifier.jwks.fetches,
        "killed": list(soak.killed) if soak.killed else None,
        "replaced": list(soak.replaced) if soak.replaced else None,
        "rss": memory,
        "server_exit": exit_code,
        "server_log": log,
        "checks": checks,
        "passed": all(checks.values()),
    }


def show(report: dict[str, Any], load: tuple[float, float, float]) -> None:
    print(
        f"\nsoak: {report['duration_s']:.0f} s, a new key every {report['rotation_s']} s, "
        f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on "
        f"{os.cpu_count()} cores"
    )
    print(f"{'kind':<20}{'requests':>10}  {'p50 ms':>8}{'p99 ms':>9}  statuses")
    for kind, r in report["requests"].items():
        statuses = " ".join(f"{s}:{n}" for s, n in r["statuses"].items())
        print(f"{kind:<20}{r['count']:>10}  {r['p50_ms']:>8}{r['p99_ms']:>9}  {statuses}")
    print(
        f"5xx: {report['five_xx']}; connection errors at the kill: "
        f"{report['connection_errors_at_kill']}, elsewhere: {report['connection_errors_other']} "
        f"{report['connection_error_kinds'] or ''}; other unexpected: {report['unexpected_count']}"
    )
    print(
        f"tokens issued {report['tokens_issued']}, verifications {report['verifications']}, "
        f"failures {report['verification_failures']}, expired before they could be "
        f"verified {report['expired_before_verification']}; verified after their key stopped "
        f"signing {report['verified_across_rotation']}; issued <2 s before a rotation "
        f"{report['issued_within_2s_before_rotation']} "
        f"(all ok: {report['issued_within_2s_before_rotation_ok']})"
    )
    print(
        f"signing keys seen {report['signing_keys_seen']} ({report['rotations']} rotations); "
        f"verifier JWKS fetches {report['jwks_fetches_by_verifier']}; keys that signed before "
        f"the verifier had fetched them {report['keys_signing_before_the_verifier_had_them']}; "
        f"keys at the end {report['keys_at_the_end']}, seconds between activations "
        f"{min(report['seconds_between_activations'], default=0):.1f} to "
        f"{max(report['seconds_between_activations'], default=0):.1f}"
    )
    if report["killed"]:
        k, r = report["killed"], report["replaced"]
        replaced = f"replacement pid {r[1]} at {r[0]:.1f} s" if r else "NO replacement"
        print(f"SIGKILL worker pid {k[1]} at {k[0]:.1f} s; {replaced}")
    for pid, m in report["rss"].items():
        growth = "n/a" if m["growth"] is None else f"{m['growth']:+.1%}"
        print(
            f"worker {pid}: RSS floor {(m['floor_start_kib'] or 0) / 1024:.1f} -> "
            f"{(m['floor_end_kib'] or 0) / 1024:.1f} MiB over the second half ({growth}); "
            f"first sample {m['first_kib'] / 1024:.1f} MiB, peak {m['peak_kib'] / 1024:.1f} MiB "
            f"(argon2's 64 MiB per hash in flight not counted); {m['samples']} samples"
            + ("" if m["judged"] else "; too young to judge")
        )
    log = report["server_log"]
    print(
        f"server log lines by level {log['levels']}; access lines by pid "
        f"{log['access_lines_per_pid']}; exit {report['server_exit']}"
    )
    for line, count in log["errors"].items():
        print(f"  server ERROR x{count}: {line}")
    for check, ok in report["checks"].items():
        print(f"  [{'ok' if ok else 'FAIL'}] {check}")
    print("PASSED" if report["passed"] else "FAILED")
