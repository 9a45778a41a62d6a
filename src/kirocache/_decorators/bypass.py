"""Caching switched off for decorated calls: in a ``bypass()`` block, or for the process.

A context variable, so a block covers the thread or task it runs in (and the tasks it
starts), never another caller's. ``KIROCACHE_DISABLE=1`` in the environment switches it
on for the whole process when kirocache is imported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Final

__all__ = ["ENV_DISABLE", "bypass", "bypassed"]

ENV_DISABLE: Final = "KIROCACHE_DISABLE"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})

_BYPASS: Final = ContextVar(
    "kirocache_bypass", default=os.environ.get(ENV_DISABLE, "").strip().lower() in _TRUE
)
bypassed = _BYPASS.get
"""Whether decorated calls skip the cache here and now (the hot path reads it per call)."""


@contextlib.contextmanager
def bypass(enabled: bool = True) -> Iterator[None]:
    """Skip the cache for ``@cached``/``@cached_many`` calls made inside the block.

    Each call runs its function and neither reads nor writes the cache: the uncached path,
    for debugging ("is the cache the problem?") and for tests of it. Invalidations
    (``@invalidates``, ``cache.delete``...) still run, so nothing stale is left for later.
    Blocks nest; ``bypass(False)`` turns caching back on inside one, or in a process
    started with ``KIROCACHE_DISABLE=1``.

    Args:
        enabled: ``True`` skips the cache, ``False`` uses it.

    Examples:
        >>> from kirocache import Cache, bypass, cached
        >>> calls = []
        >>> @cached(prefix="square:", cache=Cache.from_url("memory://"))
        ... def square(n: int) -> int:
        ...     calls.append(n)
        ...     return n * n
        >>> square(3), square(3)
        (9, 9)
        >>> with bypass():
        ...     square(3)
        9
        >>> calls
        [3, 3]
    """
    token = _BYPASS.set(bool(enabled))
    try:
        yield
    finally:
        _BYPASS.reset(token)
