"""The guard: what may reach the backend, and what a failure of it means (fault or bug)."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Final, Literal, TypeAlias

from kirocache._cache.breaker import CircuitBreaker
from kirocache._values.clock import Clock
from kirocache.backends import AsyncBackend, Backend
from kirocache.exceptions import (
    AuthenticationError,
    BackendError,
    CircuitOpenError,
    CommandError,
    ConfigurationError,
    KirocacheError,
    PermissionDeniedError,
)
from kirocache.metrics import InMemoryMetrics, MetricsHook, Outcome

__all__ = [
    "DEFAULT_BREAKER",
    "FAILED",
    "Failed",
    "Guard",
    "OnError",
    "is_fault",
    "is_outage",
    "show_debug_log",
]

OnError: TypeAlias = Literal["ignore", "raise"]

_log = logging.getLogger("kirocache")


class Failed:
    """The type of ``FAILED``: a backend call that did not happen or did not come back."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FAILED"


FAILED: Final = Failed()


class _DefaultBreaker:
    """Marker for "build the default circuit breaker"."""


DEFAULT_BREAKER: Final = _DefaultBreaker


def is_fault(exc: BaseException) -> bool:
    """The one rule that sorts what a backend call raised: a fault of the store, or a bug.

    A ``BackendError`` is a fault (the store is down, slow or refusing), and so is any
    other exception a third-party backend raises, except the programming errors: a
    ``KirocacheError`` (a bad key, a value too large, a misconfiguration), ``TypeError`` and
    ``AttributeError`` (ours or a backend's). Faults fail open; bugs are raised.
    """
    if isinstance(exc, BackendError):
        return True
    return not isinstance(exc, (KirocacheError, TypeError, AttributeError))


def is_outage(exc: BaseException) -> bool:
    """The same rule, one step further: whether a fault says the store is unavailable.

    Only an outage counts toward opening the circuit breaker. A ``BackendError`` says
    which it is (``outage``): a ``CommandError`` is the store's answer to one bad command
    (WRONGTYPE, NOPERM, OOM on one write, a script error) and fails that call only; so does
    a call that waited too long for a pooled connection on a healthy server. Any other
    exception a third-party backend raises (not a bug) is taken for an outage.
    """
    if isinstance(exc, BackendError):
        return exc.outage
    return is_fault(exc)


# Marks the handler show_debug_log() added, so it is added once.
_DEBUG_HANDLER: Final = "kirocache-debug-stderr"


def show_debug_log() -> None:
    """Make debug lines visible on stderr when the application configured no logging.

    ``CACHE_DEBUG=1`` alone must show something: without a handler anywhere, Python drops
    DEBUG records (its last-resort handler prints warnings and up only). An application
    that configured logging keeps its configuration: its handlers and levels decide.
    """
    if _log.hasHandlers():
        return
    handler = logging.StreamHandler()
    handler.set_name(_DEBUG_HANDLER)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    _log.addHandler(handler)
    if _log.level == logging.NOTSET or _log.level > logging.DEBUG:
        _log.setLevel(logging.DEBUG)


def _probe(guard_ref: weakref.ReferenceType[Guard], stop: threading.Event, interval: float) -> None:
    """The background probe's loop: PING while the breaker is open, until it is not.

    It holds the guard weakly between pings, so a cache dropped without ``close()`` ends
    it too; it runs on a daemon thread, so it never keeps a process alive.
    """
    while not stop.wait(interval):
        guard = guard_ref()
        if guard is None or not guard._probe_needed(stop):
            return
        backend, breaker = guard._backend, guard.breaker
        del guard
        if backend is None:
            return
        try:
            backend.ping()
        except Exception:  # noqa: BLE001, S112 - any failure of a PING: still down, try again
            continue
        finally:
            del backend
        if breaker is not None and not stop.is_set():
            breaker.backend_answered()


