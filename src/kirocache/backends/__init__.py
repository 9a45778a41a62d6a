"""Backends: where the bytes live. The protocols, the memory and the Redis backend.

Write your own by satisfying :class:`Backend` and :class:`AsyncBackend` (no import of
kirocache needed) and run :mod:`kirocache.testing.conformance` against it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kirocache.backends._protocol import AsyncBackend, Backend, BackendStats, Op, OpName, OpResult

if TYPE_CHECKING:
    from kirocache.backends.memory import MemoryBackend
    from kirocache.backends.redis import RedisBackend
    from kirocache.backends.tiered import TieredBackend

__all__ = [
    "AsyncBackend",
    "Backend",
    "BackendStats",
    "MemoryBackend",
    "Op",
    "OpName",
    "OpResult",
    "RedisBackend",
    "TieredBackend",
]


def __getattr__(name: str) -> Any:
    # The concrete backends load on first use, so `import kirocache` stays cheap and a
    # memory-only application never imports redis-py.
    if name == "MemoryBackend":
        from kirocache.backends.memory import MemoryBackend

        return MemoryBackend
    if name == "RedisBackend":
        from kirocache.backends.redis import RedisBackend

        return RedisBackend
    if name == "TieredBackend":
        from kirocache.backends.tiered import TieredBackend

        return TieredBackend
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
