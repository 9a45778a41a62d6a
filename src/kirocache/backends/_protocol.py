r"""The backend protocols: bytes in, bytes out, durations in float seconds.

A backend is any object with a handful of methods -- ``get``, ``get_many``, ``execute``,
``scan``, ``ping``, ``stats`` and ``close`` -- and it need not import kirocache to have
them. Everything else a cache does to a key is an :class:`Op` that ``execute`` runs, so a
new backend interprets one small language instead of writing twenty methods.
``Backend`` is the sync half and ``AsyncBackend`` the async half (the same names with an
``a`` prefix); a backend may have one half or both, and ``Cache`` needs nothing more.
Convenience methods (``set``, ``delete``, ``tag_add``, ...) for code that wants them are
derived from these by :func:`kirocache.backends.with_conveniences`.

Backends raise :class:`~kirocache.exceptions.BackendError` for faults of the store
(connection, timeout, read-only replica, out of memory, a command refused); the ``Cache``
above them decides whether to fail open.

Key conventions every backend follows (the conformance suite checks them):

* ``ttl`` values are float seconds > 0, or ``None`` for no expiry.
* a key's remaining TTL (the ``ttl`` op) is ``None`` for an absent key, ``math.inf`` for
  a key without expiry, and the remaining seconds otherwise.
* ``scan`` takes Redis glob patterns (``*``, ``?``, ``[abc]``, ``[^a]``, ``\\`` escapes)
  and never uses KEYS or FLUSHDB.
* counters written by ``incr`` are stored as ASCII decimal integers.
* a tag set (``tag_add``) is a key like any other: ``delete``, ``exists``, ``ttl``,
  ``expire``, ``persist`` and ``scan`` see it, and ``stats().keys`` counts it. Its TTL
  only grows: ``tag_add`` gives a new set ``ttl`` and extends an existing set's TTL to at
  least ``ttl`` (``None``: the set never expires). Reading a tag set with ``get`` raises
  ``BackendError`` (as Redis's WRONGTYPE does); ``get_many`` answers ``None`` for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple, Protocol, TypeAlias, runtime_checkable

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
    "delete_if",
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


class Op(NamedTuple):
    """One operation for ``execute``: a kind, a key, and the fields that kind reads.

    An immutable named tuple, not a frozen dataclass: every cache write builds one, and a
    frozen dataclass costs about 2.5 µs to build against 0.7 µs.

    Every op kind and its answer (the value in its slot of ``execute``'s list; a failing
    op's slot holds its exception instead, usually a ``BackendError``):

    | kind | what it does | answer |
    |---|---|---|
    | ``get`` | read ``key`` (a tag set fails) | ``bytes``, or ``None`` if absent |
    | ``set`` | store ``value`` for ``ttl``, replacing any TTL; with ``nx`` only if \
    absent | ``bool``: stored |
    | ``delete`` | remove ``key`` (a value or a tag set) | ``bool``: it existed |
    | ``delete_if`` | remove ``key`` only if it holds exactly ``expected``, atomically \
    (a lock's release, a corrupt entry's compare-and-delete) | ``bool``: removed |
    | ``exists`` | look without reading | ``bool`` |
    | ``expire`` | give an existing key the TTL ``ttl`` | ``bool``: the key existed |
    | ``persist`` | remove the TTL of ``key`` | ``bool``: a TTL was removed |
    | ``incr`` | add ``amount`` to the integer at ``key`` (0 if absent); ``ttl`` \
    applies on create only; fails on a non-integer or a 64-bit overflow | ``int``: the \
    new value |
    | ``ttl`` | the remaining time to live | ``None`` absent, ``math.inf`` no expiry, \
    else seconds |
    | ``set_if`` | store ``value`` (with ``ttl``) only if ``key`` holds exactly \
    ``expected`` (``None``: absent) and every ``guards`` pair holds, atomically | \
    ``bool``: stored |
    | ``swap`` | store ``value`` (with ``ttl``) and answer what was there, atomically \
    (``SET ... GET``) | ``bytes`` held before, or ``None`` |
    | ``tag_add`` | add ``members`` to the tag set at ``key``; its TTL becomes at \
    least ``ttl`` (``None``: no expiry); no members: nothing happens | ``True`` |
    | ``tag_members`` | the members of the tag set at ``key`` | sorted ``list[str]``, \
    ``[]`` if absent |
    | ``tag_remove`` | remove ``members``; an emptied set is deleted | ``int``: how many \
    were in the set |
    | ``tag_prune`` | remove each of ``members`` whose probe (the key at its place in \
    ``probes``) is gone: absent, or holding a tombstone (:data:`TOMBSTONE_PREFIX`); \
    atomically, so a probe stored again meanwhile keeps its member | ``int``: how \
    many were removed |

    ``set_if`` is the compare-and-set a computed value is written with, so a value loaded
    before an invalidation cannot land after it; ``swap`` writes tombstones. A tag op on a
    key holding a value, and a value op on a tag set, fail in their slot.

    Attributes:
        name: The op kind.
        key: The full key it works on.
        value: The bytes to store (``set``, ``set_if``, ``swap``).
        ttl: Seconds to live (``set``, ``set_if``, ``swap``, ``expire``, ``tag_add``, and
            ``incr`` when it creates the key).
        nx: Only store when the key is absent (``set``).
        amount: The increment (``incr``).
        expected: What the key must hold: these exact bytes, or ``None`` for "absent"
            (``set_if``); the bytes it must hold to be removed (``delete_if``).
        members: The tag set's members the op adds, removes or prunes.
        guards: More ``(key, expected)`` pairs ``set_if`` checks, like ``expected``,
            before it writes ``key``: all must hold.
        probes: The keys ``tag_prune`` checks, one per member.
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
    """The sync half of a backend: seven methods. Every method may raise ``BackendError``."""

    def get(self, key: str) -> bytes | None:
        """Return the bytes stored at ``key``, or ``None``; a tag set raises ``BackendError``."""
        ...

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys`` in order, ``None`` where absent or a tag set (one round trip)."""
        ...

    def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Run ``ops`` in order, in one round trip where the store allows; answer each.

        Each op's answer (see :class:`Op`) sits in its slot; a failing op puts its
        exception in its slot and the others still run. With ``transaction`` the ops run
        atomically (no other client sees a state between them); nothing is rolled back.
        An unknown op kind raises ``ValueError`` (kirocache's backends raise
        ``ConfigurationError``, a ``ValueError``) before any op runs.
        """
        ...

    def scan(self, pattern: str, count: int = 500) -> Iterator[str]:
        """Yield live keys matching the glob ``pattern``, about ``count`` per store call.

        As with Redis SCAN, keys present for the whole scan are yielded once; keys written
        during it may or may not be.
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

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async ``get_many``."""
        ...

    async def aexecute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Async ``execute``."""
        ...

    def ascan(self, pattern: str, count: int = 500) -> AsyncIterator[str]:
        """Async ``scan``: an async iterator of matching keys."""
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