class Guard:
    """Stands between the cache and its backend: the one owner of the fault policy.

    It owns which halves of the backend exist (sync, async), the circuit breaker, the
    ``on_error`` choice, the classification of failures (``is_fault``), the counting
    (``errors_total``) and once-per-burst logging of faults, and the observation of every
    operation (the metrics hook and debug logging).

    Args:
        backend: The backend (checked for the sync and async methods).
        metrics: A ``MetricsHook``; ``True``: ``InMemoryMetrics``; ``False``: none.
        on_error: ``"ignore"`` fails open; ``"raise"`` raises ``BackendError``.
        breaker: The breaker; ``DEFAULT_BREAKER`` builds one on ``clock``; ``None``: none.
        debug: Log every operation at DEBUG level.
        clock: Where the default breaker reads monotonic time.

    Raises:
        ConfigurationError: The backend is not a backend, or ``on_error`` is unknown.
    """

    def __init__(
        self,
        backend: object,
        *,
        metrics: MetricsHook | bool,
        on_error: OnError,
        breaker: CircuitBreaker | type[_DefaultBreaker] | None,
        debug: bool,
        clock: Clock,
    ) -> None:
        self.sync_ok = isinstance(backend, Backend)
        self.async_ok = isinstance(backend, AsyncBackend)
        if not (self.sync_ok or self.async_ok):
            msg = (
                f"{type(backend).__name__} is not a kirocache backend: it must have the "
                "methods of kirocache.backends.Backend and/or AsyncBackend"
            )
            raise ConfigurationError(msg)
        if on_error not in ("ignore", "raise"):
            msg = f"on_error must be 'ignore' or 'raise', not {on_error!r}"
            raise ConfigurationError(msg)
        self._backend_name = type(backend).__name__
        if metrics is True:
            self.metrics: MetricsHook | None = InMemoryMetrics()
        elif metrics is False:
            self.metrics = None
        else:
            self.metrics = metrics
        self.on_error: OnError = on_error
        self.breaker: CircuitBreaker | None = (
            CircuitBreaker(clock=clock.monotonic) if breaker is DEFAULT_BREAKER else breaker  # type: ignore[assignment]
        )
        self.debug = debug
        if debug:
            show_debug_log()
        # Only the probe reads it, and only when sync_ok says it has ``ping``.
        self._backend: Backend | None = backend if self.sync_ok else None  # type: ignore[assignment]
        # The background probe (one daemon thread at most, while the breaker is open).
        self._stop = threading.Event()
        self._probing = False
        self._probe_thread: threading.Thread | None = None
        self._refused_logged = 0.0
        self.errors_total = 0
        # Whether a burst of faults is going on; the hot path reads it without the lock.
        self.failing = False
        self._burst_errors = 0
        self._lock = threading.Lock()

    # -- which half of the backend ---------------------------------------------------------

    def need_sync(self) -> None:
        """Raise unless the backend has sync methods.

        Raises:
            ConfigurationError: It has only async ones.
        """
        if not self.sync_ok:
            msg = f"{self._backend_name} has no sync methods; use the a-prefixed ones"
            raise ConfigurationError(msg)

    def need_async(self) -> None:
        """Raise unless the backend has async methods.

        Raises:
            ConfigurationError: It has only sync ones.
        """
        if not self.async_ok:
            msg = f"{self._backend_name} has no async methods; use the sync ones"
            raise ConfigurationError(msg)

    # -- observation -----------------------------------------------------------------------

    def observe(
        self, op: str, label: str, outcome: Outcome, started: float, key: str = "", count: int = 1
    ) -> None:
        """Record one operation's outcome and latency (metrics hook, debug log)."""
        if self.metrics is not None or self.debug:
            latency = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.record(op, label, outcome, latency, count)
            if self.debug:
                _log.debug("%s %s -> %s in %.3f ms", op, key, outcome, latency * 1000)

    def observe_many(
        self,
        op: str,
        labels: Sequence[str],
        found: Mapping[str, object],
        keys: Sequence[str],
        started: float,
    ) -> None:
        """Record a multi-key read as hits and misses per label (``labels[i]`` of ``keys[i]``)."""
        tallies: dict[tuple[str, Outcome], int] = {}
        for key, label in zip(keys, labels, strict=True):
            outcome: Outcome = "hit" if key in found else "miss"
            tallies[label, outcome] = tallies.get((label, outcome), 0) + 1
        for (label, outcome), count in tallies.items():
            self.observe(op, label, outcome, started, count=count)

    # -- the fault policy --------------------------------------------------------------------

    def allow(self, op: str, label: str, started: float) -> bool:
        """Whether the breaker lets a call through; a refusal counts as an error.

        Raises:
            CircuitOpenError: It refuses, and ``on_error`` is ``"raise"``.
        """
        breaker = self.breaker
        if breaker is None or breaker.allow():
            return True
        self.errors_total += 1
        self.observe(op, label, "error", started)
        if self.on_error == "raise":
            msg = "the cache backend is failing; calls are refused until it recovers"
            raise CircuitOpenError(msg)
        return False

    def failed(self, op: str, label: str, exc: Exception, started: float) -> Failed:
        """Sort an exception a backend call raised (``is_fault``): a fault fails open.

        Returns:
            ``FAILED``, after counting and logging the fault (see ``fault``).

        Raises:
            Exception: ``exc`` itself when it is a programming error (ours or a backend's),
                or ``BackendError`` when ``on_error`` is ``"raise"``.
        """
        if not is_fault(exc):
            raise exc
        self.fault(op, label, exc, started)
        return FAILED

    def slot_failure(self, op: str, label: str, results: Sequence[object], started: float) -> bool:
        """Sort the first error a pipeline left in its slots, as ``failed`` does; any?

        Raises:
            Exception: A programming error in a slot (a value too large for the backend,
                say), which is the caller's to see, not a fault of the store.
        """
        for result in results:
            if isinstance(result, Exception):
                self.failed(op, label, result, started)
                return True
        return False

    def fault(self, op: str, label: str, exc: Exception, started: float) -> None:
        """Count, log, and fail open or raise, for a backend failure.

        An outage (``is_outage``) counts toward the breaker and is logged once per burst; a
        command the store refused fails this call only: it is logged (at most once a
        second) and, the store having answered, it closes a half-open breaker.

        Raises:
            BackendError: ``on_error`` is ``"raise"``.
            Exception: ``exc`` itself when it is not a fault but a programming error (a bad
                key an op found in a pipeline slot, say): the one rule holds at every door.
        """
        if not is_fault(exc):
            raise exc
        if is_outage(exc):
            self._outage(op, exc)
        else:
            self._refused(op, exc)
        self.observe(op, label, "error", started)
        if self.on_error == "raise":
            if isinstance(exc, BackendError):
                raise exc
            msg = f"cache backend failed during {op}: {type(exc).__name__}: {exc}"
            raise BackendError(msg) from exc

    def _outage(self, op: str, exc: Exception) -> None:
        breaker = self.breaker
        at_once = isinstance(exc, BackendError) and exc.timed_out
        if breaker is not None and breaker.failure(at_once=at_once):
            self._start_probe(breaker)
        with self._lock:
            self.errors_total += 1
            self._burst_errors += 1
            first = not self.failing
            self.failing = True
        if first:
            # A refused password is a misconfiguration, not a passing outage: an error.
            level = logging.ERROR if isinstance(exc, AuthenticationError) else logging.WARNING
            _log.log(
                level,
                "cache backend failed during %s (%s: %s); %s",
                op,
                type(exc).__name__,
                exc,
                "raising" if self.on_error == "raise" else "failing open until it recovers",
            )

    def _refused(self, op: str, exc: Exception) -> None:
        if isinstance(exc, CommandError) and self.breaker is not None:
            self.breaker.success()  # it answered: the store is up
        now = time.monotonic()
        with self._lock:
            self.errors_total += 1
            loud, self._refused_logged = now - self._refused_logged >= 1.0, now
        if loud:
            # An ACL's refusal (NOPERM) is a misconfiguration, not a passing fault: an error.
            level = logging.ERROR if isinstance(exc, PermissionDeniedError) else logging.WARNING
            _log.log(
                level,
                "cache backend refused %s (%s: %s); %s",
                op,
                type(exc).__name__,
                exc,
                "raising" if self.on_error == "raise" else "that call fails open",
            )

    # -- the background probe ----------------------------------------------------------------

    @property
    def probe_thread(self) -> threading.Thread | None:
        """The probe thread this guard last started (a daemon ``kirocache-breaker-probe``).

        Alive while it probes; ``None`` before the first outage and after ``close``.
        """
        return self._probe_thread

    def _start_probe(self, breaker: CircuitBreaker) -> None:
        interval = breaker.probe_interval
        if interval is None or not self.sync_ok:
            return  # no sync PING to send: the breaker's timed half-open takes over
        with self._lock:
            if self._probing:
                return
            self._probing = True
            self._stop = stop = threading.Event()
            self._probe_thread = thread = threading.Thread(
                target=_probe,
                args=(weakref.ref(self), stop, interval),
                name="kirocache-breaker-probe",
                daemon=True,
            )
            thread.start()  # under the lock: close() never joins a thread not yet started

    def _probe_needed(self, stop: threading.Event) -> bool:
        """Whether the probe should PING again; if not, it ends.

        Decided under the lock, so that a breaker reopening at that moment starts a new one.
        """
        breaker = self.breaker
        with self._lock:
            if stop.is_set():
                return False
            if breaker is not None and breaker.is_open:
                return True
            self._probing = False
            return False

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background probe (the cache is closing): no PING is sent after this.

        Waits up to ``timeout`` seconds for a PING in flight, so that it cannot reopen a
        connection after the backend's own ``close()``. A later outage, if the cache is
        used again, starts a new probe.
        """
        with self._lock:
            self._stop.set()
            self._probing = False
            thread, self._probe_thread = self._probe_thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def ok(self) -> None:
        """A backend call came back: close the breaker, end a burst of failures."""
        if self.breaker is not None:
            self.breaker.success()
        if self.failing:
            with self._lock:
                count, self._burst_errors, self.failing = self._burst_errors, 0, False
            _log.warning("cache backend recovered after %d failed calls", count)

    def settled(self) -> bool:
        """Whether nothing is failing: no burst going on, the breaker closed and clean."""
        breaker = self.breaker
        return not self.failing and (breaker is None or breaker.healthy)

    def __repr__(self) -> str:
        return f"Guard(on_error={self.on_error!r}, errors_total={self.errors_total})"
