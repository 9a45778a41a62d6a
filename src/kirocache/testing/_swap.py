"""Swapping the default cache for a test, and recording every operation a cache makes."""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kirocache._cache import Cache
from kirocache._cache import default as _global
from kirocache.exceptions import ConfigurationError
from kirocache.metrics import InMemoryMetrics, Outcome

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

__all__ = ["CacheRecorder", "Recorded", "ause_cache", "use_cache"]


def _resolve(cache_or_url: Cache | str, options: dict[str, Any]) -> tuple[Cache, bool]:
    """The cache to install, and whether it was built here (and so is closed here)."""
    if isinstance(cache_or_url, Cache):
        if options:
            msg = "options cannot be combined with a ready Cache; pass them to Cache()"
            raise ConfigurationError(msg)
        return cache_or_url, False
    return Cache.from_url(cache_or_url, **options), True


@contextmanager
def use_cache(cache_or_url: Cache | str = "memory://", **options: Any) -> Iterator[Cache]:
    """Make a cache the default for the duration of a ``with`` block.

    Inside the block, ``kirocache.get_cache()`` returns it, and so does every ``@cached``
    function without ``cache=``, since those look the default up at each call. On exit,
    even through an exception, the previous default comes back (or none, if none was set
    yet), so nested blocks unwind in order. A cache built here from a URL is closed on exit;
    a ``Cache`` passed in is left open.

    The default is process-wide: while the block runs, every thread sees the swapped
    cache. Tests that swap it must not run concurrently in threads of one process (pytest
    runs tests one at a time; pytest-xdist uses processes, which is fine).

    Args:
        cache_or_url: A ``Cache``, or a URL for ``Cache.from_url`` (in memory by default).
        **options: Options for ``Cache.from_url`` (not allowed with a ``Cache``).

    Yields:
        The cache that is now the default.

    Raises:
        ConfigurationError: Options were given with a ready ``Cache``, or are invalid.

    Examples:
        >>> import kirocache
        >>> with use_cache() as cache:
        ...     kirocache.get_cache() is cache
        True
    """
    cache, owned = _resolve(cache_or_url, options)
    previous = _global._swap_default(cache)
    try:
        yield cache
    finally:
        _global._swap_default(previous)
        if owned:
            cache.close()


@asynccontextmanager
async def ause_cache(
    cache_or_url: Cache | str = "memory://", **options: Any
) -> AsyncIterator[Cache]:
    """Async twin of :func:`use_cache`, for ``async with`` in async tests and fixtures.

    It swaps and restores the default exactly as :func:`use_cache` does; a cache built here
    from a URL has its connections for the running event loop closed (``aclose``) on exit,
    and its sync connections too.

    Args:
        cache_or_url: A ``Cache``, or a URL for ``Cache.from_url`` (in memory by default).
        **options: Options for ``Cache.from_url`` (not allowed with a ``Cache``).

    Yields:
        The cache that is now the default.

    Raises:
        ConfigurationError: Options were given with a ready ``Cache``, or are invalid.
    """
    cache, owned = _resolve(cache_or_url, options)
    previous = _global._swap_default(cache)
    try:
        yield cache
    finally:
        _global._swap_default(previous)
        if owned:
            await cache.aclose()
            # Closing a sync pool only drops sockets, so it does not hold up the loop.
            cache.close()


@dataclass(frozen=True, slots=True)
class Recorded:
    """One cache operation as a :class:`CacheRecorder` saw it.

    Attributes:
        operation: The cache method (``"get"``, ``"set"``, ``"get_many"``, ...).
        namespace: The namespace prefix of the key, or ``"default"``.
        outcome: What happened (``"hit"``, ``"miss"``, ``"set"``, ``"error"``, ...).
        latency: Seconds the call took.
        count: How many keys had this outcome in the call (more than one for ``*_many``).
    """

    operation: str
    namespace: str
    outcome: Outcome
    latency: float
    count: int = 1


class CacheRecorder(InMemoryMetrics):
    """Metrics that also remember every operation, in order, for assertions in tests.

    Pass it as a cache's ``metrics``: it keeps the usual figures (it is an
    ``InMemoryMetrics``) and appends a :class:`Recorded` per call. Recording is
    thread-safe; calls from several threads are kept in the order they were recorded.

    Examples:
        >>> from kirocache import Cache
        >>> recorder = CacheRecorder()
        >>> cache = Cache.from_url("memory://", metrics=recorder)
        >>> cache.get_or_set("user:profile:42", lambda: {"name": "Ada"})
        {'name': 'Ada'}
        >>> cache.get("user:profile:42")
        {'name': 'Ada'}
        >>> recorder.outcomes("get")
        ['miss', 'hit']
    """

    def __init__(self, window: int = 1024) -> None:
        super().__init__(window)
        self._records: list[Recorded] = []
        self._records_lock = threading.Lock()

    def record(
        self, operation: str, namespace: str, outcome: Outcome, latency: float, count: int = 1
    ) -> None:
        """Count the call as ``InMemoryMetrics`` does and remember it."""
        super().record(operation, namespace, outcome, latency, count)
        entry = Recorded(operation, namespace, outcome, latency, count)
        with self._records_lock:
            self._records.append(entry)

    @property
    def records(self) -> list[Recorded]:
        """Every recorded operation, oldest first (a copy)."""
        with self._records_lock:
            return list(self._records)

    def select(self, operation: str | None = None, namespace: str | None = None) -> list[Recorded]:
        """The recorded operations of one operation and/or namespace, oldest first.

        Args:
            operation: Keep only this cache method (``"get"``, ``"set"``, ...).
            namespace: Keep only this namespace prefix (``"user:profile:"``, ``"default"``).

        Returns:
            The matching records.
        """
        return [
            entry
            for entry in self.records
            if (operation is None or entry.operation == operation)
            and (namespace is None or entry.namespace == namespace)
        ]

    def outcomes(self, operation: str | None = None, namespace: str | None = None) -> list[str]:
        """The outcome of each recorded operation, oldest first, optionally filtered.

        One entry per recorded call: a ``get_many`` that found two keys and missed one is
        recorded as one ``"hit"`` (count 2) and one ``"miss"`` (count 1).

        Args:
            operation: Keep only this cache method (``"get"``, ``"set"``, ...).
            namespace: Keep only this namespace prefix (``"user:profile:"``, ``"default"``).

        Returns:
            The outcomes, such as ``["miss", "hit"]``.
        """
        return [entry.outcome for entry in self.select(operation, namespace)]

    @property
    def hits(self) -> int:
        """How many keys were read as hits (stale serves not included)."""
        return sum(entry.count for entry in self.records if entry.outcome == "hit")

    @property
    def misses(self) -> int:
        """How many keys were read as misses."""
        return sum(entry.count for entry in self.records if entry.outcome == "miss")

    def clear(self) -> None:
        """Forget every recorded operation and every counter, to start a fresh assertion."""
        super().reset()
        with self._records_lock:
            self._records.clear()

    def reset(self) -> None:
        """The same as :meth:`clear`, so the records and the figures never disagree."""
        self.clear()

    def __len__(self) -> int:
        with self._records_lock:
            return len(self._records)
