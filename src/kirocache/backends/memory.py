"""MemoryBackend: a bounded, thread-safe, in-process store of bytes with TTLs and LRU eviction."""

from __future__ import annotations

import heapq
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Final, get_args

from kirocache.backends._glob import glob_to_regex
from kirocache.backends._protocol import TOMBSTONE_PREFIX, BackendStats, Op, OpName, OpResult
from kirocache.exceptions import (
    BackendError,
    ConfigurationError,
    InvalidTTLError,
    SerializationError,
    ValueTooLargeError,
)

__all__ = ["MemoryBackend"]

_NO_EXPIRY: Final = math.inf
# Expired entries removed from the heap's front on each write: enough to outpace the rate at
# which writes add entries, small enough that no single write pays for a burst of expiries.
_PURGE_STEP: Final = 16
# The heap keeps stale entries (overwritten, deleted, persisted keys) until they surface; it
# is rebuilt once it holds this many more entries than twice the live keys.
_HEAP_SLACK: Final = 64
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
# What Redis accepts as an integer for INCRBY: no sign but "-", no spaces, no leading zeros.
_INTEGER: Final = re.compile(rb"\A(?:0|-?[1-9][0-9]{0,18})\Z")

_OP_NAMES: Final = get_args(OpName)

# A key holds bytes or, written by ``tag_add``, a tag set (mutated in place under the lock).
_Tags = set[str]  # an alias, since the class's ``set`` method shadows the builtin there
_Value = bytes | _Tags
_Entry = tuple[_Value, float]  # (value, expires_at); expires_at is inf without a TTL


