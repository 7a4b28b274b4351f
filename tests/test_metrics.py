"""issuer.metrics: per-request series tallied in the worker, exposed as observe() would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from issuer import metrics

# On, below, between and above the bucket bounds, +Inf included.
DURATIONS = [0.0, 0.0004, 0.001, 0.0010001, 0.005, 0.3, 2.5, 5.0, 5.0001, 71.0]


def samples(text: str, route: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_created"):
                continue  # when the series began, which differs
            if s.labels.get("route") == route or s.labels.get("grant") == route:
                out[s.name, frozenset(s.labels.items())] = s.value
    return out


def reference(route: str) -> str:
    """What prometheus-client's own observe() and inc() expose for the same requests."""
    registry = CollectorRegistry()
    histogram = Histogram(
        "issuer_http_request_duration_seconds",
        "",
        ["route", "method", "status"],
        buckets=metrics.DURATION_BUCKETS,
        registry=registry,
    )
    tokens = Counter("issuer_tokens_issued", "", ["grant"], registry=registry)
    for seconds in DURATIONS:
        histogram.labels(route=route, method="GET", status="200").observe(seconds)
        tokens.labels(grant=route).inc()
    return generate_latest(registry).decode()


def test_tallied_requests_expose_what_observe_would() -> None:
    route = "/tally-outside-a-loop"
    for seconds in DURATIONS:
        metrics.request_observed(route, "GET", 200, seconds)
        metrics.token_issued(route)
    exposed = metrics.render(None, datetime.now(UTC)).decode()
    assert samples(exposed, route) == samples(reference(route), route)
    assert (
        len(samples(exposed, route)) == len(metrics.DURATION_BUCKETS) + 1 + 2 + 1
    )  # buckets, +Inf, count, sum; tokens


async def test_within_a_loop_the_tally_is_added_once_after_flush_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    route = "/tally-in-a-loop"
    loop = asyncio.get_running_loop()
    scheduled: list[tuple[float, Callable[[], None]]] = []
    monkeypatch.setattr(
        loop, "call_later", lambda delay, callback: scheduled.append((delay, callback))
    )
    for seconds in DURATIONS:
        metrics.request_observed(route, "GET", 200, seconds)
        metrics.token_issued(route)
    # One flush scheduled for all of them, and nothing added before it runs.
    assert [delay for delay, _ in scheduled] == [metrics.FLUSH_SECONDS]
    assert samples(generate_latest(metrics._metrics().registry).decode(), route) == {}
    scheduled[0][1]()
    flushed = generate_latest(metrics._metrics().registry).decode()
    assert samples(flushed, route) == samples(reference(route), route)


async def test_a_scrape_adds_its_own_workers_tally_first() -> None:
    route = "/tally-then-scrape"
    metrics.request_observed(route, "POST", 200, 0.002)
    exposed = metrics.render(None, datetime.now(UTC)).decode()
    key = (
        "issuer_http_request_duration_seconds_count",
        frozenset({("route", route), ("method", "POST"), ("status", "200")}),
    )
    assert samples(exposed, route)[key] == 1


def test_a_loop_closed_before_its_flush_leaves_the_next_loop_to_flush(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    route = "/tally-across-loops"
    key = (
        "issuer_http_request_duration_seconds_count",
        frozenset({("route", route), ("method", "GET"), ("status", "200")}),
    )

    def counted() -> float | None:
        text = generate_latest(metrics._metrics().registry).decode()
        return samples(text, route).get(key)

    async def request() -> None:
        metrics.request_observed(route, "GET", 200, 0.001)

    asyncio.run(request())  # the loop closes with its flush still waiting
    assert counted() is None
    monkeypatch.setattr(metrics._flush_soon, "delay", 0.0)

    async def request_then_turns() -> None:
        await request()
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(request_then_turns())
    assert counted() == 2
