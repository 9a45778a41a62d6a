r"""The backend protocols: bytes in, bytes out, durations in float seconds.

A backend is any object with these methods; it need not import kirocache. ``Backend`` is
the sync half and ``AsyncBackend`` the async half (the same names with an ``a`` prefix), so
one object can serve both, as ``MemoryBackend`` and ``RedisBackend`` do. Backends raise
:class:`~kirocache.exceptions.BackendError` for faults of the store (connection, timeout,
read-only replica, out of memory); the ``Cache`` above them decides whether to fail open.

Key conventions every backend follows (the conformance suite checks them):

* ``ttl`` arguments are float seconds > 0, or ``None`` for no expiry.
* ``ttl(key)`` answers ``None`` for an absent key, ``math.inf`` for a key without expiry,
  and the remaining seconds otherwise.
* ``scan``/``delete_pattern`` take Redis glob patterns (``*``, ``?``, ``[abc]``, ``[^a]``,
  ``\\`` escapes) and never use KEYS or FLUSHDB.
* counters written by ``incr`` are stored as ASCII decimal integers.
* a tag set (``tag_add``) is a key like any other: ``delete``, ``delete_many``,
  ``delete_pattern``, ``exists``, ``ttl``, ``expire``, ``persist`` and ``scan`` see it, and
  ``stats().keys`` counts it. Its TTL only grows: ``tag_add`` gives a new set ``ttl`` and
  extends an existing set's TTL to at least ``ttl`` (``None``: the set never expires).
  Reading a tag set with ``get`` raises ``BackendError``, as Redis's WRONGTYPE does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, TypeAlias, runtime_checkable

__all__ = [
    "TOMBSTONE_PREFIX",
    "AsyncBackend",
    "Backend",
    "BackendStats",
    "Op",
    "OpName",
    "OpResult",
]

OpName: TypeAlias = Literal[
    "get",
    "set",
    "delete",
    "exists",
    "expire",
    "incr",
    "ttl",
    "persist",
    "set_if",
    "swap",
    "tag_add",
    "tag_members",
    "tag_remove",
    "tag_prune",
]

TOMBSTONE_PREFIX: Final = b"\xc5\xfftomb:"
"""How an invalidated key's value starts (the ``Cache`` writes such tombstones with
``swap``); ``tag_prune`` counts a key holding one as gone."""


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a pipeline (see ``Backend.execute``).

    Attributes:
        name: The operation.
        key: The full key it works on.
        value: The bytes to store (``set``).
        ttl: Seconds to live (``set``, ``expire``, ``incr`` when it creates the key).
        nx: Only store when the key is absent (``set``).
        amount: The increment (``incr``).
        expected: What the key must hold for ``set_if`` to store: these exact bytes, or
            ``None`` for "absent".
        members: The members ``tag_add`` adds to the set at ``key``.
        guards: More ``(key, expected)`` pairs ``set_if`` checks, like ``expected``,
            before it writes ``key``: all must hold.
        probes: The keys ``tag_prune`` checks, one per member.

    The ops beyond the plain methods:

    * ``set_if``: store ``value`` (with ``ttl``) only if the key holds exactly
      ``expected`` (``None``: only if absent), atomically; answers whether it stored. It is
      the compare-and-set a computed value is written with, so a value loaded before an
      invalidation cannot land after it.
    * ``swap``: store ``value`` (with ``ttl``) and answer what the key held before
      (``None`` if absent), atomically (Redis ``SET ... GET``).
    * ``tag_add``: :meth:`Backend.tag_add` as an op, so a value and its index entry can
      share one pipeline or transaction; answers ``True``.
    * ``tag_members``: :meth:`Backend.tag_members` as an op (a sorted ``list[str]``).
    * ``tag_remove``: :meth:`Backend.tag_remove` as an op (how many were in the set).
    * ``tag_prune``: remove each of ``members`` from the set at ``key`` whose probe (the
      key at the same place in ``probes``) is gone: absent, or holding a tombstone
      (:data:`TOMBSTONE_PREFIX`). One atomic step, so a probe key stored again meanwhile
      keeps its member. Answers how many were removed.
    """

    name: OpName
    key: str
    value: bytes = b""
    ttl: float | None = None
    nx: bool = False
    amount: int = 1
    expected: bytes | None = None
    members: tuple[str, ...] = ()
    guards: tuple[tuple[str, bytes | None], ...] = ()
    probes: tuple[str, ...] = ()


OpResult: TypeAlias = "bytes | bool | int | float | list[str] | BaseException | None"
"""What one pipelined op answers: the same as its method, or the exception it raised."""


@dataclass(frozen=True, slots=True)
class BackendStats:
    """What a backend can tell about itself; fields it cannot know stay ``None``.

    Attributes:
        backend: A short name of the backend kind (``"memory"``, ``"redis"``).
        keys: Number of keys held (in the cache's database).
        used_memory: Bytes in use.
        max_memory: The configured memory limit in bytes (``None`` or 0: unlimited).
        connected_clients: Clients connected to the server.
        evictions: Entries evicted for lack of room since start.
        expired: Entries removed because their TTL passed, since start.
        hits: Key lookups that found a value, since start.
        misses: Key lookups that found nothing, since start.
        uptime_seconds: Seconds since the store started.
        extra: Anything else the backend wants to report.
    """

    backend: str
    keys: int | None = None
    used_memory: int | None = None
    max_memory: int | None = None
    connected_clients: int | None = None
    evictions: int | None = None
    expired: int | None = None
    hits: int | None = None
    misses: int | None = None
    uptime_seconds: float | None = None
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def memory_ratio(self) -> float | None:
        """``used_memory / max_memory``, or ``None`` when either is unknown or unlimited."""
        if not self.used_memory or not self.max_memory:
            return None
        return self.used_memory / self.max_memory