class MemoryBackend:
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
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        self._heap: list[tuple[float, str]] = []
        self._bytes = 0
        self._hits = self._misses = self._evictions = self._expired = 0
        self._started = clock()

    def __repr__(self) -> str:
        return (
            f"MemoryBackend(keys={len(self._data)}/{self._max_entries}, "
            f"bytes={self._bytes}/{self._max_bytes})"
        )

    # -- sync API (the async twins below call these) ---------------------------------------

    def get(self, key: str) -> bytes | None:
        """Return the bytes stored at ``key``, or ``None``; a hit makes the key most recent.

        Raises:
            BackendError: ``key`` holds a tag set.
        """
        now = self._clock()
        with self._lock:
            entry = self._data.get(key)
            if entry is not None and entry[1] > now and type(entry[0]) is bytes:
                # the hot path of a hit, inlined: live bytes
                self._hits += 1
                self._data.move_to_end(key)
                return entry[0]
            return self._get(key, now)

    def set(self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False) -> bool:
        """Store ``value`` (replacing any TTL); with ``nx`` only if absent.

        Raises:
            InvalidTTLError: ``ttl`` is not a number of seconds > 0.
            SerializationError: ``value`` is not bytes-like.
            ValueTooLargeError: The entry alone is larger than ``max_bytes``.
        """
        value = _as_bytes(value)
        size = self._check_size(key, value)
        now = self._clock()
        expires_at = _deadline(now, ttl)
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
            value = _as_bytes(raw)
            checked.append((key, value, self._check_size(key, value)))
        now = self._clock()
        expires_at = _deadline(now, ttl)
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
        expires_at = _deadline(now, ttl, required=True)
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
            BackendError: The value is not a 64-bit integer, or the result overflows one.
            InvalidTTLError: ``ttl`` is not a number of seconds > 0.
        """
        now = self._clock()
        expires_at = _deadline(now, ttl)
        with self._lock:
            return self._incr(key, _as_amount(amount), expires_at, now)

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
            snapshot = list(self._data)
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
            BackendError: ``key`` holds a value that is not a tag set.
            InvalidTTLError: ``ttl`` is not a number of seconds > 0 or ``None``.
            TypeError: ``members`` is a single ``str``.
        """
        wanted = _as_members(members)
        now = self._clock()
        expires_at = _deadline(now, ttl)
        if not wanted:
            return
        with self._lock:
            self._tag_add(key, wanted, expires_at, now)

    def tag_members(self, key: str) -> list[str]:
        """The members of the tag set at ``key``, sorted; ``[]`` if absent.

        Raises:
            BackendError: ``key`` holds a value that is not a tag set.
        """
        now = self._clock()
        with self._lock:
            entry = self._live(key, now)
            return [] if entry is None else sorted(_as_tags(key, entry[0]))

    def tag_remove(self, key: str, members: Sequence[str]) -> int:
        """Remove ``members`` from the tag set at ``key``; an emptied set is deleted.

        Returns:
            How many of ``members`` were in the set.

        Raises:
            BackendError: ``key`` holds a value that is not a tag set.
            TypeError: ``members`` is a single ``str``.
        """
        unwanted = _as_members(members)
        now = self._clock()
        with self._lock:
            return self._tag_remove(key, unwanted, now)

    def delete_if_equals(self, key: str, value: bytes) -> bool:
        """Delete ``key`` only if it holds ``value`` (one lock hold); returns whether it did.

        Raises:
            BackendError: ``key`` holds a tag set.
        """
        expected = _as_bytes(value)
        now = self._clock()
        with self._lock:
            entry = self._live(key, now)
            if entry is None or _as_value(key, entry[0]) != expected:
                return False
            self._remove(key, entry[0])
            return True

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

    # -- internals: callers hold the lock --------------------------------------------------

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            self._remove(key, entry[0])
            self._expired += 1
            return None
        return entry

    def _get(self, key: str, now: float, *, strict: bool = True) -> bytes | None:
        entry = self._live(key, now)
        if entry is None or (not strict and isinstance(entry[0], set)):
            self._misses += 1
            return None
        value = _as_value(key, entry[0])
        self._hits += 1
        self._data.move_to_end(key)
        return value

    def _tag_add(self, key: str, members: _Tags, expires_at: float, now: float) -> None:
        entry = self._live(key, now)
        if entry is None:
            self._store(key, members, _size(key, members), expires_at, now)
            return
        tags = _as_tags(key, entry[0])
        added = members - tags
        tags |= added
        self._bytes += _members_size(added)
        if expires_at > entry[1]:
            self._data[key] = (tags, expires_at)
            if expires_at != _NO_EXPIRY:
                self._schedule(expires_at, key)
        self._data.move_to_end(key)
        self._make_room(now)

    def _tag_remove(self, key: str, members: _Tags, now: float) -> int:
        entry = self._live(key, now)
        if entry is None:
            return 0
        tags = _as_tags(key, entry[0])
        removed = tags & members
        tags -= removed
        self._bytes -= _members_size(removed)
        if not tags:
            self._remove(key, tags)
        return len(removed)

    def _store(self, key: str, value: _Value, size: int, expires_at: float, now: float) -> None:
        old = self._data.pop(key, None)
        if old is not None:
            self._bytes -= _size(key, old[0])
        self._data[key] = (value, expires_at)
        self._bytes += size
        if expires_at != _NO_EXPIRY:
            self._schedule(expires_at, key)
        self._make_room(now)

    def _make_room(self, now: float) -> None:
        self._purge(now, limit=_PURGE_STEP)
        if self._over_limit():
            self._purge(now, limit=None)
            while self._over_limit():
                evicted, (evicted_value, _) = self._data.popitem(last=False)
                self._bytes -= _size(evicted, evicted_value)
                self._evictions += 1

    def _over_limit(self) -> bool:
        return (self._max_entries is not None and len(self._data) > self._max_entries) or (
            self._max_bytes is not None and self._bytes > self._max_bytes
        )

    def _remove(self, key: str, value: _Value) -> None:
        del self._data[key]
        self._bytes -= _size(key, value)

    def _delete(self, key: str, now: float) -> bool:
        entry = self._live(key, now)
        if entry is None:
            return False
        self._remove(key, entry[0])
        return True

    def _ttl(self, key: str, now: float) -> float | None:
        entry = self._live(key, now)
        if entry is None:
            return None
        return entry[1] - now if entry[1] != _NO_EXPIRY else _NO_EXPIRY

    def _expire(self, key: str, expires_at: float, now: float) -> bool:
        entry = self._live(key, now)
        if entry is None:
            return False
        self._data[key] = (entry[0], expires_at)
        if expires_at != _NO_EXPIRY:
            self._schedule(expires_at, key)
        self._purge(now, limit=_PURGE_STEP)
        return True

    def _persist(self, key: str, now: float) -> bool:
        entry = self._live(key, now)
        if entry is None or entry[1] == _NO_EXPIRY:
            return False
        self._data[key] = (entry[0], _NO_EXPIRY)
        return True

    def _incr(self, key: str, amount: int, expires_at: float, now: float) -> int:
        entry = self._live(key, now)
        current = 0
        if entry is not None:
            parsed = _parse_counter(_as_value(key, entry[0]))
            if parsed is None:
                msg = f"value at {key!r} is not an integer or out of range, so incr cannot add"
                raise BackendError(msg)
            current, expires_at = parsed, entry[1]
        result = current + amount
        if not _INT64_MIN <= result <= _INT64_MAX:
            msg = f"incr of {key!r} by {amount} would overflow a 64-bit integer"
            raise BackendError(msg)
        value = str(result).encode("ascii")
        self._store(key, value, self._check_size(key, value), expires_at, now)
        return result

    def _schedule(self, expires_at: float, key: str) -> None:
        heapq.heappush(self._heap, (expires_at, key))
        if len(self._heap) > 2 * len(self._data) + _HEAP_SLACK:
            # Amortised O(1): a rebuild costs O(live keys) and only happens after at least
            # that many pushes since the last one.
            self._heap = [(e, k) for k, (_, e) in self._data.items() if e != _NO_EXPIRY]
            heapq.heapify(self._heap)

    def _purge(self, now: float, limit: int | None) -> int:
        heap, data = self._heap, self._data
        removed = popped = 0
        while heap and heap[0][0] <= now and (limit is None or popped < limit):
            expires_at, key = heapq.heappop(heap)
            popped += 1
            entry = data.get(key)
            # Entries of overwritten, deleted or persisted keys are stale: skip them.
            if entry is not None and entry[1] == expires_at:
                self._remove(key, entry[0])
                removed += 1
        self._expired += removed
        return removed

    def _run(self, op: Op, now: float) -> OpResult:
        try:
            return self._apply(op, now)
        except Exception as exc:  # noqa: BLE001 -- a failing op's error belongs in its slot
            return exc

    def _apply(self, op: Op, now: float) -> OpResult:  # noqa: PLR0911, PLR0912 -- one per op
        key = op.key
        match op.name:
            case "get":
                return self._get(key, now)
            case "set":
                value = _as_bytes(op.value)
                size = self._check_size(key, value)
                expires_at = _deadline(now, op.ttl)
                if op.nx and self._live(key, now) is not None:
                    return False
                self._store(key, value, size, expires_at, now)
                return True
            case "delete":
                return self._delete(key, now)
            case "exists":
                return self._live(key, now) is not None
            case "expire":
                return self._expire(key, _deadline(now, op.ttl, required=True), now)
            case "incr":
                return self._incr(key, _as_amount(op.amount), _deadline(now, op.ttl), now)
            case "ttl":
                return self._ttl(key, now)
            case "persist":
                return self._persist(key, now)
            case "set_if":
                value = _as_bytes(op.value)
                size = self._check_size(key, value)
                expires_at = _deadline(now, op.ttl)
                for checked, expected in ((key, op.expected), *op.guards):
                    entry = self._live(checked, now)
                    held = None if entry is None else _as_value(checked, entry[0])
                    if held != expected:
                        return False
                self._store(key, value, size, expires_at, now)
                return True
            case "swap":
                value = _as_bytes(op.value)
                size = self._check_size(key, value)
                expires_at = _deadline(now, op.ttl)
                entry = self._live(key, now)
                held = None if entry is None else _as_value(key, entry[0])
                self._store(key, value, size, expires_at, now)
                return held
            case "tag_remove":
                return self._tag_remove(key, _as_members(op.members), now)
            case "tag_prune":
                if len(op.probes) != len(op.members):
                    msg = "tag_prune needs one probe key per member"
                    raise ConfigurationError(msg)
                dead: _Tags = set()
                for member, probe in zip(op.members, op.probes, strict=True):
                    probed = self._live(probe, now)
                    if probed is None or (
                        isinstance(probed[0], bytes) and probed[0].startswith(TOMBSTONE_PREFIX)
                    ):
                        dead.add(member)
                return self._tag_remove(key, dead, now) if dead else 0
            case "tag_members":
                entry = self._live(key, now)
                return [] if entry is None else sorted(_as_tags(key, entry[0]))
            case "tag_add":
                wanted = _as_members(op.members)
                if wanted:
                    self._tag_add(key, wanted, _deadline(now, op.ttl), now)
                return True

    def _check_size(self, key: str, value: bytes) -> int:
        size = _size(key, value)
        if self._max_bytes is not None and size > self._max_bytes:
            msg = (
                f"entry {key!r:.80} is {size} bytes, over the memory backend's max_bytes "
                f"({self._max_bytes}); raise max_bytes or store a smaller value"
            )
            raise ValueTooLargeError(msg)
        return size


