"""kirocache: typed, decorator-based caching on Redis and in memory, sync and async.

The public API lives here; the extension points are the public modules
:mod:`kirocache.backends`, :mod:`kirocache.serializers`, :mod:`kirocache.keys`,
:mod:`kirocache.metrics` and :mod:`kirocache.exceptions`.
"""

from kirocache._batch import Batch, BatchResult, batch
from kirocache._breaker import BreakerState, CircuitBreaker
from kirocache._cache import Cache
from kirocache._cached_many import AsyncCachedManyFunction, CachedManyFunction, cached_many
from kirocache._clock import Clock
from kirocache._core import OnError
from kirocache._decorators import (
    AsyncCachedFunction,
    CachedFunction,
    awarm,
    cached,
    invalidates,
    warm,
)
from kirocache._global import configure, get_cache
from kirocache._types import MISSING, NEVER, Duration, Missing
from kirocache.exceptions import (
    BackendError,
    CircuitOpenError,
    ConfigurationError,
    CorruptValueError,
    InvalidKeyError,
    InvalidTTLError,
    KirocacheError,
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
    "BackendError",
    "Batch",
    "BatchResult",
    "BreakerState",
    "Cache",
    "CachedFunction",
    "CachedManyFunction",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "ConfigurationError",
    "CorruptValueError",
    "Duration",
    "InMemoryMetrics",
    "InvalidKeyError",
    "InvalidTTLError",
    "InvalidationEvent",
    "KirocacheError",
    "MetricsHook",
    "Missing",
    "Namespace",
    "OnError",
    "SerializationError",
    "Tag",
    "ValueTooLargeError",
    "__version__",
    "awarm",
    "batch",
    "cached",
    "cached_many",
    "code_hash",
    "configure",
    "get_cache",
    "invalidates",
    "make_key",
    "warm",
]
