"""kirocache: typed, decorator-based caching on Redis and in memory, sync and async.

The public API lives here; the extension points are the public modules
:mod:`kirocache.backends`, :mod:`kirocache.serializers`, :mod:`kirocache.keys`,
:mod:`kirocache.metrics` and :mod:`kirocache.exceptions`.
"""

from kirocache._cache import Batch, BatchResult, Cache, OnError
from kirocache._cache.breaker import BreakerState, CircuitBreaker
from kirocache._cache.default import batch, configure, get_cache
from kirocache._cache.inspect import EntryInfo, KeyPage
from kirocache._cache.locks import CacheLock
from kirocache._decorators import (
    AsyncCachedFunction,
    AsyncCachedManyFunction,
    CachedFunction,
    CachedManyFunction,
    awarm,
    bypass,
    cached,
    cached_many,
    invalidates,
    warm,
)
from kirocache._values.clock import Clock
from kirocache._values.types import MISSING, NEVER, Duration, Missing
from kirocache.exceptions import (
    AuthenticationError,
    BackendError,
    CircuitOpenError,
    CommandError,
    ConfigurationError,
    CorruptValueError,
    InvalidKeyError,
    InvalidTTLError,
    KirocacheError,
    LockNotAcquiredError,
    NodeUnavailableError,
    PermissionDeniedError,
    SerializationError,
    ValueTooLargeError,
)
from kirocache.invalidation import InvalidationEvent, Tag
from kirocache.keys import Namespace, code_hash, make_key
from kirocache.metrics import InMemoryMetrics, MetricsHook

__version__ = "0.1.0"

__all__ = [
    "MISSING",
    "NEVER",
    "AsyncCachedFunction",
    "AsyncCachedManyFunction",
    "AuthenticationError",
    "BackendError",
    "Batch",
    "BatchResult",
    "BreakerState",
    "Cache",
    "CacheLock",
    "CachedFunction",
    "CachedManyFunction",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "CommandError",
    "ConfigurationError",
    "CorruptValueError",
    "Duration",
    "EntryInfo",
    "InMemoryMetrics",
    "InvalidKeyError",
    "InvalidTTLError",
    "InvalidationEvent",
    "KeyPage",
    "KirocacheError",
    "LockNotAcquiredError",
    "MetricsHook",
    "Missing",
    "Namespace",
    "NodeUnavailableError",
    "OnError",
    "PermissionDeniedError",
    "SerializationError",
    "Tag",
    "ValueTooLargeError",
    "__version__",
    "awarm",
    "batch",
    "bypass",
    "cached",
    "cached_many",
    "code_hash",
    "configure",
    "get_cache",
    "invalidates",
    "make_key",
    "warm",
]
