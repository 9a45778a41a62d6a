"""``Cache``: the one facade over a backend, for sync and async code alike."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from typing_extensions import Self

from kirocache._batch import Batch
from kirocache._config import mask_url, settings_from_env
from kirocache._invalidation_async import AsyncInvalidationMethods
from kirocache._invalidation_sync import SyncInvalidationMethods
from kirocache._types import MISSING
from kirocache.exceptions import ConfigurationError

if TYPE_CHECKING:
    from types import TracebackType

    from kirocache._types import Duration
    from kirocache.keys import Namespace

__all__ = ["Cache"]

T = TypeVar("T")

_CACHE_OPTIONS = frozenset(
    {
        "serializer",
        "metrics",
        "key_prefix",
        "namespaces",
        "default_ttl",
        "on_error",
        "max_value_size",
        "breaker",
        "debug",
        "tombstone_ttl",
        "invalidation_log_size",
        "clock",
    }
)
_MEMORY_OPTIONS = {"max_entries": int, "max_bytes": int}


class Cache(SyncInvalidationMethods, AsyncInvalidationMethods):
    """Typed values in a backend, under readable keys, with TTLs, metrics and fail-open faults.

    One object serves sync code (``get``, ``set``, ...) and async code (``aget``,
    ``aset``, ...). Values are serialized (orjson by default) before they reach the
    backend, so a memory backend in tests behaves as Redis does in production.

    Backend faults (connection refused, timeouts, READONLY, OOM) fail open: reads are
    misses, writes are skipped, the error is counted in ``errors_total`` and in the
    metrics, and logged once per burst. A circuit breaker stops calling a failing backend
    and probes it back. Programming errors (a key that is not a ``str``, a bad TTL, an
    unserializable or oversized value) always raise.

    Args:
        backend: Where the bytes live: a ``MemoryBackend``, a ``RedisBackend``, or anything
            with the methods of ``kirocache.backends.Backend`` / ``AsyncBackend``.
        serializer: A ``Serializer``, or ``"json"`` (the default, orjson) or ``"raw"``.
        metrics: A ``MetricsHook``; ``True`` (the default) keeps ``InMemoryMetrics``;
            ``False`` records nothing.
        key_prefix: Prepended to every key in the backend, to share a database between
            apps; pattern deletes never reach outside it.
        namespaces: Namespaces whose TTL and metrics label apply to plain keys under their
            prefix.
        default_ttl: TTL for keys with no namespace TTL (``None``: no expiry).
        on_error: ``"ignore"`` fails open; ``"raise"`` raises ``BackendError`` instead.
        max_value_size: Largest serialized value accepted, in bytes.
        breaker: The ``CircuitBreaker`` to use; ``None`` disables it.
        debug: Log every operation with key, outcome and latency at DEBUG level;
            ``None`` reads ``CACHE_DEBUG`` from the environment.
        tombstone_ttl: How long an invalidated key keeps a tombstone (60 s by default), so
            a value computed before the invalidation is not stored by ``@cached``; a
            computation slower than this is not stored either. ``None`` turns tombstones
            off (plain deletes, and the race they close is open again).
        invalidation_log_size: How many records ``invalidation_log`` keeps.
        clock: Where the cache reads the time (a ``Clock``; the system clock by default):
            the default breaker's open time, stale-while-revalidate stamps, invalidation
            records. ``kirocache.testing.ManualClock`` moves time by hand in tests.

    Raises:
        ConfigurationError: An option is invalid or the backend is not a backend.

    Example:
        >>> cache = Cache.from_url("memory://")
        >>> cache.set("user:profile:42", {"name": "Ada"}, ttl=60)
        True
        >>> cache.get("user:profile:42")
        {'name': 'Ada'}
    """

    @classmethod
    def from_url(cls, url: str | None = None, **options: Any) -> Self:
        """Build a cache and its backend from a URL.

        Args:
            url: ``memory://`` (query options ``max_entries``, ``max_bytes``),
                ``redis://``, ``rediss://`` or ``unix://``. ``None``: ``REDIS_URL`` from
                the environment, else ``memory://``.
            **options: ``Cache`` options (``serializer``, ``key_prefix``, ``on_error``,
                ...) and backend options (``max_entries``; ``password``,
                ``socket_timeout``, ``ssl_ca_certs``, ... for Redis).

        Returns:
            The cache.

        Raises:
            ConfigurationError: The URL scheme or an option is not understood.
        """
        cache_options = {
            name: options.pop(name) for name in list(options) if name in _CACHE_OPTIONS
        }
        if url is None:
            url = settings_from_env().redis_url or "memory://"
        scheme = urlsplit(url).scheme
        if scheme == "memory":
            from kirocache.backends.memory import MemoryBackend

            for name, value in parse_qsl(urlsplit(url).query):
                if name not in _MEMORY_OPTIONS:
                    msg = f"unknown memory:// option {name!r}; known: {sorted(_MEMORY_OPTIONS)}"
                    raise ConfigurationError(msg)
                try:
                    options.setdefault(name, _MEMORY_OPTIONS[name](value))
                except ValueError:
                    msg = f"memory:// option {name}={value!r} is not a whole number"
                    raise ConfigurationError(msg) from None
            return cls(MemoryBackend(**options), **cache_options)
        if scheme in ("redis", "rediss", "unix"):
            from kirocache.backends.redis import RedisBackend

            return cls(RedisBackend.from_url(url, **options), **cache_options)
        msg = (
            f"unsupported cache URL {mask_url(url)!r}: use memory://, redis://, "
            "rediss:// or unix://"
        )
        raise ConfigurationError(msg)

    def batch(self, *, transaction: bool = False) -> Batch:
        """A fluent batch of operations sent in one round trip (see ``Batch``).

        Args:
            transaction: Run the operations atomically (MULTI/EXEC on Redis).
        """
        return Batch(self, transaction=transaction)

    def get_or_set(
        self,
        key: str,
        factory: Callable[[], T],
        ttl: Duration | None = None,
        *,
        namespace: Namespace | None = None,
        type: Any = None,
    ) -> T:
        """Return the cached value, or call ``factory``, store its result and return it.

        A cached ``None`` counts as a hit. With the backend down ``factory`` runs every time.

        Args:
            key: The key.
            factory: Computes the value on a miss.
            ttl: As for ``set``.
            namespace: Resolve ``key`` inside this namespace.
            type: Decode a hit into this type.
        """
        value = self.get(key, MISSING, type=type, namespace=namespace)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]
        fresh = factory()
        self.set(key, fresh, ttl, namespace=namespace)
        return fresh

    async def aget_or_set(
        self,
        key: str,
        factory: Callable[[], Awaitable[T]] | Callable[[], T],
        ttl: Duration | None = None,
        *,
        namespace: Namespace | None = None,
        type: Any = None,
    ) -> T:
        """Async ``get_or_set``; ``factory`` may be a coroutine function or a plain one."""
        value = await self.aget(key, MISSING, type=type, namespace=namespace)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]
        value = factory()
        if inspect.isawaitable(value):
            value = await value
        await self.aset(key, value, ttl, namespace=namespace)
        return value  # type: ignore[no-any-return]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        prefix = f", key_prefix={self.key_prefix!r}" if self.key_prefix else ""
        return f"Cache({self.backend!r}{prefix})"