@runtime_checkable
class Backend(Protocol):
    """The sync half of a backend. Every method may raise ``BackendError``."""

    def get(self, key: str) -> bytes | None:
        """Return the bytes stored at ``key``, or ``None``."""
        ...

    def set(self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False) -> bool:
        """Store ``value``; with ``nx`` only if absent. Returns whether it was stored."""
        ...

    def delete(self, key: str) -> bool:
        """Remove ``key``; returns whether it existed."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a live value."""
        ...

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys`` in order, ``None`` where absent (one round trip)."""
        ...

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Store every item with the same TTL (one round trip)."""
        ...

    def delete_many(self, keys: Sequence[str]) -> int:
        """Remove ``keys``; returns how many existed (one round trip)."""
        ...

    def ttl(self, key: str) -> float | None:
        """Seconds left: ``None`` if absent, ``math.inf`` if it never expires."""
        ...

    def expire(self, key: str, ttl: float) -> bool:
        """Set a new TTL on an existing key; returns whether the key existed."""
        ...

    def persist(self, key: str) -> bool:
        """Remove the TTL of ``key``; returns whether a TTL was removed."""
        ...

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` to the integer at ``key`` (0 if absent); ``ttl`` applies on create."""
        ...

    def scan(self, pattern: str, count: int = 500) -> Iterator[str]:
        """Yield keys matching the glob ``pattern``, ``count`` per server call."""
        ...

    def delete_pattern(self, pattern: str, batch_size: int = 500) -> int:
        """Delete keys matching ``pattern`` in batches (SCAN + UNLINK); returns the count."""
        ...

    def tag_add(self, key: str, members: Sequence[str], ttl: float | None) -> None:
        """Add ``members`` to the set at ``key``; it then lives at least ``ttl`` seconds.

        A new set gets ``ttl``; an existing set's TTL is never shortened, and ``None``
        makes the set never expire. No members: nothing happens. Raises ``BackendError``
        when ``key`` holds a value that is not a tag set.
        """
        ...

    def tag_members(self, key: str) -> list[str]:
        """The members of the set at ``key``, sorted; ``[]`` if absent."""
        ...

    def tag_remove(self, key: str, members: Sequence[str]) -> int:
        """Remove ``members`` from the set at ``key``; returns how many were in it.

        A set left empty is deleted, as Redis deletes empty sets.
        """
        ...

    def delete_if_equals(self, key: str, value: bytes) -> bool:
        """Delete ``key`` only if it holds ``value``, atomically; returns whether it did.

        This is a lock's release: a holder whose lock expired and was taken by another
        holder (another value) leaves that lock alone.
        """
        ...

    def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Run ``ops`` in one round trip; with ``transaction`` atomically.

        Without a transaction a failing op puts its exception in its slot and the others
        still run.
        """
        ...

    def ping(self) -> float:
        """Round trip to the store; returns its latency in seconds."""
        ...

    def stats(self) -> BackendStats:
        """Memory, clients, keys and the like (see ``BackendStats``)."""
        ...

    def close(self) -> None:
        """Release connections and threads; the backend may be used again afterwards."""
        ...


@runtime_checkable
class AsyncBackend(Protocol):
    """The async half of a backend: ``Backend``'s methods with an ``a`` prefix."""

    async def aget(self, key: str) -> bytes | None:
        """Async ``get``."""
        ...

    async def aset(
        self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False
    ) -> bool:
        """Async ``set``."""
        ...

    async def adelete(self, key: str) -> bool:
        """Async ``delete``."""
        ...

    async def aexists(self, key: str) -> bool:
        """Async ``exists``."""
        ...

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async ``get_many``."""
        ...

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Async ``set_many``."""
        ...

    async def adelete_many(self, keys: Sequence[str]) -> int:
        """Async ``delete_many``."""
        ...

    async def attl(self, key: str) -> float | None:
        """Async ``ttl``."""
        ...

    async def aexpire(self, key: str, ttl: float) -> bool:
        """Async ``expire``."""
        ...

    async def apersist(self, key: str) -> bool:
        """Async ``persist``."""
        ...

    async def aincr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Async ``incr``."""
        ...

    def ascan(self, pattern: str, count: int = 500) -> AsyncIterator[str]:
        """Async ``scan``: an async iterator of matching keys."""
        ...

    async def adelete_pattern(self, pattern: str, batch_size: int = 500) -> int:
        """Async ``delete_pattern``."""
        ...

    async def atag_add(self, key: str, members: Sequence[str], ttl: float | None) -> None:
        """Async ``tag_add``."""
        ...

    async def atag_members(self, key: str) -> list[str]:
        """Async ``tag_members``."""
        ...

    async def atag_remove(self, key: str, members: Sequence[str]) -> int:
        """Async ``tag_remove``."""
        ...

    async def adelete_if_equals(self, key: str, value: bytes) -> bool:
        """Async ``delete_if_equals``."""
        ...

    async def aexecute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Async ``execute``."""
        ...

    async def aping(self) -> float:
        """Async ``ping``."""
        ...

    async def astats(self) -> BackendStats:
        """Async ``stats``."""
        ...

    async def aclose(self) -> None:
        """Async ``close``: releases the connections of the running event loop."""
        ...
