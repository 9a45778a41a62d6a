"""TieredBackend's local layer: copies of what was read, reads in flight, the fail-safe store."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from kirocache.backends._glob import glob_to_regex
from kirocache.backends.memory import MemoryBackend
from kirocache.exceptions import BackendError, KirocacheError

__all__ = ["Copy", "Local", "copy_ttl"]

# The public module's logger, which is the name applications configure.
_log = logging.getLogger("kirocache.backends.tiered")

Copy = tuple[str, bytes | None, float]
"""What a read found for one key: its bytes and local TTL, or ``None``: nothing to keep."""

# Values starting so are the cache's own markers (invalidation tombstones): a read must
# always see the remote's current one, so they are never copied into the local layer.
_RESERVED: Final = b"\xc5\xff"


def copy_ttl(value: bytes | None, left: float | None, local_ttl: float) -> float | None:
    """How long a copy of ``value`` may live locally; ``None``: it is not copied.

    Never longer than the remote entry has left, so a copy never outlives its original.
    """
    if value is None or value.startswith(_RESERVED) or left is None or left <= 0:
        return None
    return min(local_ttl, left)


class Local:
    """A ``MemoryBackend`` of copies, the reads in flight that may add to it, and fail-safe.

    A read notes its keys with a ticket before it asks the remote, and its copies land
    only if nothing dropped those keys in the meantime. So an invalidation that arrives
    while a read is on the wire (the read may have seen the old value) wins over it.

    ``copyable`` limits copies to keys under these prefixes (``("",)``: every key); in
    tracking mode they are the tracked prefixes, since only those keys are invalidated.

    With ``fallback`` (fail-safe), every copy is also kept there for ``fail_safe`` seconds
    as the last value known, served by :meth:`stale` while Redis is unreachable. Losing
    the subscription empties only the fresh copies (:meth:`clear` with ``fallback=False``);
    every invalidation this process learns of (its own writes, messages) drops both, and a
    read that finds a key gone or unreadable drops its last value too.
    """

    def __init__(
        self,
        memory: MemoryBackend,
        local_ttl: float,
        *,
        copyable: tuple[str, ...] = ("",),
        fallback: MemoryBackend | None = None,
        fail_safe: float = 0.0,
    ) -> None:
        self.memory = memory
        self.fallback = fallback
        self.stale_served = 0
        self._local_ttl = local_ttl
        self._copyable = copyable
        self._fail_safe = fail_safe
        self._stale_streak = False
        self._lock = threading.Lock()
        self._reads: dict[str, int] = {}
        self._tickets = itertools.count(1)

    def begin(self, keys: Iterable[str]) -> int:
        with self._lock:
            ticket = next(self._tickets)
            for key in keys:
                self._reads[key] = ticket
            return ticket

    def settle(
        self, ticket: int, keys: Iterable[str], copies: Iterable[Copy], *, fresh: bool = True
    ) -> None:
        fallback = self.fallback
        with self._lock:
            for key, value, ttl in copies:
                if value is None:
                    if fallback is not None:  # Redis answered: the last value is void
                        fallback.delete(key)
                    continue
                if self._reads.get(key) == ticket:
                    # A value too large for the layer just stays remote.
                    with contextlib.suppress(KirocacheError):
                        if fresh:
                            self.memory.set(key, value, ttl)
                        if fallback is not None:
                            fallback.set(key, value, self._fail_safe)
            for key in keys:
                if self._reads.get(key) == ticket:
                    del self._reads[key]
            self._stale_streak = False

    @contextlib.contextmanager
    def filling(self, keys: Sequence[str], *, fresh: bool = True) -> Iterator[list[Copy]]:
        """Note ``keys`` as being read; the copies the block adds land if no drop came first.

        With ``fresh`` false (the subscription is down) they land in the fail-safe store only.
        """
        ticket = self.begin(keys)
        copies: list[Copy] = []
        try:
            yield copies
        finally:
            self.settle(ticket, keys, copies, fresh=fresh)

    def copies(
        self, keys: Sequence[str], values: Sequence[object], lefts: Sequence[object]
    ) -> list[Copy]:
        """The copies worth keeping of what a read found, each with its local TTL."""
        copies: list[Copy] = []
        for key, value, left in zip(keys, values, lefts, strict=True):
            ttl = None
            if isinstance(value, bytes) and isinstance(left, float):
                ttl = copy_ttl(value, left, self._local_ttl)
            if ttl is not None and isinstance(value, bytes) and key.startswith(self._copyable):
                copies.append((key, value, ttl))
            elif self.fallback is not None:
                copies.append((key, None, 0.0))
        return copies

    def stale(self, keys: Sequence[str], error: BackendError) -> list[bytes | None] | None:
        """The last values known of ``keys`` while Redis is unreachable; ``None``: none held.

        Only for an outage (a refused command is no reason to serve an old value), and
        only with fail-safe on.
        """
        if self.fallback is None or not error.outage:
            return None
        values = self.fallback.get_many(keys)
        served = sum(value is not None for value in values)
        if not served:
            return None
        self.stale_served += served
        if not self._stale_streak:
            self._stale_streak = True
            _log.warning(
                "Redis is unreachable (%s); serving the last values read, up to %g s old "
                "(fail-safe), until it answers again",
                type(error).__name__,
                self._fail_safe,
            )
        return values

    def kept(self, key: str) -> bytes | None:
        """The last value known of ``key`` for a cache whose calls are refused (no I/O).

        The cache asks when it does not call Redis at all (its breaker is open) or a call
        failed: only with fail-safe on, and counted as a fail-safe serve.
        """
        if self.fallback is None:
            return None
        value = self.fallback.get(key)
        if value is not None:
            self.stale_served += 1
        return value

    def figures(self) -> dict[str, object]:
        """The layer's size and counts, for the backend's stats."""
        local = self.memory.stats()
        figures: dict[str, object] = {
            "local_keys": local.keys,
            "local_used_memory": local.used_memory,
            "local_hits": local.hits,
            "local_misses": local.misses,
            "local_evictions": local.evictions,
        }
        if self.fallback is not None:
            figures["fail_safe_keys"] = self.fallback.stats().keys
            figures["fail_safe_served"] = self.stale_served
        return figures

    def drop(self, keys: Sequence[str]) -> None:
        with self._lock:
            self.memory.delete_many(keys)
            if self.fallback is not None:
                self.fallback.delete_many(keys)
            for key in keys:
                self._reads.pop(key, None)

    def drop_matching(self, pattern: str) -> None:
        regex = glob_to_regex(pattern)
        with self._lock:
            self.memory.delete_pattern(pattern)
            if self.fallback is not None:
                self.fallback.delete_pattern(pattern)
            self._reads = {k: t for k, t in self._reads.items() if not regex.match(k)}

    def clear(self, *, fallback: bool = True) -> None:
        """Empty the copies; the fail-safe store too unless ``fallback`` is false.

        A lost subscription passes ``fallback=False``: messages may be missed from then
        on, so no copy is fresh any more, but nothing is known to be invalid either.
        """
        with self._lock:
            self.memory.clear()
            if fallback and self.fallback is not None:
                self.fallback.clear()
            self._reads.clear()
