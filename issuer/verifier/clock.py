"""Unix time as a dependency: the verifier asks a clock, tests move one instead of sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class UnixClock(Protocol):
    """Returns the current Unix time in seconds (``time.time`` fits)."""

    def __call__(self) -> float: ...


# time.time itself rather than a function that calls it: the verifier reads the
# clock on every verify, and the extra call layer is measurable there.
system_clock: UnixClock = time.time


class ManualClock:
    """A clock that only moves when told to."""

    __slots__ = ("now",)

    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
