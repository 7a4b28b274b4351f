"""Prometheus metrics: counters the code bumps, key gauges computed at scrape time.

The counters and the request histogram are built once per process, on first
use (not at import), in a registry of their own, so any number of apps in one
process (as in the tests) share them without a duplicate-registration error.
With ``issuer serve --workers N`` the parent sets ``PROMETHEUS_MULTIPROC_DIR``
before starting the workers; prometheus-client then keeps each worker's values
in a file there, and a scrape of any worker adds them all up.

Key gauges (age, next rotation, keys per state) and ``issuer_build_info`` are
computed from the scraped worker's keyring at scrape time: every worker reads
the same key rows, so any one of them answers for all.

No label ever carries a user, client or token value: labels are grant types,
OAuth error codes, route templates, methods and statuses, all bounded sets.
"""

from __future__ import annotations

import atexit
import bisect
import functools
import os
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from issuer import __version__
from issuer.errors import TemporarilyUnavailableError
from issuer.keyring import Keyring, KeyState
from issuer.later import Later

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Token endpoint latency is dominated by signing (about a millisecond) and the database.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tokens_issued = Counter(
            "issuer_tokens_issued", "Access tokens issued, by grant type", ["grant"], registry=r
        )
        self.token_errors = Counter(
            "issuer_token_errors",
            "Token endpoint errors, by OAuth error code (RFC 6749 §5.2)",
            ["error"],
            registry=r,
        )
        self.login_failures = Counter(
            "issuer_login_failures", "Failed user logins (wrong user name or password)", registry=r
        )
        self.refresh_reuse = Counter(
            "issuer_refresh_reuse_detected",
            "Spent refresh tokens presented again (the family is revoked)",
            registry=r,
        )
        self.jwks_requests = Counter(
            "issuer_jwks_requests", "JWKS requests, by response status", ["status"], registry=r
        )
        self.connections_closed = Counter(
            "issuer_connections_closed",
            "Connections the service closed or refused, by listener and reason "
            "(limit, header_timeout, body_timeout)",
            ["listener", "reason"],
            registry=r,
        )
        self.client_disconnects = Counter(
            "issuer_client_disconnects",
            "Requests whose client hung up before its body was read (499 in the access log)",
            registry=r,
        )
        self.request_duration = Histogram(
            "issuer_http_request_duration_seconds",
            "HTTP request duration, by route template, method and status",
            ["route", "method", "status"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )


@functools.cache
def _metrics() -> _Metrics:
    # What is tallied when the process ends (at most FLUSH_SECONDS' worth) is not lost.
    atexit.register(flush)
    return _Metrics()


# -- what the code calls --------------------------------------------------------


# The per-request series (the request histogram, tokens issued, JWKS served) are
# tallied in plain dicts and added to prometheus-client's values every FLUSH_SECONDS,
# for all the requests since together. With workers each value is a float in a shared
# file behind a lock: three of those writes and the bookkeeping around them were an
# eighth of a JWKS request (issue 11); the tally is a dict update. A scrape adds its
# own worker's tally first, so it is exact for that worker; another worker's lags by
# at most FLUSH_SECONDS, far inside any scrape interval. What is tallied when the
# process exits is added then (atexit); a worker that is killed loses at most that.
# The label values are bounded sets (see above), so these stay small.
FLUSH_SECONDS = 0.1
_token_children: dict[str, Counter] = {}
_jwks_children: dict[int, Counter] = {}
_request_children: dict[tuple[str, str, int], Histogram] = {}
_tokens_due: dict[str, int] = {}
# The JWKS counter is the request histogram's count for this route, by status: added
# from the same tally, with no second count per request.
JWKS_ROUTE = "/.well-known/jwks.json"
# Per (route, method, status): [sum of seconds, then a count per bucket, +Inf last].
_requests_due: dict[tuple[str, str, int], list[float]] = {}


# The tallies are added to by the event loop and flushed by whichever thread writes the
# edge's notes (a record logged from another thread does): one lock for both.
_tally_lock = threading.RLock()


def _forget_tallies() -> None:
    """In a forked child: the parent adds what it tallied; a lock held by another of the
    parent's threads at the fork would never be released here."""
    global _tally_lock
    _tally_lock = threading.RLock()
    _tokens_due.clear()
    _requests_due.clear()


os.register_at_fork(after_in_child=_forget_tallies)


def token_issued(grant: str) -> None:
    with _tally_lock:
        _tokens_due[grant] = _tokens_due.get(grant, 0) + 1
    _flush_soon.due()


def token_error(error: str) -> None:
    _metrics().token_errors.labels(error=error).inc()


def login_failed() -> None:
    _metrics().login_failures.inc()


def refresh_reuse_detected() -> None:
    _metrics().refresh_reuse.inc()


def connection_closed(listener: str, reason: str) -> None:
    _metrics().connections_closed.labels(listener=listener, reason=reason).inc()


def client_disconnected() -> None:
    _metrics().client_disconnects.inc()


def request_observed(route: str, method: str, status: int, seconds: float) -> None:
    """One request, added to the shared values within ``FLUSH_SECONDS``."""
    with _tally_lock:
        _tally(route, method, status, seconds)
    _flush_soon.due()


def requests_observed(requests: Iterable[tuple[str, str, int, float]]) -> None:
    """Requests (route, method, status, seconds), added to the shared values now: the
    edge's batch comes every ``FLUSH_SECONDS`` already, and another worker's scrape
    lags no more than that."""
    with _tally_lock:
        for route, method, status, seconds in requests:
            _tally(route, method, status, seconds)
        _flush()


def _tally(route: str, method: str, status: int, seconds: float) -> None:
    key = (route, method, status)
    tally = _requests_due.get(key)
    if tally is None:
        tally = _requests_due[key] = [0.0] * (len(DURATION_BUCKETS) + 2)
    tally[0] += seconds
    # Prometheus buckets are "less than or equal": the first bound >= seconds.
    tally[1 + bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1


def flush() -> None:
    """Add the tallies to prometheus-client's values (with workers, the shared files)."""
    with _tally_lock:
        _flush()


def _flush() -> None:
    m = _metrics()
    while _tokens_due:
        grant, n = _tokens_due.popitem()
        child = _token_children.get(grant)
        if child is None:
            child = _token_children[grant] = m.tokens_issued.labels(grant=grant)
        child.inc(n)
    while _requests_due:
        (route, method, status), tally = _requests_due.popitem()
        histogram = _request_children.get((route, method, status))
        if histogram is None:
            histogram = _request_children[route, method, status] = m.request_duration.labels(
                route=route, method=method, status=str(status)
            )
        # observe() adds to the sum and to one bucket's value (cumulated at exposition);
        # the same two kinds of value, added once for the whole tally.
        histogram._sum.inc(tally[0])
        for bucket, count in zip(histogram._buckets, tally[1:], strict=True):
            if count:
                bucket.inc(count)
        if route == JWKS_ROUTE:
            jwks = _jwks_children.get(status)
            if jwks is None:
                jwks = _jwks_children[status] = m.jwks_requests.labels(status=str(status))
            jwks.inc(int(sum(tally[1:])))


_flush_soon = Later(FLUSH_SECONDS, flush)

# -- scraping -------------------------------------------------------------------


def key_metrics(keyring: Keyring, now: datetime) -> list[Metric]:
    """Key-schedule gauges from this worker's keyring (all workers read the same rows)."""
    views = keyring.snapshot(now).views
    counts = GaugeMetricFamily(
        "issuer_keys", "Signing keys by state (pending, active, …)", labels=["state"]
    )
    for state in KeyState:
        counts.add_metric([state.value], sum(1 for v in views if v.state is state))
    out: list[Metric] = [counts]
    try:
        keyring.signer(now)
        can_sign = 1.0
    except TemporarilyUnavailableError:
        can_sign = 0.0  # e.g. the active key's private half does not open with the KEK
    out.append(
        GaugeMetricFamily(
            "issuer_signing_key_available",
            "1 when this worker holds a private key it can sign with, 0 otherwise",
            value=can_sign,
        )
    )
    active = next((v for v in views if v.state is KeyState.ACTIVE), None)
    if active is not None:
        age = (now - active.record.activates_at).total_seconds()
        out.append(
            GaugeMetricFamily(
                "issuer_signing_key_age_seconds",
                "Seconds since the current signing key started signing",
                value=age,
            )
        )
    upcoming = [v.record.activates_at for v in views if v.state is KeyState.PENDING]
    if upcoming:
        out.append(
            GaugeMetricFamily(
                "issuer_next_key_rotation_seconds",
                "Seconds until the next published key starts signing",
                value=(min(upcoming) - now).total_seconds(),
            )
        )
    return out


def build_info() -> Metric:
    info = GaugeMetricFamily(
        "issuer_build_info", "Always 1; the version is in the label", labels=["version"]
    )
    info.add_metric([__version__], 1)
    return info


class _Scrape:
    def __init__(self, parts: Iterable[Metric], counters: object) -> None:
        self.parts = list(parts)
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        yield from self.counters.collect()  # type: ignore[attr-defined]
        yield from self.parts


def render(keyring: Keyring | None, now: datetime) -> bytes:
    """The text exposition: this process's (or, with workers, every worker's) counters."""
    flush()
    counters: object
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        counters = CollectorRegistry()
        MultiProcessCollector(counters, path)  # type: ignore[no-untyped-call]
    else:
        counters = _metrics().registry
    parts = [build_info()]
    if keyring is not None and keyring.loaded:
        parts.extend(key_metrics(keyring, now))
    return generate_latest(_Scrape(parts, counters))
