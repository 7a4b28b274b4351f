"""The summary of a load run: issue 11's targets as ratios, the table, the chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LIMIT_TITLES = {
    "sign": "raw RS256 sign, 1 core",
    "verify": "raw RS256 verify, 1 core",
    "argon2": "argon2 verify, all cores",
    "bare": "bare aiohttp handler",
}


def targets(limits: dict[str, Any], dbs: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 11's targets, each a ratio within this run (``None``: not measured)."""

    def run(db: str, name: str) -> dict[str, Any] | None:
        runs: dict[str, Any] = dbs[db]["scenarios"] if db in dbs else {}
        return runs.get(name)

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    def share(db: str, name: str, limit: str) -> float | None:
        """The scenario's rate over its limit, measured beside it where it was (load.py's
        ADJACENT_LIMITS), else at the run's start and end."""
        r = run(db, name)
        if r is None:
            return None
        return ratio(float(r["rps"]), r.get("extra", {}).get("limit") or limits.get(limit))

    out: list[dict[str, Any]] = []

    def check(what: str, value: float | None, goal: float, *, below: bool = False) -> None:
        ok = None if value is None else (value < goal if below else value >= goal)
        out.append({"target": what, "value": value, "goal": goal, "below": below, "pass": ok})

    check(
        "client-credentials/s on SQLite >= 1.1 x raw sign rate (1 core)",
        share("sqlite", "client_credentials", "sign"),
        1.1,
    )
    # Two scenarios minutes apart: each is taken as its share of the sign rate measured
    # beside it, so that the machine's drift between them does not count.
    check(
        "client-credentials/s on PostgreSQL >= 0.9 x SQLite",
        ratio(
            share("postgres", "client_credentials", "sign"),
            share("sqlite", "client_credentials", "sign"),
        ),
        0.9,
    )
    for db in dbs:
        check(f"JWKS/s on {db} >= 0.8 x bare handler", share(db, "jwks", "bare"), 0.8)
        check(
            f"password logins/s on {db} >= 0.8 x argon2 (all cores)",
            share(db, "password", "argon2"),
            0.8,
        )
        check(
            f"JWKS p99 (ms) on {db} while logins run flat out < 20",
            None if (r := run(db, "jwks_under_logins")) is None else r["p99_ms"],
            20.0,
            below=True,
        )
    check(
        "refresh/s on PostgreSQL >= 0.5 x client-credentials/s",
        ratio(
            share("postgres", "refresh", "sign"), share("postgres", "client_credentials", "sign")
        ),
        0.5,
    )
    for db in dbs:
        check(
            f"worker RSS growth on {db}, tokens N -> 2N < 10 %",
            None if dbs[db]["memory"] is None else dbs[db]["memory"]["max_growth"] * 100,
            10.0,
            below=True,
        )
    return out


def print_summary(
    limits: dict[str, Any], dbs: dict[str, Any], checks: list[dict[str, Any]]
) -> None:
    # The scenarios this run measured (``--scenarios``), in the usual order.
    titles = {
        s: t for s, t in SCENARIO_TITLES.items() if any(s in dbs[db]["scenarios"] for db in dbs)
    }
    print()
    header = f"{'scenario':34}" + "".join(
        f"{db + ' req/s':>16}{'p50 ms':>8}{'p99 ms':>8}" for db in dbs
    )
    print(header + f"  {'limit':>8}  limit")
    print("-" * (len(header) + 30))
    for name, title in titles.items():
        row = f"{title:34}"
        for db in dbs:
            r = dbs[db]["scenarios"].get(name)
            if r is None:
                row += f"{'-':>16}{'-':>8}{'-':>8}"
            else:
                row += f"{r['rps']:16.0f}{r['p50_ms']:8.1f}{r['p99_ms']:8.1f}"
        key = SCENARIO_LIMITS.get(name)
        if key and key in limits:
            row += f"  {limits[key]:8.0f}  {LIMIT_TITLES[key]}"
        print(row)
    print()
    for c in checks:
        if c["value"] is None:
            verdict, value = "SKIP", "not measured"
        else:
            verdict = "PASS" if c["pass"] else "FAIL"
            value = f"{c['value']:.2f}"
            if float(value) == c["goal"] and not c["pass"]:
                value = f"{c['value']:.3f}"  # 0.498 is no pass, though it rounds to 0.50
        op = "<" if c["below"] else ">="
        print(f"{verdict}  {c['target']}: {value} (goal {op} {c['goal']:g})")


SCENARIO_TITLES = {
    "jwks": "JWKS",
    "jwks_304": "JWKS, If-None-Match (304)",
    "discovery": "discovery",
    "client_credentials": "client-credentials token",
    "password": "password login",
    "refresh": "refresh",
    "introspection": "introspection",
    "revocations": "revocation feed",
    "jwks_under_logins": "JWKS while logins run (2 conns)",
}
SCENARIO_LIMITS = {
    "jwks": "bare",
    "jwks_304": "bare",
    "discovery": "bare",
    "client_credentials": "sign",
    "password": "argon2",
    "refresh": "sign",
    "introspection": "verify",
    "revocations": "bare",
}


def draw_chart(limits: dict[str, Any], dbs: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in SCENARIO_LIMITS if any(n in dbs[db]["scenarios"] for db in dbs)]
    # A scenario or limit this run left out (--scenarios) is an empty bar.
    series = [(db, [dbs[db]["scenarios"].get(n, {"rps": 0.0})["rps"] for n in names]) for db in dbs]
    series.append(("limit", [limits.get(SCENARIO_LIMITS[n], 0.0) for n in names]))
    fig, ax = plt.subplots(figsize=(9, 6))
    height = 0.8 / len(series)
    colors = {"sqlite": "#4c72b0", "postgres": "#55a868", "limit": "#bbbbbb"}
    for i, (label, values) in enumerate(series):
        ys = [y + i * height for y in range(len(names))]
        bars = ax.barh(ys, values, height, label=label, color=colors.get(label))
        labels = [f"{v:,.0f}" if v else "" for v in values]
        ax.bar_label(bars, labels=labels, fontsize=7, padding=2)
    ax.set_yticks(
        [y + height * (len(series) - 1) / 2 for y in range(len(names))],
        [f"{SCENARIO_TITLES[n]}\n(limit: {LIMIT_TITLES[SCENARIO_LIMITS[n]]})" for n in names],
        fontsize=8,
    )
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("requests/s (log scale)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(series))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
