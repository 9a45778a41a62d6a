"""The cache engine: the ``Cache`` facade, its collaborators, its operations and drivers.

- ``cache``: ``Cache``, the facade, composed of the collaborators below.
- ``keyspace``: ``KeySpace``, where keys live (prefix, namespaces, generations, internal keys).
- ``codec``: ``Codec``, values to bytes and back.
- ``guard``: ``Guard``, the fault policy (breaker, fault-or-bug rule, metrics).
- ``breaker``: ``CircuitBreaker``, which the guard consults before each call.
- ``invalidator``: ``Invalidator``, tombstones, tags, dependencies, rules and the log.
- ``driver``: the one sync and one async driver every operation's steps run on.
- ``writes``, ``invalidations``: the operations, each written once as steps.
- ``readthrough``: the hot path ``get`` and ``@cached`` take, a hand-written twin pair.
- ``batch``: ``Batch``, many operations in one round trip.
- ``locks``: ``CacheLock``, the public lock (``Cache.lock``).
- ``urls``: the backend ``Cache.from_url`` builds from a URL.
"""

from __future__ import annotations

from kirocache._cache.batch import Batch, BatchResult
from kirocache._cache.cache import Cache
from kirocache._cache.guard import OnError
from kirocache._cache.invalidator import UNREAD, Seen

__all__ = ["UNREAD", "Batch", "BatchResult", "Cache", "OnError", "Seen"]
