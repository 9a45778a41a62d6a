"""``Cache``: the one facade over a backend, composed of its named collaborators."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from typing_extensions import Self

from kirocache._cache import getmany, invalidations, readthrough, writes
from kirocache._cache import inspect as inspect_steps
from kirocache._cache.batch import Batch
from kirocache._cache.codec import DEFAULT_MAX_VALUE_SIZE, Codec
from kirocache._cache.driver import arun, run
from kirocache._cache.guard import DEFAULT_BREAKER, Guard, OnError
from kirocache._cache.invalidator import DEFAULT_TOMBSTONE_TTL, Invalidator
from kirocache._cache.keyspace import KeySpace
from kirocache._cache.locks import CacheLock
from kirocache._cache.urls import backend_from_url
from kirocache._values.clock import SYSTEM_CLOCK, Clock
from kirocache._values.types import MISSING, option_seconds
from kirocache.backends import arun_steps, run_steps
from kirocache.backends._config import debug_from_env
from kirocache.exceptions import ConfigurationError
from kirocache.invalidation import DEFAULT_LOG_SIZE

if TYPE_CHECKING:
    from types import TracebackType

    from kirocache._cache.breaker import CircuitBreaker
    from kirocache._cache.guard import _DefaultBreaker
    from kirocache._cache.inspect import EntryInfo, KeyPage
    from kirocache._values.types import Duration
    from kirocache.backends import AsyncBackend, Backend, BackendStats
    from kirocache.invalidation import (
        InvalidationEvent,
        InvalidationLog,
        InvalidationRecord,
        InvalidationRules,
        Tag,
    )
    from kirocache.keys import Namespace
    from kirocache.metrics import MetricsHook
    from kirocache.serializers import Serializer

__all__ = ["Cache"]

T = TypeVar("T")


class _Part(Generic[T]):
    """A ``Cache`` attribute kept by one of its collaborators (read and written there)."""

    def __init__(self, part: str, name: str = "") -> None:
        self.part = part
        self.name = name

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = self.name or name

    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...

    @overload
    def __get__(self, obj: object, owner: type) -> T: ...

    def __get__(self, obj: object, owner: type) -> Any:
        if obj is None:
            return self
        return getattr(getattr(obj, self.part), self.name)

    def __set__(self, obj: object, value: T) -> None:
        setattr(getattr(obj, self.part), self.name, value)


class Cache:
    """Typed values in a backend, under readable keys, with TTLs, metrics and fail-open faults.

    One object serves sync code (``get``, ``set``, ...) and async code (``aget``,
    ``aset``, ...). Values are serialized (orjson by default) before they reach the
    backend, so a memory backend in tests behaves as Redis does in production.

    Backend faults (connection refused, timeouts, READONLY, OOM) fail open: reads are
    misses, writes are skipped, the error is counted in ``errors_total`` and in the
    metrics, and logged once per burst. A circuit breaker stops calling a failing backend
    and probes it back. Programming errors (a key that is not a ``str``, a bad TTL, an
    unserializable or oversized value) always raise.

    Inside, the cache is a facade over four collaborators, the engine's internal interface
    (``Batch``, the decorators and the drivers use them; applications use the methods):
    ``keyspace`` (a ``KeySpace``: key prefix, namespaces, generations, internal keys),
    ``codec`` (a ``Codec``: serializer, size limit, typed decode), ``guard`` (a ``Guard``:
    breaker, fault-or-bug rule, fail-open, metrics) and ``invalidator`` (an
    ``Invalidator``: tombstones, tags, dependencies, rules, the log).

    Args:
        backend: Where the bytes live: a ``MemoryBackend``, a ``RedisBackend``, or anything
            with the methods of ``kirocache.backends.Backend`` / ``AsyncBackend``.
        serializer: A ``Serializer``, or ``"json"`` (the default, orjson) or ``"raw"``.
        metrics: A ``MetricsHook``; ``True`` (the default) keeps ``InMemoryMetrics``;
            ``False`` records nothing.
        key_prefix: Prepended to every key in the backend, to share a database between
            apps; pattern deletes never reach outside it. It must end with a separator
            (``:``, ``.``, ``/`` or ``|``, e.g. ``"myapp:"``; ``ConfigurationError``
            otherwise), so one cache's prefix is never the start of another's (``"app"``
            would reach ``"app2:x"``). After it, ``kirocache:`` is reserved for the cache's
            own keys (tag indexes, stamps, dependency sets, generations): a key, pattern or
            namespace prefix starting there raises ``InvalidKeyError``.
        namespaces: Namespaces whose TTL and metrics label apply to plain keys under their
            prefix.
        default_ttl: TTL for keys with no namespace TTL (``None``: no expiry).
        on_error: ``"ignore"`` fails open; ``"raise"`` raises ``BackendError`` instead.
        max_value_size: Largest serialized value accepted, in bytes.
        breaker: The ``CircuitBreaker`` to use; ``None`` disables it.
        debug: Log every operation with key, outcome and latency at DEBUG level;
            ``None`` reads ``CACHE_DEBUG`` from the environment.
        tombstone_ttl: How long an invalidated key keeps a tombstone (60 s by default), so
            a value computed before the invalidation is not stored by ``@cached`` or
            ``get_or_set``; a computation slower than this is not stored either. ``None``
            turns tombstones off (plain deletes, and the race they close is open again).
        invalidation_log_size: How many records ``invalidation_log`` keeps.
        clock: Where the cache reads the time (a ``Clock``; the system clock by default):
            the default breaker's open time, stale-while-revalidate stamps, invalidation
            records. ``kirocache.testing.ManualClock`` moves time by hand in tests.

    Raises:
        ConfigurationError: An option is invalid or the backend is not a backend.

    Examples:
        >>> cache = Cache.from_url("memory://")
        >>> cache.set("user:profile:42", {"name": "Ada"}, ttl=60)
        True
        >>> cache.get("user:profile:42")
        {'name': 'Ada'}
    """

    serializer: _Part[Serializer] = _Part("codec")
    max_value_size: _Part[int] = _Part("codec")
    key_prefix: _Part[str] = _Part("keyspace")
    default_ttl: _Part[float | None] = _Part("keyspace")
    metrics: _Part[MetricsHook | None] = _Part("guard")
    breaker: _Part[CircuitBreaker | None] = _Part("guard")
    on_error: _Part[OnError] = _Part("guard")
    debug: _Part[bool] = _Part("guard")
    errors_total: _Part[int] = _Part("guard")
    tombstone_ttl: _Part[float | None] = _Part("invalidator")
    rules: _Part[InvalidationRules] = _Part("invalidator")
    invalidation_log: _Part[InvalidationLog] = _Part("invalidator", "log")

    def __init__(
        self,
        backend: Backend | AsyncBackend,
        *,
        serializer: Serializer | str | None = None,
        metrics: MetricsHook | bool = True,
        key_prefix: str = "",
        namespaces: Iterable[Namespace] = (),
        default_ttl: Duration | None = None,
        on_error: OnError = "ignore",
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        breaker: CircuitBreaker | type[_DefaultBreaker] | None = DEFAULT_BREAKER,
        debug: bool | None = None,
        tombstone_ttl: Duration | None = DEFAULT_TOMBSTONE_TTL,
        invalidation_log_size: int = DEFAULT_LOG_SIZE,
        clock: Clock | None = None,
    ) -> None:
        if clock is None:
            clock = SYSTEM_CLOCK
        elif not isinstance(clock, Clock):
            msg = f"clock must have time() and monotonic() methods, not {clock!r}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        self.backend: Any = backend
        self.clock: Clock = clock
        self.guard = Guard(
            backend,
            metrics=metrics,
            on_error=on_error,
            breaker=breaker,
            debug=debug_from_env() if debug is None else debug,
            clock=clock,
        )
        self.codec = Codec(serializer, max_value_size)
        self.keyspace = KeySpace(key_prefix, default_ttl, namespaces)
        self.invalidator = Invalidator(
            self.keyspace,
            self.guard,
            backend,
            tombstone_ttl=tombstone_ttl,
            log_size=invalidation_log_size,
            clock=clock,
        )

    @classmethod
    def from_url(cls, url: str | None = None, **options: Any) -> Self:
        """Build a cache and its backend from a URL.

        Args:
            url: ``memory://`` (query options ``max_entries``, ``max_bytes``),
                ``redis://``, ``rediss://`` or ``unix://``. ``None``: ``REDIS_URL`` from
                the environment, else ``memory://``.
            **options: ``Cache`` options (``serializer``, ``key_prefix``, ``on_error``,
                ...) and backend options (``max_entries``; ``password``, ``timeout``,
                ``ssl_ca_certs``, ... for Redis); ``check=True`` pings the backend and
                reads a key under ``key_prefix`` first.

        Returns:
            The cache.

        Raises:
            ConfigurationError: The URL scheme or an option is not understood (the message
                lists the known options), or ``check`` found the backend unusable.
        """
        try:
            backend, cache_options = backend_from_url(url, options)
        except ConfigurationError as exc:
            url = options = None  # type: ignore[assignment] # error trackers record locals
            raise exc.with_traceback(None) from None
        return cls(backend, **cache_options)

    # -- keys ----------------------------------------------------------------------------------

    def register(self, namespace: Namespace) -> None:
        """Make ``namespace`` known, so plain keys under its prefix get its TTL and label.

        Args:
            namespace: The namespace; the longest matching prefix wins.
        """
        self.keyspace.register(namespace)

    def full_key(self, key: str, namespace: Namespace | None = None) -> str:
        """The key as the backend sees it: key prefix, namespace prefix, then ``key``."""
        return self.keyspace.full_key(key, namespace)

    # -- reads and read-through (the twinned hot paths, bound from ``readthrough``, ``getmany``) -

    get = readthrough.get
    aget = readthrough.aget
    get_many = getmany.get_many
    aget_many = getmany.aget_many
    _lookup = readthrough.lookup
    _alookup = readthrough.alookup
    _lookup_many = readthrough.lookup_many
    _alookup_many = readthrough.alookup_many
    _store = readthrough.store
    _astore = readthrough.astore
    _store_many = readthrough.store_many
    _astore_many = readthrough.astore_many

    # -- writes --------------------------------------------------------------------------------

    def set(
        self,
        key: str,
        value: object,
        ttl: Duration | None = None,
        *,
        nx: bool = False,
        namespace: Namespace | None = None,
        tags: Sequence[str] = (),
    ) -> bool:
        """Store ``value`` at ``key``.

        Args:
            key: The key.
            value: Any value the serializer can encode.
            ttl: Seconds (or a timedelta) to live; ``None``: the namespace's or the cache's
                default; ``NEVER``: no expiry.
            nx: Only store if the key is absent.
            namespace: Resolve ``key`` inside this namespace.
            tags: Tags for the entry; ``invalidate_tags`` removes every entry of a tag.

        Returns:
            Whether the value was stored (``False`` on a backend fault or when ``nx`` found
            the key present).

        Raises:
            SerializationError: The value cannot be serialized.
            ValueTooLargeError: It is larger than ``max_value_size`` once serialized.
            InvalidTTLError: ``ttl`` is not a positive duration.
        """
        return run(self.guard, writes.set_value(self, key, value, ttl, nx, namespace, tags))

    async def aset(
        self,
        key: str,
        value: object,
        ttl: Duration | None = None,
        *,
        nx: bool = False,
        namespace: Namespace | None = None,
        tags: Sequence[str] = (),
    ) -> bool:
        """Async ``set``: store ``value`` at ``key``."""
        return await arun(self.guard, writes.set_value(self, key, value, ttl, nx, namespace, tags))

    def set_many(
        self,
        mapping: Mapping[str, object],
        ttl: Duration | None = None,
        *,
        namespace: Namespace | None = None,
    ) -> bool:
        """Store every item of ``mapping``, in one round trip per distinct TTL.

        Returns:
            Whether everything was stored (``False`` on a backend fault).
        """
        return run(self.guard, writes.set_many(self, mapping, ttl, namespace))

    async def aset_many(
        self,
        mapping: Mapping[str, object],
        ttl: Duration | None = None,
        *,
        namespace: Namespace | None = None,
    ) -> bool:
        """Async ``set_many``."""
        return await arun(self.guard, writes.set_many(self, mapping, ttl, namespace))

    def exists(self, key: str, *, namespace: Namespace | None = None) -> bool:
        """Whether ``key`` holds a live value (``False`` on a backend fault)."""
        return run(self.guard, writes.exists(self, key, namespace))

    async def aexists(self, key: str, *, namespace: Namespace | None = None) -> bool:
        """Async ``exists``."""
        return await arun(self.guard, writes.exists(self, key, namespace))

    def ttl(self, key: str, *, namespace: Namespace | None = None) -> float | None:
        """Seconds ``key`` has left.

        Returns:
            ``None`` if absent (or on a backend fault), ``math.inf`` if it never expires.
        """
        return run(self.guard, writes.ttl(self, key, namespace))

    async def attl(self, key: str, *, namespace: Namespace | None = None) -> float | None:
        """Async ``ttl``."""
        return await arun(self.guard, writes.ttl(self, key, namespace))

    def expire(self, key: str, ttl: Duration, *, namespace: Namespace | None = None) -> bool:
        """Give ``key`` a new TTL (``NEVER`` removes it); returns whether the key existed."""
        return run(self.guard, writes.expire(self, key, ttl, namespace, "expire"))

    async def aexpire(self, key: str, ttl: Duration, *, namespace: Namespace | None = None) -> bool:
        """Async ``expire``."""
        return await arun(self.guard, writes.expire(self, key, ttl, namespace, "expire"))

    def persist(self, key: str, *, namespace: Namespace | None = None) -> bool:
        """Remove the TTL of ``key``; returns whether it had one."""
        return run(self.guard, writes.persist(self, key, namespace))

    async def apersist(self, key: str, *, namespace: Namespace | None = None) -> bool:
        """Async ``persist``."""
        return await arun(self.guard, writes.persist(self, key, namespace))

    def incr(
        self,
        key: str,
        amount: int = 1,
        *,
        ttl: Duration | None = None,
        namespace: Namespace | None = None,
    ) -> int | None:
        """Add ``amount`` to the counter at ``key`` (created at 0 with the TTL).

        Counters are stored as plain integers so the backend adds atomically; ``get``
        reads them back as ``int``.

        Returns:
            The new value, or ``None`` when the backend failed (with ``on_error="ignore"``).

        Raises:
            TypeError: ``amount`` is not an int.
        """
        return run(self.guard, writes.incr(self, key, amount, ttl, namespace))

    async def aincr(
        self,
        key: str,
        amount: int = 1,
        *,
        ttl: Duration | None = None,
        namespace: Namespace | None = None,
    ) -> int | None:
        """Async ``incr``."""
        return await arun(self.guard, writes.incr(self, key, amount, ttl, namespace))

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
        The result is stored with the guarded write ``@cached`` uses: when the key was
        invalidated (or written by someone else) while ``factory`` ran, or the read failed,
        the result is returned but not stored, so a value computed before an invalidation
        never lands after it.

        Args:
            key: The key.
            factory: Computes the value on a miss.
            ttl: As for ``set``.
            namespace: Resolve ``key`` inside this namespace.
            type: Decode a hit into this type.
        """
        read_at = time.perf_counter()  # before the read: the conservative end of a window
        value, seen = self._lookup(key, type, namespace)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]
        fresh = factory()
        self._store(key, fresh, ttl, namespace=namespace, seen=seen, read_at=read_at)
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
        """Async ``get_or_set`` (the same guarded write); ``factory`` may be async or not."""
        read_at = time.perf_counter()
        value, seen = await self._alookup(key, type, namespace)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]
        value = factory()
        if inspect.isawaitable(value):
            value = await value
        await self._astore(key, value, ttl, namespace=namespace, seen=seen, read_at=read_at)
        return value  # type: ignore[no-any-return]

    # -- invalidation --------------------------------------------------------------------------

    def delete(self, key: str, *, namespace: Namespace | None = None) -> bool:
        """Invalidate ``key`` and its dependents; returns whether it held a value.

        The key keeps a tombstone for ``tombstone_ttl`` (it reads as absent), so a value
        computed before this call can no longer be stored by ``@cached``.
        """
        return run(self.guard, invalidations.delete(self, key, namespace))

    async def adelete(self, key: str, *, namespace: Namespace | None = None) -> bool:
        """Async ``delete``."""
        return await arun(self.guard, invalidations.delete(self, key, namespace))

    def delete_many(self, keys: Sequence[str], *, namespace: Namespace | None = None) -> int:
        """Invalidate ``keys`` and their dependents; returns how many of ``keys`` held a value."""
        return run(self.guard, invalidations.delete_many(self, keys, namespace))

    async def adelete_many(self, keys: Sequence[str], *, namespace: Namespace | None = None) -> int:
        """Async ``delete_many``."""
        return await arun(self.guard, invalidations.delete_many(self, keys, namespace))

    def invalidate_tags(self, *tags: str) -> int:
        """Invalidate every entry carrying any of ``tags`` (and their dependents).

        Returns:
            How many entries were removed (0 on a backend fault).
        """
        return run(self.guard, invalidations.invalidate_tags(self, tags))

    async def ainvalidate_tags(self, *tags: str) -> int:
        """Async ``invalidate_tags``."""
        return await arun(self.guard, invalidations.invalidate_tags(self, tags))

    def delete_pattern(
        self,
        pattern: str,
        *,
        namespace: Namespace | None = None,
        batch_size: int = 500,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete the keys matching a glob ``pattern`` under this cache's key prefix.

        Uses SCAN and UNLINK in batches, never KEYS or FLUSHDB; a key outside the cache's
        ``key_prefix`` (and ``namespace``, when given) is never touched. Each SCAN reads
        about ``batch_size`` keys and each batch of UNLINKs frees its keys off the server's
        main thread, so other clients wait at most one batch (a million keys: see the docs'
        invalidation design page). Unlike a key or tag invalidation it leaves no tombstones,
        so a value being computed meanwhile may still be stored; a bumpable namespace
        (``bump``) has no such window.

        Args:
            pattern: A glob (``*``, ``?``, ``[...]``) over keys, without the key prefix.
            namespace: Only keys of this namespace (the pattern is relative to it).
            batch_size: Keys per SCAN page and per batch of deletes.
            on_progress: Called after each batch with the keys deleted so far, to show
                progress on long work; an exception it raises stops the delete, and the
                pattern is kept pending as after a fault.

        Returns:
            How many keys were deleted (0 on a backend fault), tombstones of recent
            invalidations included.

        Raises:
            ConfigurationError: The pattern would match the whole database, or
                ``batch_size`` is not an int >= 1.
        """
        flow = invalidations.delete_pattern(self, pattern, namespace, batch_size, on_progress)
        return run(self.guard, flow)

    async def adelete_pattern(
        self,
        pattern: str,
        *,
        namespace: Namespace | None = None,
        batch_size: int = 500,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Async ``delete_pattern``."""
        flow = invalidations.delete_pattern(self, pattern, namespace, batch_size, on_progress)
        return await arun(self.guard, flow)

    def invalidate_pattern(
        self, pattern: str, *, namespace: Namespace | None = None, batch_size: int = 500
    ) -> int:
        """The pattern delete (``delete_pattern``) under its invalidation name."""
        return self.delete_pattern(pattern, namespace=namespace, batch_size=batch_size)

    async def ainvalidate_pattern(
        self, pattern: str, *, namespace: Namespace | None = None, batch_size: int = 500
    ) -> int:
        """Async ``invalidate_pattern``."""
        return await self.adelete_pattern(pattern, namespace=namespace, batch_size=batch_size)

    def bump(self, namespace: Namespace) -> int:
        """Invalidate every entry of a bumpable ``namespace`` in O(1): raise its generation.

        Keys carry the generation, so old entries are never read again and expire by their
        TTL; a value computed before the bump lands under the old generation, unread.

        Returns:
            The new generation (0 on a backend fault).

        Raises:
            ConfigurationError: The namespace was not made with ``bumpable=True``.
        """
        return run(self.guard, invalidations.bump(self, namespace))

    async def abump(self, namespace: Namespace) -> int:
        """Async ``bump``."""
        return await arun(self.guard, invalidations.bump(self, namespace))

    def invalidate_namespace(self, namespace: Namespace) -> int:
        """Invalidate a whole namespace: a ``bump`` if it is bumpable, else a pattern delete.

        Returns:
            How many keys the pattern delete removed (0 for a bump, which removes nothing).
        """
        return run(self.guard, invalidations.invalidate_namespace(self, namespace))

    async def ainvalidate_namespace(self, namespace: Namespace) -> int:
        """Async ``invalidate_namespace``."""
        return await arun(self.guard, invalidations.invalidate_namespace(self, namespace))

    def depends(
        self,
        dependent: str | Tag,
        *,
        on: str | Tag,
        ttl: Duration | None = None,
        namespace: Namespace | None = None,
    ) -> bool:
        """Record that ``dependent`` is derived from ``on``: invalidating ``on`` removes it.

        Both are keys (in ``namespace`` when given) or ``Tag``s. Invalidation follows
        dependencies transitively and stops at cycles. Record the dependency when you store
        the dependent; the edge lives ``ttl`` (by default the dependent's TTL) and the
        cleanup task prunes edges whose dependent is gone.

        Returns:
            Whether the edge was recorded (``False`` on a backend fault).

        Raises:
            ConfigurationError: ``dependent`` and ``on`` are the same.
        """
        return run(self.guard, invalidations.depends(self, dependent, on, ttl, namespace))

    async def adepends(
        self,
        dependent: str | Tag,
        *,
        on: str | Tag,
        ttl: Duration | None = None,
        namespace: Namespace | None = None,
    ) -> bool:
        """Async ``depends``."""
        return await arun(self.guard, invalidations.depends(self, dependent, on, ttl, namespace))

    def invalidate(self, event: InvalidationEvent, *, source: str = "event") -> InvalidationRecord:
        """Invalidate what the rules (``cache.rules``) say ``event`` makes stale.

        Keys and tags of every matching rule are invalidated with their dependents, its
        patterns deleted and its namespaces invalidated whole; one record of it all goes to
        the invalidation log and the metrics hook.

        Returns:
            The log record: rules applied, keys removed, duration.

        Raises:
            InvalidKeyError: A rule's template reads a field the event does not carry.
        """
        return run(self.guard, invalidations.invalidate(self, event, source))

    async def ainvalidate(
        self, event: InvalidationEvent, *, source: str = "event"
    ) -> InvalidationRecord:
        """Async ``invalidate``."""
        return await arun(self.guard, invalidations.invalidate(self, event, source))

    def prune_indexes(self) -> dict[str, int]:
        """Drop the dead entries of every tag index and dependency set.

        Tag indexes and dependency sets list keys that may since have expired or been
        invalidated; this removes those entries (each chunk atomically, so a key stored
        again meanwhile keeps its entry). A failed call is counted and the pass goes on
        with the next index; nothing fails open or raises ``BackendError``.

        Returns:
            Counts: ``indexes`` looked at, ``tag_entries`` and ``dependency_edges``
            removed, ``stamps`` (tag stamps of tags with no index left) removed, and
            ``errors`` (backend calls that failed).

        Raises:
            ConfigurationError: The backend has no sync methods.
        """
        self.guard.need_sync()
        return run_steps(invalidations.prune_indexes(self))

    async def aprune_indexes(self) -> dict[str, int]:
        """Async ``prune_indexes``."""
        self.guard.need_async()
        return await arun_steps(invalidations.prune_indexes(self))

    # -- the operator's view (kirocache/_cache/inspect.py) --------------------------------------

    def scan_keys(
        self,
        pattern: str = "*",
        *,
        cursor: int = 0,
        count: int = 100,
        namespace: Namespace | None = None,
    ) -> KeyPage:
        """One page of the keys matching the glob ``pattern`` under the key prefix.

        The cache's own keys (``kirocache:``) are never listed. The cursor needs no state
        between calls; as with SCAN, keys written or removed between pages may be missed or
        listed twice, and a page may hold fewer than ``count`` keys before the end.

        Args:
            pattern: A Redis glob relative to the key prefix (and ``namespace``).
            cursor: ``0`` for the first page, then the page's ``cursor``.
            count: Keys per page, 1 to 10,000.
            namespace: List inside this namespace only.

        Returns:
            The page; its ``cursor`` is ``0`` when the listing is done.

        Raises:
            BackendError: The backend failed (a listing never fails open).
            ConfigurationError: ``cursor`` or ``count`` is out of range.
            InvalidKeyError: The pattern is not a valid key or is in the reserved space.
        """
        self.guard.need_sync()
        return run_steps(inspect_steps.scan_keys(self, pattern, cursor, count, namespace))

    async def ascan_keys(
        self,
        pattern: str = "*",
        *,
        cursor: int = 0,
        count: int = 100,
        namespace: Namespace | None = None,
    ) -> KeyPage:
        """Async ``scan_keys``."""
        self.guard.need_async()
        return await arun_steps(inspect_steps.scan_keys(self, pattern, cursor, count, namespace))

    def inspect(self, key: str, *, namespace: Namespace | None = None) -> EntryInfo | None:
        """What is stored at ``key``: TTL, size, format, tags, dependents; not the value.

        A tombstone (a key invalidated moments ago, absent to readers) is reported as
        such; the tags are those the entry was written with.

        Returns:
            The entry's description, or ``None`` when nothing is stored there.

        Raises:
            BackendError: The backend failed (an inspection never fails open).
            InvalidKeyError: The key is not a valid key or is in the reserved space.
        """
        self.guard.need_sync()
        return run_steps(inspect_steps.inspect(self, key, namespace))

    async def ainspect(self, key: str, *, namespace: Namespace | None = None) -> EntryInfo | None:
        """Async ``inspect``."""
        self.guard.need_async()
        return await arun_steps(inspect_steps.inspect(self, key, namespace))

    def invalidate_targets(
        self,
        *,
        keys: Sequence[str] = (),
        tags: Sequence[str] = (),
        patterns: Sequence[str] = (),
        namespaces: Sequence[Namespace | str] = (),
        event: InvalidationEvent | None = None,
        source: str = "manual",
        batch_size: int = 500,
        log: bool = True,
    ) -> InvalidationRecord:
        """Invalidate keys, tags, patterns, whole namespaces and an event's rules at once.

        What an operator (an admin API, a CLI) names by hand, in one invalidation with
        one log record: keys and tags with their dependents, patterns deleted under the
        key prefix, namespaces invalidated whole (bumped when bumpable), and what the rules
        say ``event`` makes stale. Everything is checked before the first change; what the
        backend refuses is kept pending, as for every invalidation.

        Args:
            keys: Keys (namespace prefix included).
            tags: Tags.
            patterns: Globs relative to the key prefix.
            namespaces: ``Namespace`` objects, or the prefixes of registered ones.
            event: An event the cache's rules are applied to.
            source: The record's ``source``.
            batch_size: Keys per SCAN page and per delete of a pattern, 1 to 10,000.
            log: Add the record to ``invalidation_log``; ``False`` hands it back only,
                for a caller that logs a record of its own.

        Returns:
            The record: keys removed (the first 100), how many entries, duration.

        Raises:
            ConfigurationError: A pattern would match every key of a database without key
                prefix, a namespace prefix is not registered, or ``batch_size`` is out of
                range.
            InvalidKeyError: A key, tag or pattern is invalid, or a rule's template reads
                a field the event does not carry.
        """
        flow = inspect_steps.invalidate_targets(
            self, keys, tags, patterns, namespaces, event, source, batch_size, log
        )
        return run(self.guard, flow)

    async def ainvalidate_targets(
        self,
        *,
        keys: Sequence[str] = (),
        tags: Sequence[str] = (),
        patterns: Sequence[str] = (),
        namespaces: Sequence[Namespace | str] = (),
        event: InvalidationEvent | None = None,
        source: str = "manual",
        batch_size: int = 500,
        log: bool = True,
    ) -> InvalidationRecord:
        """Async ``invalidate_targets``."""
        flow = inspect_steps.invalidate_targets(
            self, keys, tags, patterns, namespaces, event, source, batch_size, log
        )
        return await arun(self.guard, flow)

    # -- locks ------------------------------------------------------------------------------

    def lock(
        self,
        name: str,
        *,
        timeout: Duration = 10.0,
        blocking_timeout: Duration = 5.0,
        renew: bool = True,
    ) -> CacheLock:
        """A lock named ``name``, shared by every process using this backend and key prefix.

        Use it as a context manager, ``with`` or ``async with``; entering waits up to
        ``blocking_timeout`` and raises ``LockNotAcquiredError`` if another holder kept it.
        The lease (``timeout``) is renewed every third of it while the block runs, so a
        long holder keeps the lock and one that died keeps the others out for at most
        ``timeout``. Unlike reads and writes, a lock does not fail open: a backend fault
        raises ``BackendError``.

        Args:
            name: The lock's name (a valid key; it lives under the reserved key space).
            timeout: The lease, in seconds or a timedelta.
            blocking_timeout: How long entering waits; 0 tries once.
            renew: Renew the lease while the block runs (``False``: it ends after
                ``timeout`` whatever the holder is doing).

        Returns:
            A ``CacheLock``; also ``acquire``/``release``/``extend`` and their a-twins.

        Raises:
            InvalidKeyError: ``name`` is not a valid key.
            ConfigurationError: ``timeout`` is not > 0 or ``blocking_timeout`` is negative.

        Examples:
            >>> cache = Cache.from_url("memory://")
            >>> with cache.lock("nightly-report", timeout=30):
            ...     pass  # one process at a time builds the report
        """
        seconds = option_seconds(timeout, "timeout")
        wait = option_seconds(blocking_timeout, "blocking_timeout", allow_zero=True)
        key = self.keyspace.lock_key(name)
        return CacheLock(
            self.backend, key, name, timeout=seconds, blocking_timeout=wait, renew=renew
        )

    # -- batches and the backend ---------------------------------------------------------------

    def batch(self, *, transaction: bool = False) -> Batch:
        """A fluent batch of operations sent in one round trip (see ``Batch``).

        Args:
            transaction: Run the operations atomically (MULTI/EXEC on Redis).
        """
        return Batch(self, transaction=transaction)

    def pending_invalidations(self) -> dict[str, int]:
        """What this process keeps of invalidations the backend refused, and has replayed.

        Returns:
            ``invalidations_pending`` (kept now), ``invalidations_replayed`` and
            ``invalidations_overflowed`` (since the cache was made); health checks and
            alerts judge the first.
        """
        return self.invalidator.pending.figures()

    def ping(self) -> float:
        """Round-trip latency to the backend in seconds.

        Raises:
            BackendError: The backend did not answer (a probe never fails open).
        """
        self.guard.need_sync()
        return float(self.backend.ping())

    async def aping(self) -> float:
        """Async ``ping``."""
        self.guard.need_async()
        return float(await self.backend.aping())

    def stats(self) -> BackendStats:
        """The backend's own figures (memory, clients, keys, evictions...).

        Raises:
            BackendError: The backend did not answer.
        """
        self.guard.need_sync()
        stats: BackendStats = self.backend.stats()
        return stats

    async def astats(self) -> BackendStats:
        """Async ``stats``."""
        self.guard.need_async()
        stats: BackendStats = await self.backend.astats()
        return stats

    def close(self) -> None:
        """Release the backend's connections (the cache can be used again afterwards).

        The breaker's background probe and the pending invalidations' retry thread stop
        first; invalidations still pending stay, and the next calls replay them.
        """
        self.guard.close()
        self.invalidator.pending.close()
        if self.guard.sync_ok:
            self.backend.close()

    async def aclose(self) -> None:
        """Async ``close``: stops the background threads without waiting for them."""
        # no join: a thread's wait must not block the loop; neither thread touches the
        # async clients this closes
        self.guard.close(timeout=0)
        self.invalidator.pending.close(timeout=0)
        if self.guard.async_ok:
            await self.backend.aclose()

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