def _size(key: str, value: _Value) -> int:
    held = len(value) if isinstance(value, bytes) else _members_size(value)
    return len(key.encode("utf-8", "surrogatepass")) + held


def _members_size(members: set[str]) -> int:
    return sum(len(member.encode("utf-8", "surrogatepass")) for member in members)


def _as_value(key: str, value: _Value) -> bytes:
    if isinstance(value, bytes):
        return value
    msg = f"{key!r:.80} holds a tag set, not a value (WRONGTYPE); use a different key"
    raise BackendError(msg)


def _as_tags(key: str, value: _Value) -> set[str]:
    if isinstance(value, set):
        return value
    msg = f"{key!r:.80} holds a value, not a tag set (WRONGTYPE); use a different key"
    raise BackendError(msg)


def _as_members(members: Sequence[str]) -> set[str]:
    if isinstance(members, str):
        msg = "members must be a sequence of str, not a single str; wrap it in a list"
        raise TypeError(msg)
    return set(members)


def _parse_counter(raw: bytes) -> int | None:
    """The integer Redis would read from ``raw`` for INCRBY, or ``None``."""
    if not _INTEGER.match(raw):
        return None
    value = int(raw)
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def _as_bytes(value: object) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    msg = f"backends store bytes, not {type(value).__name__}; serialize the value first"
    raise SerializationError(msg)


def _as_amount(amount: object) -> int:
    if type(amount) is int:
        return amount
    msg = f"incr amount must be an int, not {type(amount).__name__}"
    raise TypeError(msg)


def _deadline(now: float, ttl: object, *, required: bool = False) -> float:
    """The clock time at which an entry with ``ttl`` seconds to live expires."""
    if ttl is None and not required:
        return _NO_EXPIRY
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        msg = f"ttl must be a number of seconds > 0 or None, got {ttl!r}"
        raise InvalidTTLError(msg)
    return now + ttl
