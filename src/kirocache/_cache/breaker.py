"""The circuit breaker: stop paying timeouts while the backend is down (no I/O)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal, TypeAlias

from kirocache._values.types import Duration, option_seconds, to_seconds
from kirocache.exceptions import ConfigurationError

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState: TypeAlias = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Opens after consecutive backend outages, and closes again as soon as the backend answers.

    Closed: every call goes to the backend. After ``failure_threshold`` outages in a row
    (connection refused or reset, timeouts, READONLY, LOADING...; never a command the store
    refused, such as WRONGTYPE) it opens: calls are refused at once, costing no timeout.

    While it is open, the cache pings the backend every ``probe_interval`` on a background
    daemon thread (a backend with sync methods only): the first answer makes it half open,
    so hits resume within about ``probe_interval`` of the backend coming back, however long
    the outage was. Without a probe (an async-only backend, ``probe_interval=None``), it
    goes half open after ``recovery_time``, then twice as long after each failed try, up
    to ``max_recovery_time``. Half open lets exactly one call through: its success closes
    the breaker, its failure opens it again.

    Args:
        failure_threshold: Consecutive outages that open the breaker.
        recovery_time: How long it stays open the first time, without a probe's answer.
        max_recovery_time: The cap on that doubling open time.
        probe_interval: Seconds between background PINGs while open; ``None``: no probe.
        clock: Monotonic seconds; injectable for tests.

    Raises:
        ConfigurationError: A threshold below 1, or a recovery time or probe interval that
            is not positive.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        recovery_time: Duration = 1.0,
        max_recovery_time: Duration = 30.0,
        probe_interval: Duration | None = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(failure_threshold, bool) or failure_threshold < 1:
            msg = f"failure_threshold must be a whole number >= 1, got {failure_threshold!r}"
            raise ConfigurationError(msg)
        self._base = to_seconds(recovery_time, name="recovery_time")
        self._cap = to_seconds(max_recovery_time, name="max_recovery_time")
        if self._base <= 0 or self._cap < self._base:
            msg = "recovery_time must be > 0 and max_recovery_time >= recovery_time"
            raise ConfigurationError(msg)
        self.probe_interval = (
            None if probe_interval is None else option_seconds(probe_interval, "probe_interval")
        )
        self.failure_threshold = failure_threshold
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._state: BreakerState = "closed"
        self._open_for = self._base
        self._open_until = 0.0
        self._probe_started: float | None = None
        self.times_opened = 0
        # Closed with no failure counted: the hot path reads this one attribute.
        self.healthy = True

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open`` or ``half_open`` (an open breaker past its time reads so)."""
        if self._state == "open" and self._clock() >= self._open_until:
            return "half_open"
        return self._state

    def allow(self) -> bool:
        """Whether a call may go to the backend now (the hot path: closed is one check)."""
        if self.healthy or self._state == "closed":
            return True
        with self._lock:
            now = self._clock()
            if self._state == "open":
                if now < self._open_until:
                    return False
                self._state = "half_open"
            # Half open: one probe at a time; a probe that never reported back (its
            # caller was cancelled) is given up after one recovery period.
            if self._probe_started is not None and now - self._probe_started < self._open_for:
                return False
            self._probe_started = now
            return True

    def success(self) -> None:
        """Report a call that reached the backend and came back."""
        if not self.healthy:
            with self._lock:
                self._failures = 0
                self._state = "closed"
                self._open_for = self._base
                self._probe_started = None
                self.healthy = True

    def failure(self, *, at_once: bool = False) -> bool:
        """Report a backend outage; may open the breaker.

        Args:
            at_once: Open a closed breaker now, whatever ``failure_threshold`` says (a call
                that waited out its whole deadline: the next ones would wait as long).

        Returns:
            Whether this failure opened it (the cache then starts its background probe).
        """
        with self._lock:
            self._failures += 1
            self.healthy = False
            now = self._clock()
            if self._state == "half_open":
                self._open_for = min(self._open_for * 2, self._cap)
                self._trip(now)
                return True
            if self._state == "closed" and (at_once or self._failures >= self.failure_threshold):
                self._trip(now)
                return True
            return False

    def backend_answered(self) -> None:
        """The background probe reached the backend: an open breaker goes half open now.

        Half open, the next caller is let through (one, not a herd) and its outcome closes
        or reopens the breaker; the doubling open time is not waited for.
        """
        with self._lock:
            if self._state == "open":
                self._state = "half_open"
                self._probe_started = None

    @property
    def is_open(self) -> bool:
        """Whether it is open and has not been made half open by a probe's answer."""
        return self._state == "open"

    def _trip(self, now: float) -> None:
        self._state = "open"
        self._open_until = now + self._open_for
        self._probe_started = None
        self.times_opened += 1

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, failures={self._failures})"
