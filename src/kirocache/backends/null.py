"""NullBackend: a backend that stores nothing, so every read is a miss and nothing fails.

Switch caching off without touching the code that uses it: for debugging ("is the cache
the problem?"), for tests of the uncached path, or for a deployment that must run without
a cache for a while. ``Cache.from_url("null://")`` and ``REDIS_URL=null://`` select it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence

from kirocache.backends._protocol import BackendStats, Op, OpResult
from kirocache.exceptions import ConfigurationError

__all__ = ["NullBackend"]

# What each op kind answers when nothing is ever stored: writes report success (a write
# to a null cache did what the caller asked: it is gone as soon as it is read), reads and
# removals find nothing.
_ANSWERS: dict[str, OpResult] = {
    "get": None,
    "set": True,
    "delete": False,
    "delete_if": False,
    "exists": False,
    "expire": False,
    "ttl": None,
    "persist": False,
    "set_if": True,
    "swap": None,
    "tag_add": True,
    "tag_remove": 0,
    "tag_prune": 0,
}


def _answer(op: Op) -> OpResult:
    if op.name == "incr":
        return op.amount  # counted from an absent key, and forgotten
    if op.name == "tag_members":
        return []
    try:
        return _ANSWERS[op.name]
    except KeyError:
        msg = f"unknown op kind {op.name!r}"
        raise ConfigurationError(msg) from None


class NullBackend:
    """A backend that keeps nothing: reads miss, writes succeed and vanish, nothing raises.

    It serves sync and async code alike and passes every call in constant time, with no
    I/O, so a ``Cache`` over it behaves as a cache that is always cold: every ``@cached``
    call runs its function, every invalidation succeeds with nothing removed.

    Examples:
        >>> from kirocache import Cache
        >>> cache = Cache(NullBackend())
        >>> cache.set("k", 1)
        True
        >>> cache.get("k") is None
        True
    """

    def get(self, key: str) -> bytes | None:
        """Always ``None``: nothing is stored."""
        return None

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """``None`` for every key."""
        return [None] * len(keys)

    def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Answer each op as a store that forgets every write at once would.

        Raises:
            ConfigurationError: An op kind is unknown (checked before any op "runs").
        """
        return [_answer(op) for op in ops]

    def scan(self, pattern: str, count: int = 500) -> Iterator[str]:
        """No key matches: nothing is stored."""
        return iter(())

    def ping(self) -> float:
        """0.0: there is nothing to reach."""
        return 0.0

    def stats(self) -> BackendStats:
        """Zero keys and no memory."""
        return BackendStats(backend="null", keys=0, used_memory=0)

    def close(self) -> None:
        """Nothing to release."""

    async def aget(self, key: str) -> bytes | None:
        """Async ``get``."""
        return None

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async ``get_many``."""
        return [None] * len(keys)

    async def aexecute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Async ``execute``."""
        return self.execute(ops, transaction=transaction)

    async def ascan(self, pattern: str, count: int = 500) -> AsyncIterator[str]:
        """Async ``scan``: no key."""
        empty: tuple[str, ...] = ()
        for key in empty:  # an async generator that yields nothing
            yield key

    async def aping(self) -> float:
        """Async ``ping``."""
        return 0.0

    async def astats(self) -> BackendStats:
        """Async ``stats``."""
        return self.stats()

    async def aclose(self) -> None:
        """Async ``close``."""

    def __repr__(self) -> str:
        return "NullBackend()"

    @classmethod
    def from_url(cls, url: str = "null://") -> NullBackend:
        """The backend ``null://`` names (it takes no options).

        Raises:
            ConfigurationError: The URL carries options: a null backend has none.
        """
        if url.rstrip("/") not in ("null:", "null:/"):
            msg = "null:// takes no host, path or options: it stores nothing"
            raise ConfigurationError(msg)
        return cls()
