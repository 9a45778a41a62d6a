"""MemoryBackend's store: entries in LRU order, an expiry heap, size limits and pipelined ops.

:class:`MemoryStore` is the base ``MemoryBackend`` stands on: its state, and every step on
it, each meant to run with the lock held.
"""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from kirocache.backends._limits import check_text
from kirocache.backends._memory_values import (
    INT64_MAX,
    INT64_MIN,
    NO_EXPIRY,
    Entry,
    Tags,
    Value,
    as_amount,
    as_bytes,
    as_members,
    as_tags,
    as_value,
    deadline,
    members_size,
    parse_counter,
    size_of,
)
from kirocache.backends._protocol import TOMBSTONE_PREFIX, Op, OpResult
from kirocache.exceptions import CommandError, ConfigurationError, ValueTooLargeError

__all__ = ["MemoryStore"]

# Expired entries removed from the heap's front on each write: enough to outpace the rate at
# which writes add entries, small enough that no single write pays for a burst of expiries.
_PURGE_STEP: Final = 16
# The heap keeps stale entries (overwritten, deleted, persisted keys) until they surface; it
# is rebuilt once it holds this many more entries than twice the live keys.
_HEAP_SLACK: Final = 64


class MemoryStore:
    """The store under ``MemoryBackend``: entries, expiry and eviction, under one lock.

    Entries sit in an ``OrderedDict`` in least-recently-used order, and those with a TTL
    also in a heap by expiry time. Every method here expects the caller to hold the lock.
    """

    def _setup(
        self, max_entries: int | None, max_bytes: int | None, clock: Callable[[], float]
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[str, Entry] = OrderedDict()
        # The key last put at the LRU end (stored or read). While it is in ``_data`` it is
        # the last key there: every step that puts a key at the end sets it, and removing
        # other keys never moves it. So a hit on it needs no ``move_to_end``.
        self._last: str | None = None
        self._heap: list[tuple[float, str]] = []
        self._bytes = 0
        self._hits = self._misses = self._evictions = self._expired = 0
        self._started = clock()

    # -- internals: callers hold the lock --------------------------------------------------

    def _live(self, key: str, now: float) -> Entry | None:
        entry = self._data.get(key)
        if entry is None:
            # Only a miss can be a key Redis would refuse: size_of never stores one.
            check_text(key)
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
        value = as_value(key, entry[0])
        self._hits += 1
        self._data.move_to_end(key)
        self._last = key
        return value

    def _tag_add(self, key: str, members: Tags, expires_at: float, now: float) -> None:
        entry = self._live(key, now)
        if entry is None:
            self._store(key, members, size_of(key, members), expires_at, now)
            return
        tags = as_tags(key, entry[0])
        added = members - tags
        tags |= added
        self._bytes += members_size(added)
        if expires_at > entry[1]:
            self._data[key] = (tags, expires_at)
            if expires_at != NO_EXPIRY:
                self._schedule(expires_at, key)
        self._data.move_to_end(key)
        self._last = key
        self._make_room(now)

    def _tag_remove(self, key: str, members: Tags, now: float) -> int:
        entry = self._live(key, now)
        if entry is None:
            return 0
        tags = as_tags(key, entry[0])
        removed = tags & members
        tags -= removed
        self._bytes -= members_size(removed)
        if not tags:
            self._remove(key, tags)
        return len(removed)

    def _store(self, key: str, value: Value, size: int, expires_at: float, now: float) -> None:
        old = self._data.pop(key, None)
        if old is not None:
            self._bytes -= size_of(key, old[0])
        self._data[key] = (value, expires_at)
        self._last = key
        self._bytes += size
        if expires_at != NO_EXPIRY:
            self._schedule(expires_at, key)
        self._make_room(now)

    def _make_room(self, now: float) -> None:
        self._purge(now, limit=_PURGE_STEP)
        if self._over_limit():
            self._purge(now, limit=None)
            while self._over_limit():
                evicted, (evicted_value, _) = self._data.popitem(last=False)
                self._bytes -= size_of(evicted, evicted_value)
                self._evictions += 1

    def _over_limit(self) -> bool:
        return (self._max_entries is not None and len(self._data) > self._max_entries) or (
            self._max_bytes is not None and self._bytes > self._max_bytes
        )

    def _remove(self, key: str, value: Value) -> None:
        del self._data[key]
        self._bytes -= size_of(key, value)

    def _delete(self, key: str, now: float) -> bool:
        entry = self._live(key, now)
        if entry is None:
            return False
        self._remove(key, entry[0])
        return True

    def _delete_if(self, key: str, expected: bytes, now: float) -> bool:
        entry = self._live(key, now)
        if entry is None or as_value(key, entry[0]) != expected:
            return False
        self._remove(key, entry[0])
        return True

    def _ttl(self, key: str, now: float) -> float | None:
        entry = self._live(key, now)
        if entry is None:
            return None
        return entry[1] - now if entry[1] != NO_EXPIRY else NO_EXPIRY

    def _expire(self, key: str, expires_at: float, now: float) -> bool:
        entry = self._live(key, now)
        if entry is None:
            return False
        self._data[key] = (entry[0], expires_at)
        if expires_at != NO_EXPIRY:
            self._schedule(expires_at, key)
        self._purge(now, limit=_PURGE_STEP)
        return True

    def _persist(self, key: str, now: float) -> bool:
        entry = self._live(key, now)
        if entry is None or entry[1] == NO_EXPIRY:
            return False
        self._data[key] = (entry[0], NO_EXPIRY)
        return True

    def _incr(self, key: str, amount: int, expires_at: float, now: float) -> int:
        entry = self._live(key, now)
        current = 0
        if entry is not None:
            parsed = parse_counter(as_value(key, entry[0]))
            if parsed is None:
                msg = f"value at {key!r} is not an integer or out of range, so incr cannot add"
                raise CommandError(msg)
            current, expires_at = parsed, entry[1]
        result = current + amount
        if not INT64_MIN <= result <= INT64_MAX:
            msg = f"incr of {key!r} by {amount} would overflow a 64-bit integer"
            raise CommandError(msg)
        value = str(result).encode("ascii")
        self._store(key, value, self._check_size(key, value), expires_at, now)
        return result

    def _schedule(self, expires_at: float, key: str) -> None:
        heapq.heappush(self._heap, (expires_at, key))
        if len(self._heap) > 2 * len(self._data) + _HEAP_SLACK:
            # Amortised O(1): a rebuild costs O(live keys) and only happens after at least
            # that many pushes since the last one.
            self._heap = [(e, k) for k, (_, e) in self._data.items() if e != NO_EXPIRY]
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
                value = as_bytes(op.value)
                size = self._check_size(key, value)
                expires_at = deadline(now, op.ttl)
                if op.nx and self._live(key, now) is not None:
                    return False
                self._store(key, value, size, expires_at, now)
                return True
            case "delete":
                return self._delete(key, now)
            case "delete_if":
                return self._delete_if(key, as_bytes(op.expected), now)
            case "exists":
                return self._live(key, now) is not None
            case "expire":
                return self._expire(key, deadline(now, op.ttl, required=True), now)
            case "incr":
                return self._incr(key, as_amount(op.amount), deadline(now, op.ttl), now)
            case "ttl":
                return self._ttl(key, now)
            case "persist":
                return self._persist(key, now)
            case "set_if":
                value = as_bytes(op.value)
                size = self._check_size(key, value)
                expires_at = deadline(now, op.ttl)
                for checked, expected in ((key, op.expected), *op.guards):
                    entry = self._live(checked, now)
                    held = None if entry is None else as_value(checked, entry[0])
                    if held != expected:
                        return False
                self._store(key, value, size, expires_at, now)
                return True
            case "swap":
                value = as_bytes(op.value)
                size = self._check_size(key, value)
                expires_at = deadline(now, op.ttl)
                entry = self._live(key, now)
                held = None if entry is None else as_value(key, entry[0])
                self._store(key, value, size, expires_at, now)
                return held
            case "tag_remove":
                return self._tag_remove(key, as_members(op.members), now)
            case "tag_prune":
                if len(op.probes) != len(op.members):
                    msg = "tag_prune needs one probe key per member"
                    raise ConfigurationError(msg)
                dead: Tags = set()
                for member, probe in zip(op.members, op.probes, strict=True):
                    probed = self._live(probe, now)
                    if probed is None or (
                        isinstance(probed[0], bytes) and probed[0].startswith(TOMBSTONE_PREFIX)
                    ):
                        dead.add(member)
                return self._tag_remove(key, dead, now) if dead else 0
            case "tag_members":
                entry = self._live(key, now)
                return [] if entry is None else sorted(as_tags(key, entry[0]))
            case "tag_add":
                wanted = as_members(op.members)
                if wanted:
                    self._tag_add(key, wanted, deadline(now, op.ttl), now)
                return True

    def _check_size(self, key: str, value: bytes) -> int:
        size = size_of(key, value)
        if self._max_bytes is not None and size > self._max_bytes:
            msg = (
                f"entry {key!r:.80} is {size} bytes, over the memory backend's max_bytes "
                f"({self._max_bytes}); raise max_bytes or store a smaller value"
            )
            raise ValueTooLargeError(msg)
        return size
