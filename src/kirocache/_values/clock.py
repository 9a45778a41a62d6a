"""The one injectable clock: wall time for what is stored, monotonic time for deadlines."""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Where kirocache reads the time (``Cache(clock=...)``).

    Two readings, as the standard library has them: ``time()`` is wall-clock seconds since
    the epoch, for what is stored and shared between processes (stale-while-revalidate
    stamps, session timestamps, invalidation records); ``monotonic()`` never goes back, for
    the cache's local deadlines (the breaker's open time, health and alert stamps).
    Latencies, and waits on what the server or other processes do (a tombstone's real age,
    a follower's wait, a lock's polling), use real time and are not part of the clock.
    """

    def time(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start that never go back."""
        ...


class SystemClock:
    """The real clock: ``time.time`` and ``time.monotonic``."""

    __slots__ = ()

    def time(self) -> float:
        """``time.time()``."""
        return time.time()

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()
"""The clock a ``Cache`` uses unless it is given another."""


class ManualClock:
    """A clock that moves only when told to, for tests that travel in time.

    Both readings advance together, so a test can expire a stale-while-revalidate entry, a
    sliding session or a tombstone without sleeping. It is safe to advance from any thread.

    Args:
        start: The wall-clock reading to start at (the monotonic reading starts at 0).

    Examples:
        >>> clock = ManualClock(start=1_000.0)
        >>> clock.advance(30)
        >>> clock.time(), clock.monotonic()
        (1030.0, 30.0)
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._lock = threading.Lock()
        self._start = float(start)
        self._elapsed = 0.0

    def time(self) -> float:
        """The wall-clock reading: ``start`` plus every ``advance`` so far."""
        return self._start + self._elapsed

    def monotonic(self) -> float:
        """The monotonic reading: every ``advance`` so far."""
        return self._elapsed

    def advance(self, seconds: float) -> None:
        """Move both readings forward by ``seconds``.

        Raises:
            ValueError: ``seconds`` is negative or not finite (a clock never goes back).
        """
        if not 0 <= seconds < float("inf"):
            msg = f"a clock only moves forward by a finite amount, not {seconds!r} seconds"
            raise ValueError(msg)
        with self._lock:
            self._elapsed += seconds

    def __repr__(self) -> str:
        return f"ManualClock(time={self.time()!r})"
