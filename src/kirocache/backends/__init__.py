"""Backends: where the bytes live. The protocols, the memory and the Redis backend.

Write your own by satisfying :class:`Backend` and :class:`AsyncBackend` (no import of
kirocache needed): seven methods a half, every other operation an :class:`Op` kind run by
``execute``. Run :mod:`kirocache.testing.conformance` against it; :func:`with_conveniences`
derives ``set``, ``delete``, ``delete_pattern`` and the other convenience methods from it.

Work over a backend that takes several round trips is written once as a generator of
:class:`Call` steps and driven by :func:`run_steps` (sync) or :func:`arun_steps` (async);
:data:`PAUSE` is the step that waits (a sleep in a thread, an await in a task);
:class:`DistributedLock` is a lock any backend can hold. Durations are float seconds
(:func:`to_seconds`, :func:`ttl_seconds`), patterns Redis globs (:func:`escape_glob`), and
:func:`mask_url` hides a backend URL's password in anything shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kirocache._values.types import to_seconds, ttl_seconds
from kirocache.backends._config import mask_url
from kirocache.backends._conveniences import AsyncConvenientBackend, ConvenientBackend, FullBackend
from kirocache.backends._derive import with_conveniences
from kirocache.backends._glob import escape_glob
from kirocache.backends._lock import DistributedLock
from kirocache.backends._protocol import (
    TOMBSTONE_PREFIX,
    AsyncBackend,
    Backend,
    BackendStats,
    Op,
    OpName,
    OpResult,
)
from kirocache.backends._steps import PAUSE, Call, Steps, arun_steps, run_steps

if TYPE_CHECKING:
    from kirocache.backends.cluster import RedisClusterBackend
    from kirocache.backends.memory import MemoryBackend
    from kirocache.backends.null import NullBackend
    from kirocache.backends.redis import RedisBackend
    from kirocache.backends.sentinel import RedisSentinelBackend
    from kirocache.backends.tiered import TieredBackend

__all__ = [
    "PAUSE",
    "TOMBSTONE_PREFIX",
    "AsyncBackend",
    "AsyncConvenientBackend",
    "Backend",
    "BackendStats",
    "Call",
    "ConvenientBackend",
    "DistributedLock",
    "FullBackend",
    "MemoryBackend",
    "NullBackend",
    "Op",
    "OpName",
    "OpResult",
    "RedisBackend",
    "RedisClusterBackend",
    "RedisSentinelBackend",
    "Steps",
    "TieredBackend",
    "arun_steps",
    "escape_glob",
    "mask_url",
    "run_steps",
    "to_seconds",
    "ttl_seconds",
    "with_conveniences",
]


def __getattr__(name: str) -> Any:
    # The concrete backends load on first use, so `import kirocache` stays cheap and a
    # memory-only application never imports redis-py.
    if name == "MemoryBackend":
        from kirocache.backends.memory import MemoryBackend

        return MemoryBackend
    if name == "NullBackend":
        from kirocache.backends.null import NullBackend

        return NullBackend
    if name == "RedisBackend":
        from kirocache.backends.redis import RedisBackend

        return RedisBackend
    if name == "RedisClusterBackend":
        from kirocache.backends.cluster import RedisClusterBackend

        return RedisClusterBackend
    if name == "RedisSentinelBackend":
        from kirocache.backends.sentinel import RedisSentinelBackend

        return RedisSentinelBackend
    if name == "TieredBackend":
        from kirocache.backends.tiered import TieredBackend

        return TieredBackend
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
