"""MemoryBackend: a bounded, thread-safe, in-process store of bytes with TTLs and LRU eviction."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Final, get_args

from kirocache.backends._glob import glob_to_regex
from kirocache.backends._memory_store import MemoryStore
from kirocache.backends._memory_values import (
    as_amount,
    as_bytes,
    as_members,
    as_tags,
    deadline,
)
from kirocache.backends._protocol import BackendStats, Op, OpName, OpResult
from kirocache.exceptions import ConfigurationError

__all__ = ["MemoryBackend"]

_OP_NAMES: Final = get_args(OpName)


class MemoryBackend(MemoryStore):
    """An in-process backend: bytes in a bounded LRU dict, with lazy and periodic expiry.

    It satisfies both ``Backend`` and ``AsyncBackend``; the async methods answer directly,
    since nothing here blocks. One ``threading.Lock`` guards the store and is held for a few
    dict operations at a time, so it is safe to share between threads.

    Expired entries disappear when they are read (lazy expiry) and, without any reads, a few
    at a time on every write (periodic expiry, amortised, no background thread);
    ``purge_expired()`` removes all of them at once. When a write takes the store over
    ``max_entries`` or ``max_bytes`` (key plus value sizes), expired entries go first and
    then the least recently used ones.

    Tag sets (``tag_add``) live in the same store as values, so they are keys like any
    other: they count in ``keys`` and ``used_memory`` (key plus UTF-8 members), expire, and
    are evicted least recently used first, as in Redis with an ``allkeys-lru`` policy.

    Args:
        max_entries: Most entries held at once, or ``None`` for no limit.
        max_bytes: Most bytes (UTF-8 keys plus values) held at once, or ``None`` for no
            limit. A single entry larger than this is refused with ``ValueTooLargeError``.
        clock: Monotonic seconds, injectable so tests can move time by hand.

    Raises:
        ConfigurationError: A limit is not a positive ``int`` or ``None``.
    """

    answers_inline: bool = True
    """Its sync methods never wait on I/O (a lock held for a few dict steps), and its
    async twins only call them: an async caller may call ``get`` itself. A subclass with
    its own ``aget`` does not answer inline unless it says so; one whose ``get`` may wait
    sets it to ``False``."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "aget" in cls.__dict__ and "answers_inline" not in cls.__dict__:
            cls.answers_inline = False  # its own aget: awaited, never bypassed

    def __init__(
        self,
        *,
        max_entries: int | None = 10_000,
        max_bytes: int | None = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, limit in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if limit is not None and (type(limit) is not int or limit < 1):
                msg = f"{name} must be a positive int or None (no limit), got {limit!r}"
                raise ConfigurationError(msg)
        self._setup(max_entries, max_bytes, clock)

    def __repr__(self) -> str:
        return (
            f"MemoryBackend(keys={len(self._data)}/{self._max_entries}, "
            f"bytes={self._bytes}/{self._max_bytes})"
        )

    # -- sync API (the async twins below call these) ---------------------------------------

    def get(self, key: str) -> bytes | None:
        """Return the bytes stored at ``key``, or ``None``; a hit makes the key most recent.

        Raises:
            CommandError: ``key`` holds a tag set.
        """
        now = self._clock()
        # acquire/release rather than ``with``: a third of the cost of a hit's lock
        lock = self._lock
        lock.acquire()
        try:
            entry = self._data.get(key)
            if entry is not None and entry[1] > now and entry[0].__class__ is bytes:
                # the hot path of a hit, inlined: live bytes, moved to the LRU end unless
                # already there (a key read over and over is moved once)
                self._hits += 1
                if key != self._last:
                    self._data.move_to_end(key)
                    self._last = key
                return entry[0]
            return self._get(key, now)
        finally:
            lock.release()

    def set(self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False) -> bool:
        """Store ``value`` (replacing any TTL); with ``nx`` only if absent.

        Raises:
            InvalidTTLError: ``ttl`` is not a number of seconds > 0.
            SerializationError: ``value`` is not bytes-like.
            ValueTooLargeError: The entry alone is larger than ``max_bytes``.
        """
        value = as_bytes(value)
        size = self._check_size(key, value)
        now = self._clock()
        expires_at = deadline(now, ttl)
        with self._lock:
            if nx and self._live(key, now) is not None:
                return False
            self._store(key, value, size, expires_at, now)
            return True

    def delete(self, key: str) -> bool:
        """Remove ``key``; returns whether it held a live value."""
        now = self._clock()
        with self._lock:
            return self._delete(key, now)

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a live value (without making it most recent)."""
        now = self._clock()
        with self._lock:
            return self._live(key, now) is not None

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys`` in order, ``None`` where absent or a tag set (as MGET)."""
        now = self._clock()
        with self._lock:
            return [self._get(key, now, strict=False) for key in keys]

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Store every item with the same TTL; nothing is stored if one item is refused.

        Raises:
            InvalidTTLError: ``ttl`` is not a number of seconds > 0.
            SerializationError: A value is not bytes-like.
            ValueTooLargeError: An entry alone is larger than ``max_bytes``.
        """
        checked = []
        for key, raw in items.items():
            value = as_bytes(raw)
            checked.append((key, value, self._check_size(key, value)))
        now = self._clock()
        expires_at = deadline(now, ttl)
        with self._lock:
            for key, value, size in checked:
                self._store(key, value, size, expires_at, now)

    def delete_many(self, keys: Sequence[str]) -> int:
        """Remove ``keys``; returns how many held a live value."""
        now = self._clock()
        with self._lock:
            return sum(self._delete(key, now) for key in keys)

    def ttl(self, key: str) -> float | None:
        """Seconds left: ``None`` if absent, ``math.inf`` if it never expires."""
        now = self._clock()
        with self._lock:
            return self._ttl(key, now)

    def expire(self, key: str, ttl: float) -> bool:
        """Give an existing key a new TTL; returns whether the key existed.

        Raises:
            InvalidTTLError: ``ttl`` is not a number of seconds > 0.
        """
        now = self._clock()
        expires_at = deadline(now, ttl, required=True)
        with self._lock:
            return self._expire(key, expires_at, now)

    def persist(self, key: str) -> bool:
        """Remove the TTL of ``key``; returns whether a TTL was removed."""
        now = self._clock()
        with self._lock:
            return self._persist(key, now)

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` to the integer at ``key`` (0 if absent) and return the result.

        The key keeps its TTL; ``ttl`` applies only when this call creates the key. The
        value is stored as ASCII decimal, as Redis stores counters.

        Raises:
            CommandError: The value is not a 64-bit integer, or the result overflows one.
            InvalidTTLError: ``ttl`` is not a number of seconds > 0.
        """
        now = self._clock()
        expires_at = deadline(now, ttl)
        with self._lock:
            return self._incr(key, as_amount(amount), expires_at, now)

    def scan(self, pattern: str, count: int = 500) -> Iterator[str]:
        """Yield live keys matching the Redis glob ``pattern``.

        The key list is copied once, then matched and checked for liveness ``count`` keys
        per lock acquisition, so a long scan never holds the lock for long. As with Redis
        SCAN, keys present for the whole scan are yielded once; keys written during it may
        or may not be.
        """
        regex = glob_to_regex(pattern)
        step = max(1, count)
        with self._lock:
            # in key order, not the LRU order reads reshuffle: two scans of the same keys
            # agree, so a listing that resumes by counting keys passed (``scan_keys``)
            # neither skips nor repeats one
            snapshot = sorted(self._data)
        for start in range(0, len(snapshot), step):
            matched = [key for key in snapshot[start : start + step] if regex.match(key)]
            if not matched:
                continue
            now = self._clock()
            with self._lock:
                live = [key for key in matched if self._live(key, now) is not None]
            yield from live

    def delete_pattern(self, pattern: str, batch_size: int = 500) -> int:
        """Delete the keys matching the Redis glob ``pattern``, ``batch_size`` per lock hold.

        Returns:
            How many keys were deleted.
        """
        deleted = 0
        batch: list[str] = []
        for key in self.scan(pattern, batch_size):
            batch.append(key)
            if len(batch) >= batch_size:
                deleted += self.delete_many(batch)
                batch.clear()
        return deleted + (self.delete_many(batch) if batch else 0)

    def tag_add(self, key: str, members: Sequence[str], ttl: float | None) -> None:
        """Add ``members`` to the tag set at ``key``, which then lives at least ``ttl``.

        A new set gets ``ttl``; an existing set's TTL only grows (``None``: no expiry).

        Raises:
            CommandError: ``key`` holds a value that is not a tag set.
            InvalidTTLError: ``ttl`` is not a number of seconds > 0 or ``None``.
            TypeError: ``members`` is a single ``str``.
        """
        wanted = as_members(members)
        now = self._clock()
        expires_at = deadline(now, ttl)
        if not wanted:
            return
        with self._lock:
            self._tag_add(key, wanted, expires_at, now)

    def tag_members(self, key: str) -> list[str]:
        """The members of the tag set at ``key``, sorted; ``[]`` if absent.

        Raises:
            CommandError: ``key`` holds a value that is not a tag set.
        """
        now = self._clock()
        with self._lock:
            entry = self._live(key, now)
            return [] if entry is None else sorted(as_tags(key, entry[0]))

    def tag_remove(self, key: str, members: Sequence[str]) -> int:
        """Remove ``members`` from the tag set at ``key``; an emptied set is deleted.

        Returns:
            How many of ``members`` were in the set.

        Raises:
            CommandError: ``key`` holds a value that is not a tag set.
            TypeError: ``members`` is a single ``str``.
        """
        unwanted = as_members(members)
        now = self._clock()
        with self._lock:
            return self._tag_remove(key, unwanted, now)

    def delete_if_equals(self, key: str, value: bytes) -> bool:
        """Delete ``key`` only if it holds ``value`` (one lock hold); returns whether it did.

        Raises:
            CommandError: ``key`` holds a tag set.
        """
        expected = as_bytes(value)
        now = self._clock()
        with self._lock:
            return self._delete_if(key, expected, now)

    def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Run ``ops`` in order; with ``transaction`` under one lock hold, so atomically.

        A failing op puts its exception in its slot and the others still run, with or
        without a transaction (as in a Redis MULTI/EXEC, nothing is rolled back).

        Raises:
            ConfigurationError: An op has an unknown name (checked before any op runs).
        """
        for op in ops:
            if op.name not in _OP_NAMES:
                msg = f"unknown op {op.name!r}; expected one of {', '.join(_OP_NAMES)}"
                raise ConfigurationError(msg)
        if transaction:
            now = self._clock()
            with self._lock:
                return [self._run(op, now) for op in ops]
        results: list[OpResult] = []
        for op in ops:
            now = self._clock()
            with self._lock:
                results.append(self._run(op, now))
        return results

    def ping(self) -> float:
        """Take and release the lock; returns how long that took, in seconds."""
        started = time.perf_counter()
        with self._lock:
            pass
        return time.perf_counter() - started

    def stats(self) -> BackendStats:
        """Sizes, limits and counters since creation.

        ``keys`` and ``used_memory`` include expired entries not purged yet, as Redis's
        DBSIZE does. ``hits`` and ``misses`` count reads (``get``, ``get_many`` and pipelined
        ``get`` ops); ``exists`` and ``ttl`` look without counting. ``extra``
        holds ``max_entries`` and ``expiry_queue`` (entries in the expiry heap).
        """
        now = self._clock()
        with self._lock:
            return BackendStats(
                backend="memory",
                keys=len(self._data),
                used_memory=self._bytes,
                max_memory=self._max_bytes,
                evictions=self._evictions,
                expired=self._expired,
                hits=self._hits,
                misses=self._misses,
                uptime_seconds=now - self._started,
                extra={"max_entries": self._max_entries, "expiry_queue": len(self._heap)},
            )

    def purge_expired(self) -> int:
        """Remove every expired entry now; returns how many were removed."""
        now = self._clock()
        with self._lock:
            return self._purge(now, limit=None)

    def clear(self) -> None:
        """Remove every entry (counters are kept); meant for tests."""
        with self._lock:
            self._data.clear()
            self._heap.clear()
            self._bytes = 0

    def close(self) -> None:
        """Do nothing: there is nothing to release, and the entries stay for later use."""

    # -- async API: the sync methods above, answered directly ------------------------------

    async def aget(self, key: str) -> bytes | None:
        """Async ``get``."""
        return self.get(key)

    async def aset(
        self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False
    ) -> bool:
        """Async ``set``."""
        return self.set(key, value, ttl, nx=nx)

    async def adelete(self, key: str) -> bool:
        """Async ``delete``."""
        return self.delete(key)

    async def aexists(self, key: str) -> bool:
        """Async ``exists``."""
        return self.exists(key)

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async ``get_many``."""
        return self.get_many(keys)

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Async ``set_many``."""
        self.set_many(items, ttl)

    async def adelete_many(self, keys: Sequence[str]) -> int:
        """Async ``delete_many``."""
        return self.delete_many(keys)

    async def attl(self, key: str) -> float | None:
        """Async ``ttl``."""
        return self.ttl(key)

    async def aexpire(self, key: str, ttl: float) -> bool:
        """Async ``expire``."""
        return self.expire(key, ttl)

    async def apersist(self, key: str) -> bool:
        """Async ``persist``."""
        return self.persist(key)

    async def aincr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Async ``incr``."""
        return self.incr(key, amount, ttl)

    async def ascan(self, pattern: str, count: int = 500) -> AsyncIterator[str]:
        """Async ``scan``."""
        for key in self.scan(pattern, count):
            yield key

    async def adelete_pattern(self, pattern: str, batch_size: int = 500) -> int:
        """Async ``delete_pattern``."""
        return self.delete_pattern(pattern, batch_size)

    async def atag_add(self, key: str, members: Sequence[str], ttl: float | None) -> None:
        """Async ``tag_add``."""
        self.tag_add(key, members, ttl)

    async def atag_members(self, key: str) -> list[str]:
        """Async ``tag_members``."""
        return self.tag_members(key)

    async def atag_remove(self, key: str, members: Sequence[str]) -> int:
        """Async ``tag_remove``."""
        return self.tag_remove(key, members)

    async def adelete_if_equals(self, key: str, value: bytes) -> bool:
        """Async ``delete_if_equals``."""
        return self.delete_if_equals(key, value)

    async def aexecute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Async ``execute``."""
        return self.execute(ops, transaction=transaction)

    async def aping(self) -> float:
        """Async ``ping``."""
        return self.ping()

    async def astats(self) -> BackendStats:
        """Async ``stats``."""
        return self.stats()

    async def aclose(self) -> None:
        """Async ``close``."""
        self.close()
