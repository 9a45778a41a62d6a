"""``Outage``: a backend wrapper that refuses every call, or only the writes, while failing."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from typing import Any

from kirocache.exceptions import BackendError

READS = frozenset({"get", "get_many", "aget", "aget_many"})


class Outage:
    """Wraps a backend; while ``failing``, every call raises, or only writes (``writes_only``).

    Writes refused while reads are served is what ``maxmemory`` with ``noeviction`` does,
    and the case where a kept invalidation matters most: the old value is still readable.
    """

    def __init__(self, inner: Any, *, writes_only: bool = True) -> None:
        self.inner = inner
        self.writes_only = writes_only
        self.failing = False
        self.calls: Counter[str] = Counter()

    def _check(self, name: str) -> None:
        self.calls[name] += 1
        if self.failing and not (self.writes_only and name in READS):
            raise BackendError("injected outage")

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name.startswith("_") or not callable(target):
            return target
        if asyncio.iscoroutinefunction(target):

            @functools.wraps(target)
            async def call_async(*args: Any, **kwargs: Any) -> Any:
                self._check(name)
                return await target(*args, **kwargs)

            return call_async

        @functools.wraps(target)
        def call(*args: Any, **kwargs: Any) -> Any:
            self._check(name)
            return target(*args, **kwargs)

        return call
