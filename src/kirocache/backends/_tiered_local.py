"""TieredBackend's local layer: copies of what was read, and the reads still in flight."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from kirocache.backends._glob import glob_to_regex
from kirocache.backends.memory import MemoryBackend
from kirocache.exceptions import KirocacheError

__all__ = ["Local", "copy_ttl"]

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
    """A ``MemoryBackend`` of copies, and the reads in flight that may add to it.

    A read notes its keys with a ticket before it asks the remote, and its copies land
    only if nothing dropped those keys in the meantime. So an invalidation that arrives
    while a read is on the wire (the read may have seen the old value) wins over it.
    """

    def __init__(self, memory: MemoryBackend, local_ttl: float) -> None:
        self.memory = memory
        self._local_ttl = local_ttl
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
        self, ticket: int, keys: Iterable[str], copies: Iterable[tuple[str, bytes, float]]
    ) -> None:
        with self._lock:
            for key, value, ttl in copies:
                if self._reads.get(key) == ticket:
                    # A value too large for the layer just stays remote.
                    with contextlib.suppress(KirocacheError):
                        self.memory.set(key, value, ttl)
            for key in keys:
                if self._reads.get(key) == ticket:
                    del self._reads[key]

    @contextlib.contextmanager
    def filling(self, keys: Sequence[str]) -> Iterator[list[tuple[str, bytes, float]]]:
        """Note ``keys`` as being read; the copies the block adds land if no drop came first."""
        ticket = self.begin(keys)
        copies: list[tuple[str, bytes, float]] = []
        try:
            yield copies
        finally:
            self.settle(ticket, keys, copies)

    def copies(
        self, keys: Sequence[str], values: Sequence[object], lefts: Sequence[object]
    ) -> list[tuple[str, bytes, float]]:
        """The copies worth keeping of what a read found, each with its local TTL."""
        copies = []
        for key, value, left in zip(keys, values, lefts, strict=True):
            if isinstance(value, bytes) and isinstance(left, float):
                ttl = copy_ttl(value, left, self._local_ttl)
                if ttl is not None:
                    copies.append((key, value, ttl))
        return copies

    def figures(self) -> dict[str, object]:
        """The layer's size and counts, for the backend's stats."""
        local = self.memory.stats()
        return {
            "local_keys": local.keys,
            "local_used_memory": local.used_memory,
            "local_hits": local.hits,
            "local_misses": local.misses,
            "local_evictions": local.evictions,
        }

    def drop(self, keys: Sequence[str]) -> None:
        with self._lock:
            self.memory.delete_many(keys)
            for key in keys:
                self._reads.pop(key, None)

    def drop_matching(self, pattern: str) -> None:
        regex = glob_to_regex(pattern)
        with self._lock:
            self.memory.delete_pattern(pattern)
            self._reads = {k: t for k, t in self._reads.items() if not regex.match(k)}

    def clear(self) -> None:
        with self._lock:
            self.memory.clear()
            self._reads.clear()
