"""Work that requests gather and that is done together every so often (the metrics'
tally, the access lines): one call scheduled at a time on the running event loop."""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Callable

# Every Later, so that a forked child forgets the calls its parent's loop had scheduled:
# the copied loop is not closed, and ``due`` would wait for a call that never comes.
_all: weakref.WeakSet[Later] = weakref.WeakSet()


class Later:
    """Calls ``callback`` within ``delay`` seconds of :meth:`due`, on the running event
    loop, once for everything made due meanwhile; at once when no loop runs."""

    __slots__ = ("__weakref__", "_callback", "_on", "delay")

    def __init__(self, delay: float, callback: Callable[[], None]) -> None:
        self.delay = delay
        self._callback = callback
        # The loop the call is scheduled on: a loop that closes before the call runs
        # drops it (tests run many loops), and the next loop to make work due schedules
        # its own.
        self._on: asyncio.AbstractEventLoop | None = None
        _all.add(self)

    def due(self) -> None:
        on = self._on
        if on is not None and not on.is_closed():
            # Already scheduled (nearly always): asking for the running loop costs more
            # than what a request adds (in CPython 3.11 it makes a getpid system call).
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._callback()
            return
        self._on = loop
        loop.call_later(self.delay, self._run)

    def _run(self) -> None:
        self._on = None
        self._callback()


def _forget_scheduled() -> None:
    for later in _all:
        later._on = None


os.register_at_fork(after_in_child=_forget_scheduled)
