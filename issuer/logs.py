"""Logging: one JSON object per line (or plain text for people), with the request context.

Every line carries ``time``, ``level``, ``event`` (the message), ``logger``, ``pid`` and,
inside a request, ``request_id`` and ``route`` (the template, never the raw
path); fields passed with ``extra=`` are added as they are, and an exception
becomes ``{"type", "message", "traceback"}``. Nothing here logs a request body,
a query string or a header, so passwords, secrets and tokens have no way in;
code that logs must keep it that way (see tests/test_logs.py).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import contextvars
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from issuer.jsontext import json_str
from issuer.later import Later

# Set by the HTTP middleware for each request; read here for every record.
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
route_var: contextvars.ContextVar[str] = contextvars.ContextVar("route", default="-")
ACCESS_LOGGER = "issuer.access"
# LogRecord's own attributes: anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _context(record: logging.LogRecord) -> dict[str, str]:
    out = {}
    rid = getattr(record, "request_id", None) or request_id_var.get()
    route = getattr(record, "route", None) or route_var.get()
    if rid != "-":
        out["request_id"] = rid
    if route != "-":
        out["route"] = route
    return out


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "event": record.getMessage(),
            "logger": record.name,
            "pid": record.process,
            **_context(record),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in doc:
                doc[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, exc, tb = record.exc_info
            doc["exception"] = {
                "type": exc_type.__qualname__,
                "message": str(exc),
                "traceback": "".join(traceback.format_exception(exc_type, exc, tb)),
            }
        return json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        extra.update(_context(record))
        if extra:
            head, sep, tail = text.partition("\n")
            text = head + " " + " ".join(f"{k}={v}" for k, v in extra.items()) + sep + tail
        return text


class LibraryFloodFilter(logging.Filter):
    """At most one record per message template per interval from asyncio and aiohttp.

    Their errors about one connection (accept() out of file descriptors, a
    transport error) repeat once per event under load; our code cannot reach
    those call sites to count them, so the repeats are counted here instead.
    """

    NOISY = ("asyncio", "aiohttp")

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self.interval = interval
        self.seen: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.partition(".")[0] not in self.NOISY or record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = time.monotonic()
        last, suppressed = self.seen.get(key, (-self.interval, 0))
        if now - last < self.interval:
            self.seen[key] = (last, suppressed + 1)
            return False
        self.seen[key] = (now, 0)
        if suppressed:
            record.suppressed = suppressed  # shown as a field: how many were dropped
        return True


# An access line waiting to be written: (time, level, method, route template, status,
# duration in ms, request id, the context's route), turned into text when written.
AccessEntry = tuple[float, int, str, str, int, float, str, str]
# How long access lines wait to be written together, as the metrics' tally does
# (``metrics.FLUSH_SECONDS``): nginx's ``access_log ... buffer= flush=``, for the same
# reason. Written once per loop turn, the writes and their callbacks were a twentieth of
# a JWKS request's CPU (issue 11). Any other record still goes out at once, after the
# access lines before it; a worker that is killed loses at most this much of them.
ACCESS_FLUSH_SECONDS = 0.1


class JSONLineHandler(logging.StreamHandler[Any]):
    """The JSON handler on the root logger; access lines may be waiting to be written first.

    :func:`access` hands its lines to this handler as entries, written in batches, one
    write every ``ACCESS_FLUSH_SECONDS``; any other record is written after the access
    lines that came before it, so one process's lines stay in the order they happened.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        # Appended to by an event loop's thread without a lock (deque.append is atomic),
        # drained under the lock by whichever thread writes.
        self.pending: collections.deque[AccessEntry] = collections.deque()
        self._write_soon = Later(ACCESS_FLUSH_SECONDS, self.write_pending)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _write_first()
        except Exception:
            self.handleError(record)  # the record itself still goes out
        if self.pending:
            self.write_pending()
        super().emit(record)

    def write_pending(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            pending = self.pending
            entries = [pending.popleft() for _ in range(len(pending))]
            if not entries:
                return
            # Whether this handler is still the one place access lines go is asked once
            # a batch, not once a line: a handler added since (pytest's caplog, an
            # operator's) gets the entries as records, through the logging machinery.
            if _only_handler(_access_logger, self):
                try:
                    self.stream.write("".join(map(_access_line, entries)))
                    self.flush()
                except (OSError, ValueError):
                    pass  # stderr closed under us: nothing sensible is left to do
                return
        for entry in entries:
            _access_record(entry)

    def queue(self, entry: AccessEntry) -> None:
        """Write ``entry`` within ``ACCESS_FLUSH_SECONDS`` (at once outside an event loop)."""
        self.pending.append(entry)
        self._write_soon.due()


# A logger is made once per name and lives as long as the process: looked up once
# (``getLogger`` takes the logging module's lock).
_access_logger = logging.getLogger(ACCESS_LOGGER)
# The JSON handler ``configure`` installed on the root logger: access lines written
# straight to it skip the LogRecord (see ``access``).
_json_handler: JSONLineHandler | None = None


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Send every logger's records to stderr, one line each (``fmt``: json or text)."""
    global _json_handler
    handler: logging.StreamHandler[Any]
    if fmt == "json":
        handler = JSONLineHandler()
        handler.setFormatter(JSONFormatter())
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(TextFormatter())
    handler.addFilter(LibraryFloodFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, JSONLineHandler):
            _write_first()
            old.write_pending()
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    if _json_handler is None:
        # Lines still queued when the process ends (at most ACCESS_FLUSH_SECONDS') are written.
        atexit.register(_write_pending)
    _json_handler = handler if isinstance(handler, JSONLineHandler) else None


def _write_pending() -> None:
    _write_first()
    if _json_handler is not None:
        _json_handler.write_pending()


# Whoever holds access lines back (the HTTP edge notes finished requests and hands them
# over in batches) and must have them written before any other record.
_first: list[Callable[[], None]] = []


def write_first(callback: Callable[[], None]) -> None:
    """Call ``callback`` before any record that is not an access line is written."""
    _first.append(callback)


def _write_first() -> None:
    for callback in _first:
        callback()


def lines_lock() -> contextlib.AbstractContextManager[object]:
    """The JSON handler's lock (any record is written holding it), for work that must not
    be split by another thread's record; nothing to hold without that handler."""
    handler = _json_handler
    if handler is None or handler.lock is None:
        return contextlib.nullcontext()
    return handler.lock


def access_lines_held() -> bool:
    """Whether access lines may be held back and handed over in batches (``access_batch``):
    with the service's JSON handler, which writes them before any later record. Any
    other set-up (text lines, a test's handler) gets each line at once, as ``access``."""
    return _json_handler is not None


def access_batch(entries: list[AccessEntry]) -> None:
    """Access lines of requests that finished a moment ago, each at its own level, with
    the request id and route in the entry (their context is gone)."""
    enabled = _access_logger.isEnabledFor
    entries = [entry for entry in entries if enabled(entry[1])]
    if not entries:
        return
    handler = _json_handler
    if handler is None:
        for entry in entries:
            _access_record(entry)
        return
    handler.pending.extend(entries)
    handler.write_pending()


def access(
    method: str,
    route: str,
    status: int,
    duration_ms: float,
    *,
    quiet: bool,
    request_id: str | None = None,
) -> None:
    """One line per request: never the query string, a header or the body."""
    level = logging.DEBUG if quiet else logging.INFO
    if not _access_logger.isEnabledFor(level):
        return
    handler = _json_handler
    if handler is not None:
        # The line JSONFormatter would make from a record, with the same fields in the
        # same order, made without a LogRecord, a formatter and the handler chain (at
        # INFO that round trip was a quarter of a JWKS request's cost), and made when
        # they are written, every ACCESS_FLUSH_SECONDS: a request only notes what
        # happened. A write and a flush per line were a tenth of a JWKS request, one
        # per loop turn still a twentieth (issue 11).
        rid = request_id or request_id_var.get()
        handler.queue(
            (time.time(), level, method, route, status, duration_ms, rid, route_var.get())
        )
        return
    extra: dict[str, Any] = {
        "method": method,
        "status": status,
        "duration_ms": round(duration_ms, 2),
    }
    if request_id is not None:
        extra["request_id"] = request_id
    _access_logger.log(level, "%s %s %d", method, route, status, extra=extra)


def _access_line(entry: AccessEntry) -> str:
    created, level, method, route, status, duration_ms, rid, current = entry
    if rid == "-":
        return _template(level, method, route, status, current, False) % (
            _iso(created),
            duration_ms,
        )
    return _template(level, method, route, status, current, True) % (
        _iso(created),
        # Letters and digits need no escape (the ids the edge makes are hex).
        f'"{rid}"' if rid.isalnum() else json_str(rid),
        duration_ms,
    )


def _access_record(entry: AccessEntry) -> None:
    """The entry as a LogRecord, made as ``Logger.log`` makes one, for every handler."""
    created, level, method, route, status, duration_ms, rid, current = entry
    logger = _access_logger
    extra: dict[str, Any] = {
        "method": method,
        "status": status,
        "duration_ms": round(duration_ms, 2),
    }
    # Written after the request's context is gone: what it said comes along.
    if rid != "-":
        extra["request_id"] = rid
    if current != "-":
        extra["route"] = current
    record = logger.makeRecord(
        logger.name, level, __file__, 0, "%s %s %d", (method, route, status), None, extra=extra
    )
    record.created, record.msecs = created, int(created * 1000) % 1000
    logger.handle(record)


_template_cache: dict[tuple[int, str, str, int, str, bool], str] = {}
# os.getpid is a system call (glibc no longer caches it); the templates hold the pid.
os.register_at_fork(after_in_child=_template_cache.clear)


def _forget_pending() -> None:
    if _json_handler is not None:
        _json_handler.pending.clear()  # the parent's lines: it writes them


os.register_at_fork(after_in_child=_forget_pending)


def _template(level: int, method: str, route: str, status: int, current: str, with_id: bool) -> str:
    """The access line as a %-template of its time, its request id (``with_id``) and its
    duration: all the rest is the same for every request of a route and status, so it is
    made once (one C-level format per line). Bounded: methods, route templates and
    statuses are small sets."""
    key = (level, method, route, status, current, with_id)
    found = _template_cache.get(key)
    if found is not None:
        return found
    fixed = (
        f', "level": "{logging.getLevelName(level)}", '
        f'"event": {json_str(f"{method} {route} {status}")}, '
        f'"logger": "{ACCESS_LOGGER}", "pid": {os.getpid()}'
    ).replace("%", "%%")
    after = (
        ("" if current == "-" else f', "route": {json_str(current)}')
        + f', "method": {json_str(method)}, "status": {int(status)}'
    ).replace("%", "%%")
    template = (
        '{"time": "%s"'
        + fixed
        + (', "request_id": %s' if with_id else "")
        + after
        + ', "duration_ms": %.2f}\n'
    )
    if len(_template_cache) > 4096:
        _template_cache.clear()  # only a flood of unknown methods could get here
    _template_cache[key] = template
    return template


def _only_handler(logger: logging.Logger, handler: logging.Handler) -> bool:
    """Whether ``handler``, on the root logger, is the one place ``logger``'s records go."""
    root = logging.root
    node = logger
    while node is not root:
        if node.handlers or node.filters or not node.propagate or node.parent is None:
            return False
        node = node.parent
    # The flood filter only ever holds back asyncio's and aiohttp's records.
    return (
        root.handlers == [handler]
        and not root.filters
        and handler.level <= logging.DEBUG
        and all(isinstance(f, LibraryFloodFilter) for f in handler.filters)
    )


_second: tuple[int, str] = (-1, "")
_millisecond: tuple[int, str] = (-1, "")
# The end of a timestamp for each millisecond of a second: ".042+00:00".
_MILLISECONDS = tuple(f".{ms:03d}+00:00" for ms in range(1000))


def _iso(created: float) -> str:
    """``datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")``, its
    date made once a second and the milliseconds looked up; the last one kept, since a
    batch of access lines holds several requests of each millisecond."""
    global _second, _millisecond
    ms = int(created * 1000)
    if ms == _millisecond[0]:
        return _millisecond[1]
    sec = ms // 1000
    if sec != _second[0]:
        _second = (sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    text = _second[1] + _MILLISECONDS[ms - sec * 1000]
    _millisecond = (ms, text)
    return text


OVERLOAD_INTERVAL = 10.0
_overloads: dict[str, tuple[float, int]] = {}


def overload(condition: str, message: str, *args: object) -> None:
    """One WARNING per overload ``condition`` per interval, with how often it happened.

    A flood makes the same event thousands of times a second; a line for each would
    fill the disk and bury everything else (an early flood test wrote 200 MB in 52 s).
    """
    now = time.monotonic()
    last, count = _overloads.get(condition, (-OVERLOAD_INTERVAL, 0))
    count += 1
    if now - last < OVERLOAD_INTERVAL:
        _overloads[condition] = (last, count)
        return
    _overloads[condition] = (now, 0)
    logging.getLogger("issuer.overload").warning(
        message + " (%d times since the last such line; at most one a %ds)",
        *args,
        count,
        int(OVERLOAD_INTERVAL),
        extra={"condition": condition, "count": count},
    )
