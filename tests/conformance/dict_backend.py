"""A third-party backend in miniature: the small sync protocol over a dict, no kirocache import.

It has ``get``, ``get_many``, ``execute``, ``scan``, ``ping``, ``stats`` and ``close`` and
nothing else: ``kirocache.backends.with_conveniences`` derives the rest. The two kirocache
names a backend's answers must use -- the error it raises for a failed op and the stats
record -- are handed in, so this module imports nothing from kirocache (a real package
would import ``kirocache.exceptions.BackendError`` and ``kirocache.backends.BackendStats``).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

# What the cache's tombstones start with (documented with the tag_prune op).
TOMBSTONE_PREFIX = b"\xc5\xfftomb:"
_INT64 = 2**63
_COUNTER = re.compile(rb"-?[0-9]+")


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A Redis glob (``*``, ``?``, ``[a-z]``, ``[^a]``, ``\\`` escapes) as a regex."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 2 if pattern[i + 1 : i + 2] == "^" else i + 1)
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append(("[^" if negate else "[") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


class DictBackend:
    """A sync-only backend: a dict of ``(value, deadline)`` under one lock.

    Args:
        error: The exception class of a failed op (kirocache's ``BackendError``).
        stats: What ``stats()`` builds (kirocache's ``BackendStats``).
    """

    def __init__(self, *, error: type[Exception], stats: Callable[..., Any]) -> None:
        self._error = error
        self._make_stats = stats
        self._lock = threading.Lock()
        self._data: dict[str, tuple[Any, float]] = {}

    # -- the small protocol ----------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The bytes at ``key``, or ``None``; a tag set fails."""
        with self._lock:
            return self._bytes(key, time.monotonic())

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The bytes at each key, ``None`` where absent or a tag set."""
        now = time.monotonic()
        with self._lock:
            found = [self._live(key, now) for key in keys]
        return [v[0] if v is not None and isinstance(v[0], bytes) else None for v in found]

    def execute(self, ops: Sequence[Any], *, transaction: bool = False) -> list[Any]:
        """Run ``ops`` under one lock hold (so every call is atomic); answer each."""
        for op in ops:
            if not hasattr(self, "_op_" + op.name):
                msg = f"unknown op kind {op.name!r}"
                raise ValueError(msg)
        now = time.monotonic()
        results: list[Any] = []
        with self._lock:
            for op in ops:
                try:
                    results.append(getattr(self, "_op_" + op.name)(op, now))
                except self._error as exc:  # noqa: PERF203 -- a failed op answers in its slot
                    results.append(exc)
        return results

    def scan(self, pattern: str, count: int = 500) -> Iterator[str]:
        """Yield the live keys matching the glob ``pattern``."""
        regex = glob_regex(pattern)
        with self._lock:
            keys = [key for key in self._data if regex.match(key)]
        for key in keys:
            with self._lock:
                live = self._live(key, time.monotonic()) is not None
            if live:
                yield key

    def ping(self) -> float:
        """Take the lock once; how long that took."""
        started = time.perf_counter()
        with self._lock:
            pass
        return time.perf_counter() - started

    def stats(self) -> Any:
        """The key count."""
        with self._lock:
            return self._make_stats(backend="dict", keys=len(self._data))

    def close(self) -> None:
        """Nothing to release."""

    # -- state, with the lock held ---------------------------------------------------------

    def _live(self, key: str, now: float) -> tuple[Any, float] | None:
        entry = self._data.get(key)
        if entry is not None and entry[1] <= now:
            del self._data[key]
            return None
        return entry

    def _bytes(self, key: str, now: float) -> bytes | None:
        entry = self._live(key, now)
        if entry is not None and not isinstance(entry[0], bytes):
            msg = f"{key!r} holds a tag set, not a value"
            raise self._error(msg)
        return None if entry is None else entry[0]

    def _tags(self, key: str, now: float) -> set[str]:
        entry = self._live(key, now)
        if entry is not None and not isinstance(entry[0], set):
            msg = f"{key!r} holds a value, not a tag set"
            raise self._error(msg)
        return set() if entry is None else entry[0]

    @staticmethod
    def _deadline(now: float, ttl: float | None) -> float:
        return math.inf if ttl is None else now + ttl

    # -- one method per op kind ------------------------------------------------------------

    def _op_get(self, op: Any, now: float) -> bytes | None:
        return self._bytes(op.key, now)

    def _op_set(self, op: Any, now: float) -> bool:
        if op.nx and self._live(op.key, now) is not None:
            return False
        self._data[op.key] = (bytes(op.value), self._deadline(now, op.ttl))
        return True

    def _op_delete(self, op: Any, now: float) -> bool:
        if self._live(op.key, now) is None:
            return False
        del self._data[op.key]
        return True

    def _op_delete_if(self, op: Any, now: float) -> bool:
        if self._bytes(op.key, now) != op.expected:
            return False
        del self._data[op.key]
        return True

    def _op_exists(self, op: Any, now: float) -> bool:
        return self._live(op.key, now) is not None

    def _op_expire(self, op: Any, now: float) -> bool:
        entry = self._live(op.key, now)
        if entry is not None:
            self._data[op.key] = (entry[0], self._deadline(now, op.ttl))
        return entry is not None

    def _op_persist(self, op: Any, now: float) -> bool:
        entry = self._live(op.key, now)
        if entry is None or entry[1] == math.inf:
            return False
        self._data[op.key] = (entry[0], math.inf)
        return True

    def _op_incr(self, op: Any, now: float) -> int:
        held = self._bytes(op.key, now)
        if held is not None and not _COUNTER.fullmatch(held):
            msg = f"{op.key!r} does not hold an integer"
            raise self._error(msg)
        result: int = (0 if held is None else int(held)) + op.amount
        if not -_INT64 <= result < _INT64:
            msg = f"incr of {op.key!r} overflows"
            raise self._error(msg)
        deadline = self._deadline(now, op.ttl) if held is None else self._data[op.key][1]
        self._data[op.key] = (str(result).encode("ascii"), deadline)
        return result

    def _op_ttl(self, op: Any, now: float) -> float | None:
        entry = self._live(op.key, now)
        return None if entry is None else entry[1] - now if entry[1] != math.inf else math.inf

    def _op_set_if(self, op: Any, now: float) -> bool:
        for key, expected in ((op.key, op.expected), *op.guards):
            if self._bytes(key, now) != expected:
                return False
        return self._op_set(op, now)

    def _op_swap(self, op: Any, now: float) -> bytes | None:
        held = self._bytes(op.key, now)
        self._op_set(op, now)
        return held

    def _op_tag_add(self, op: Any, now: float) -> bool:
        if op.members:
            entry = self._live(op.key, now)
            tags = self._tags(op.key, now)
            deadline = self._deadline(now, op.ttl)
            if entry is not None:
                deadline = max(deadline, entry[1])
            self._data[op.key] = (tags | set(op.members), deadline)
        return True

    def _op_tag_members(self, op: Any, now: float) -> list[str]:
        return sorted(self._tags(op.key, now))

    def _op_tag_remove(self, op: Any, now: float) -> int:
        return self._remove_tags(op.key, set(op.members), now)

    def _op_tag_prune(self, op: Any, now: float) -> int:
        if len(op.probes) != len(op.members):
            msg = "tag_prune needs one probe key per member"
            raise ValueError(msg)
        dead = set()
        for member, probe in zip(op.members, op.probes, strict=True):
            entry = self._live(probe, now)
            held = None if entry is None else entry[0]
            if held is None or (isinstance(held, bytes) and held.startswith(TOMBSTONE_PREFIX)):
                dead.add(member)
        return self._remove_tags(op.key, dead, now)

    def _remove_tags(self, key: str, members: set[str], now: float) -> int:
        tags = self._tags(key, now)
        removed = tags & members
        tags -= removed
        if not tags and key in self._data:
            del self._data[key]
        return len(removed)


class AsyncDictBackend:
    """An async-only backend: ``DictBackend``'s small protocol behind ``a`` methods.

    Args:
        error: The exception class of a failed op (kirocache's ``BackendError``).
        stats: What ``astats()`` builds (kirocache's ``BackendStats``).
    """

    def __init__(self, *, error: type[Exception], stats: Callable[..., Any]) -> None:
        self._dict = DictBackend(error=error, stats=stats)

    async def aget(self, key: str) -> bytes | None:
        """``DictBackend.get``."""
        return self._dict.get(key)

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """``DictBackend.get_many``."""
        return self._dict.get_many(keys)

    async def aexecute(self, ops: Sequence[Any], *, transaction: bool = False) -> list[Any]:
        """``DictBackend.execute``."""
        return self._dict.execute(ops, transaction=transaction)

    async def ascan(self, pattern: str, count: int = 500) -> AsyncIterator[str]:
        """``DictBackend.scan``."""
        for key in self._dict.scan(pattern, count):
            yield key

    async def aping(self) -> float:
        """``DictBackend.ping``."""
        return self._dict.ping()

    async def astats(self) -> Any:
        """``DictBackend.stats``."""
        return self._dict.stats()

    async def aclose(self) -> None:
        """Nothing to release."""
