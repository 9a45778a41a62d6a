"""A backend wrapper that injects faults, for testing how an app behaves when the cache fails."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import Counter
from typing import Any

from kirocache.exceptions import BackendError

__all__ = ["FaultyBackend"]

_READS = frozenset({"get", "get_many", "aget", "aget_many", "scan", "ascan"})


class FaultyBackend:
    """Wraps a backend; while ``failing`` is set every call raises instead of running.

    It counts the calls that reached it (``calls``, by method name), so a test can also
    prove that a circuit breaker stopped calling a failing backend.

    Args:
        inner: The backend to wrap (any object with the backend methods).
        error: The exception to raise while failing; a ``BackendError`` by default.
        reads_work: While failing, let reads (``get``, ``get_many``, ``scan``) through and
            refuse everything else, as a Redis at ``maxmemory`` with ``noeviction`` does:
            the case where an invalidation that is refused matters most, since the old
            value is still readable.

    Examples:
        >>> from kirocache import Cache
        >>> from kirocache.backends import MemoryBackend
        >>> backend = FaultyBackend(MemoryBackend())
        >>> cache = Cache(backend)
        >>> backend.failing = True
        >>> cache.get("user:1", "fallback")
        'fallback'
    """

    def __init__(
        self, inner: Any, error: Exception | None = None, *, reads_work: bool = False
    ) -> None:
        self.inner = inner
        self.error = error if error is not None else BackendError("injected fault")
        self.reads_work = reads_work
        self.failing = False
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1
        if self.failing and not (self.reads_work and name in _READS):
            raise self.error

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name.startswith("_") or not callable(target):
            return target
        if asyncio.iscoroutinefunction(target):

            @functools.wraps(target)
            async def call_async(*args: Any, **kwargs: Any) -> Any:
                self._count(name)
                return await target(*args, **kwargs)

            return call_async

        @functools.wraps(target)
        def call(*args: Any, **kwargs: Any) -> Any:
            self._count(name)
            return target(*args, **kwargs)

        return call

    def __repr__(self) -> str:
        return f"FaultyBackend({self.inner!r}, failing={self.failing})"
