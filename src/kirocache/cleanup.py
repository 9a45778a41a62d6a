"""Scheduled cleanup: purge expired entries and prune tag and dependency indexes.

Tag sets (``@cached(tags=...)``) and dependency sets (``cache.depends``) list keys that
may since have expired or been invalidated; their own TTL bounds how long they live, and
a :class:`Cleanup` run drops the dead entries sooner, so indexes stay small and an
invalidation does not walk through keys that are long gone. On the memory backend it also
purges every expired entry at once.

Run it once (``Cleanup(cache).run_once()``), or every N seconds on a thread
(``start()``/``stop()``) or an asyncio task (``astart()``/``astop()``).

Examples:
    >>> from kirocache import Cache
    >>> from kirocache.cleanup import Cleanup
    >>> cache = Cache.from_url("memory://")
    >>> cache.set("board:1", [1, 2], 60, tags=["team:red"])
    True
    >>> cache.delete("board:1")
    True
    >>> Cleanup(cache).run_once().tag_entries_pruned
    1
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from kirocache.backends import to_seconds
from kirocache.exceptions import BackendError, ConfigurationError

if TYPE_CHECKING:
    from typing_extensions import Self

    from kirocache import Cache, Duration

__all__ = ["Cleanup", "CleanupReport"]

_log = logging.getLogger("kirocache.cleanup")


@dataclasses.dataclass(frozen=True, slots=True)
class CleanupReport:
    """What one cleanup run did.

    Attributes:
        expired_purged: Expired entries the memory backend dropped (0 on Redis, which
            expires keys itself).
        indexes_checked: Tag and dependency sets looked at.
        tag_entries_pruned: Tag-set entries whose key was gone.
        dependency_edges_pruned: Dependency edges whose dependent was gone.
        stamps_pruned: Tag stamps of tags with no index left (no entry to check them).
        errors: Backend calls that failed (the run goes on with the next index).
        duration: Seconds the run took.
    """

    expired_purged: int = 0
    indexes_checked: int = 0
    tag_entries_pruned: int = 0
    dependency_edges_pruned: int = 0
    stamps_pruned: int = 0
    errors: int = 0
    duration: float = 0.0


class Cleanup:
    """A cleanup task for one cache: run once, or every ``every`` seconds until stopped.

    Args:
        cache: The cache whose backend and indexes are cleaned.
        every: Seconds between runs when started (``start`` or ``astart``).
        on_report: Called with each run's :class:`CleanupReport` (a raising callback is
            logged, never fatal).

    Raises:
        ConfigurationError: ``every`` is not a positive duration.
    """

    def __init__(
        self,
        cache: Cache,
        *,
        every: Duration = 60.0,
        on_report: Callable[[CleanupReport], object] | None = None,
    ) -> None:
        self.every = to_seconds(every, name="every")
        if not 0 < self.every < float("inf"):
            msg = f"every must be a positive, finite number of seconds, got {every!r}"
            raise ConfigurationError(msg)
        self.cache = cache
        self.on_report = on_report
        self.runs = 0
        self.last_report: CleanupReport | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Cleanup(every={self.every}, runs={self.runs}, {state})"

    @property
    def running(self) -> bool:
        """Whether a periodic thread or task is active."""
        thread_alive = self._thread is not None and self._thread.is_alive()
        return thread_alive or (self._task is not None and not self._task.done())

    # -- one run ---------------------------------------------------------------------------

    def run_once(self) -> CleanupReport:
        """Clean now, with the sync backend methods; returns what was done."""
        started = time.perf_counter()
        expired, errors = self._purge_expired()
        pruned = self.cache.prune_indexes()
        return self._finish(self._report(started, expired, errors, pruned))

    async def arun_once(self) -> CleanupReport:
        """Clean now, with the async backend methods; returns what was done."""
        started = time.perf_counter()
        expired, errors = self._purge_expired()
        pruned = await self.cache.aprune_indexes()
        return self._finish(self._report(started, expired, errors, pruned))

    def _purge_expired(self) -> tuple[int, int]:
        """Expired entries the backend dropped (a memory backend can), and errors (0 or 1)."""
        purge = getattr(self.cache.backend, "purge_expired", None)
        if not callable(purge):
            return 0, 0
        try:
            return int(purge()), 0
        except BackendError:
            return 0, 1

    @staticmethod
    def _report(started: float, expired: int, errors: int, pruned: dict[str, int]) -> CleanupReport:
        return CleanupReport(
            expired_purged=expired,
            indexes_checked=pruned["indexes"],
            tag_entries_pruned=pruned["tag_entries"],
            dependency_edges_pruned=pruned["dependency_edges"],
            stamps_pruned=pruned.get("stamps", 0),
            errors=errors + pruned["errors"],
            duration=time.perf_counter() - started,
        )

    def _finish(self, report: CleanupReport) -> CleanupReport:
        self.runs += 1
        self.last_report = report
        _log.debug("cleanup: %s", report)
        if self.on_report is not None:
            try:
                self.on_report(report)
            except Exception:  # noqa: BLE001 - a user callback never stops the cleanup
                _log.exception("cleanup report callback failed")
        return report

    # -- periodic: a thread ----------------------------------------------------------------

    def start(self) -> Self:
        """Run every ``every`` seconds on a daemon thread until :meth:`stop`.

        Raises:
            ConfigurationError: It is already running.
        """
        if self.running:
            msg = "this cleanup is already running"
            raise ConfigurationError(msg)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="kirocache-cleanup", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._run_logged()

    def _run_logged(self) -> None:
        try:
            self.run_once()
        except Exception:  # noqa: BLE001 - one failed run must not end the schedule
            _log.exception("cleanup run failed")

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the thread and wait for a run in progress to end (at most ``timeout``)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- periodic: an asyncio task ---------------------------------------------------------

    def astart(self) -> asyncio.Task[None]:
        """Run every ``every`` seconds as a task of the running loop until :meth:`astop`.

        Raises:
            ConfigurationError: It is already running.
        """
        if self.running:
            msg = "this cleanup is already running"
            raise ConfigurationError(msg)
        self._task = asyncio.get_running_loop().create_task(self._aloop(), name="kirocache-cleanup")
        return self._task

    async def _aloop(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self._arun_logged()

    async def _arun_logged(self) -> None:
        try:
            await self.arun_once()
        except Exception:  # noqa: BLE001 - one failed run must not end the schedule
            _log.exception("cleanup run failed")

    async def astop(self) -> None:
        """Cancel the task and wait for it to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Self:
        self.astart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()
