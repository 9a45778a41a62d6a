"""Convenience methods derived from ``execute`` and ``scan``: an adapter over a small backend.

``Cache`` needs only the small protocol. Code that wants ``set``, ``delete``, ``tag_add``,
``delete_pattern``, ... on any backend calls :func:`with_conveniences`: a backend that
already has them (every built-in backend) comes back as it is; one that only has the small
protocol comes back wrapped in an adapter that builds :class:`Op` lists for the wrapped
backend's ``execute``.

Why an adapter and not a base class to inherit: a backend then needs nothing from
kirocache to be complete (it is wrapped, not extended), the built-in backends keep their
own native methods and their single base, and behaviour is added by wrapping, as
``FaultyBackend`` does. The adapter has the half, or halves, its backend has, so
``isinstance(adapter, AsyncBackend)`` tells the truth about a sync-only backend.

Each convenience is one line per half over the shared op builders and answer readers
below, so the sync and async halves cannot drift.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Final, Protocol, cast, overload

from kirocache.backends._conveniences import (
    AsyncConvenientBackend,
    ConvenientBackend,
    FullBackend,
)
from kirocache.backends._protocol import AsyncBackend, Backend, BackendStats, Op, OpResult
from kirocache.exceptions import ConfigurationError

__all__ = ["AsyncConveniences", "Conveniences", "DualConveniences", "with_conveniences"]


class _BothHalves(Backend, AsyncBackend, Protocol):
    """A small backend with both halves."""


def _methods(protocol: type) -> tuple[str, ...]:
    return tuple(name for name in vars(protocol) if not name.startswith("_"))


# The method names each protocol adds, read off the protocols themselves. Checked with
# hasattr rather than isinstance, which is ten times slower on protocols this size.
_SYNC: Final = _methods(Backend)
_ASYNC: Final = _methods(AsyncBackend)
_SYNC_CONVENIENCES: Final = _methods(ConvenientBackend)
_ASYNC_CONVENIENCES: Final = _methods(AsyncConvenientBackend)


def _has(backend: object, names: tuple[str, ...]) -> bool:
    return all(hasattr(backend, name) for name in names)


# ---- op builders and answer readers, shared by both halves (no I/O) -------------------------


def _members(members: Sequence[str]) -> tuple[str, ...]:
    if isinstance(members, str):
        msg = "members must be a sequence of str, not a single str; wrap it in a list"
        raise TypeError(msg)
    return tuple(members)


def _sets(items: Mapping[str, bytes], ttl: float | None) -> list[Op]:
    return [Op("set", key, value, ttl=ttl) for key, value in items.items()]


def _deletes(keys: Sequence[str]) -> list[Op]:
    return [Op("delete", key) for key in keys]


def _answers(results: Sequence[OpResult]) -> Sequence[OpResult]:
    """``results`` when no op failed; otherwise the first op's error, raised."""
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def _answer(results: Sequence[OpResult]) -> Any:
    return _answers(results)[0]


def _count(results: Sequence[OpResult]) -> int:
    return sum(map(bool, _answers(results)))


# ---- the adapters ---------------------------------------------------------------------------


class _Adapter:
    """What every adapter holds: the wrapped backend."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


class Conveniences(_Adapter):
    """The sync convenience methods over a ``Backend``, derived from its ``execute``.

    Args:
        inner: The backend; its own ``get``, ``get_many``, ``execute``, ``scan``, ``ping``,
            ``stats`` and ``close`` are called as they are.
    """

    inner: Backend

    def get(self, key: str) -> bytes | None:
        """The inner backend's ``get``."""
        return self.inner.get(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The inner backend's ``get_many``."""
        return self.inner.get_many(keys)

    def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """The inner backend's ``execute``."""
        return self.inner.execute(ops, transaction=transaction)

    def scan(self, pattern: str, count: int = 500) -> Iterator[str]:
        """The inner backend's ``scan``."""
        return self.inner.scan(pattern, count)

    def ping(self) -> float:
        """The inner backend's ``ping``."""
        return self.inner.ping()

    def stats(self) -> BackendStats:
        """The inner backend's ``stats``."""
        return self.inner.stats()

    def close(self) -> None:
        """The inner backend's ``close``."""
        self.inner.close()

    def set(self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False) -> bool:
        """The ``set`` op: store ``value``; with ``nx`` only if absent."""
        return bool(_answer(self.inner.execute([Op("set", key, value, ttl=ttl, nx=nx)])))

    def delete(self, key: str) -> bool:
        """The ``delete`` op: whether ``key`` existed."""
        return bool(_answer(self.inner.execute([Op("delete", key)])))

    def exists(self, key: str) -> bool:
        """The ``exists`` op."""
        return bool(_answer(self.inner.execute([Op("exists", key)])))

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """``set`` ops for every item, in one transaction."""
        if items:
            _answers(self.inner.execute(_sets(items, ttl), transaction=True))

    def delete_many(self, keys: Sequence[str]) -> int:
        """``delete`` ops for ``keys``; how many existed."""
        return _count(self.inner.execute(_deletes(keys))) if keys else 0

    def ttl(self, key: str) -> float | None:
        """The ``ttl`` op: ``None`` absent, ``math.inf`` without expiry, else seconds."""
        return cast("float | None", _answer(self.inner.execute([Op("ttl", key)])))

    def expire(self, key: str, ttl: float) -> bool:
        """The ``expire`` op: whether the key existed."""
        return bool(_answer(self.inner.execute([Op("expire", key, ttl=ttl)])))

    def persist(self, key: str) -> bool:
        """The ``persist`` op: whether a TTL was removed."""
        return bool(_answer(self.inner.execute([Op("persist", key)])))

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """The ``incr`` op: the new value."""
        return cast("int", _answer(self.inner.execute([Op("incr", key, amount=amount, ttl=ttl)])))

    def delete_pattern(self, pattern: str, batch_size: int = 500) -> int:
        """``scan`` the matches and delete them ``batch_size`` at a time; how many went."""
        deleted, page = 0, []
        for key in self.inner.scan(pattern, batch_size):
            page.append(key)
            if len(page) >= batch_size:
                deleted += self.delete_many(page)
                page = []
        return deleted + self.delete_many(page)

    def tag_add(self, key: str, members: Sequence[str], ttl: float | None) -> None:
        """The ``tag_add`` op."""
        _answer(self.inner.execute([Op("tag_add", key, ttl=ttl, members=_members(members))]))

    def tag_members(self, key: str) -> list[str]:
        """The ``tag_members`` op: sorted members, ``[]`` if absent."""
        return cast("list[str]", _answer(self.inner.execute([Op("tag_members", key)])))

    def tag_remove(self, key: str, members: Sequence[str]) -> int:
        """The ``tag_remove`` op: how many were in the set."""
        op = Op("tag_remove", key, members=_members(members))
        return cast("int", _answer(self.inner.execute([op])))

    def delete_if_equals(self, key: str, value: bytes) -> bool:
        """The ``delete_if`` op: whether ``key`` held ``value`` and was deleted."""
        return bool(_answer(self.inner.execute([Op("delete_if", key, expected=value)])))


class AsyncConveniences(_Adapter):
    """The async convenience methods over an ``AsyncBackend``: ``Conveniences``' twin.

    Args:
        inner: The backend; its own ``a``-prefixed small-protocol methods are called as
            they are.
    """

    inner: AsyncBackend

    async def aget(self, key: str) -> bytes | None:
        """The inner backend's ``aget``."""
        return await self.inner.aget(key)

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The inner backend's ``aget_many``."""
        return await self.inner.aget_many(keys)

    async def aexecute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """The inner backend's ``aexecute``."""
        return await self.inner.aexecute(ops, transaction=transaction)

    def ascan(self, pattern: str, count: int = 500) -> AsyncIterator[str]:
        """The inner backend's ``ascan``."""
        return self.inner.ascan(pattern, count)

    async def aping(self) -> float:
        """The inner backend's ``aping``."""
        return await self.inner.aping()

    async def astats(self) -> BackendStats:
        """The inner backend's ``astats``."""
        return await self.inner.astats()

    async def aclose(self) -> None:
        """The inner backend's ``aclose``."""
        await self.inner.aclose()

    async def aset(
        self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False
    ) -> bool:
        """Async ``set``."""
        return bool(_answer(await self.inner.aexecute([Op("set", key, value, ttl=ttl, nx=nx)])))

    async def adelete(self, key: str) -> bool:
        """Async ``delete``."""
        return bool(_answer(await self.inner.aexecute([Op("delete", key)])))

    async def aexists(self, key: str) -> bool:
        """Async ``exists``."""
        return bool(_answer(await self.inner.aexecute([Op("exists", key)])))

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Async ``set_many``."""
        if items:
            _answers(await self.inner.aexecute(_sets(items, ttl), transaction=True))

    async def adelete_many(self, keys: Sequence[str]) -> int:
        """Async ``delete_many``."""
        return _count(await self.inner.aexecute(_deletes(keys))) if keys else 0

    async def attl(self, key: str) -> float | None:
        """Async ``ttl``."""
        return cast("float | None", _answer(await self.inner.aexecute([Op("ttl", key)])))

    async def aexpire(self, key: str, ttl: float) -> bool:
        """Async ``expire``."""
        return bool(_answer(await self.inner.aexecute([Op("expire", key, ttl=ttl)])))

    async def apersist(self, key: str) -> bool:
        """Async ``persist``."""
        return bool(_answer(await self.inner.aexecute([Op("persist", key)])))

    async def aincr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Async ``incr``."""
        op = Op("incr", key, amount=amount, ttl=ttl)
        return cast("int", _answer(await self.inner.aexecute([op])))

    async def adelete_pattern(self, pattern: str, batch_size: int = 500) -> int:
        """Async ``delete_pattern``."""
        deleted, page = 0, []
        async for key in self.inner.ascan(pattern, batch_size):
            page.append(key)
            if len(page) >= batch_size:
                deleted += await self.adelete_many(page)
                page = []
        return deleted + await self.adelete_many(page)

    async def atag_add(self, key: str, members: Sequence[str], ttl: float | None) -> None:
        """Async ``tag_add``."""
        op = Op("tag_add", key, ttl=ttl, members=_members(members))
        _answer(await self.inner.aexecute([op]))

    async def atag_members(self, key: str) -> list[str]:
        """Async ``tag_members``."""
        return cast("list[str]", _answer(await self.inner.aexecute([Op("tag_members", key)])))

    async def atag_remove(self, key: str, members: Sequence[str]) -> int:
        """Async ``tag_remove``."""
        op = Op("tag_remove", key, members=_members(members))
        return cast("int", _answer(await self.inner.aexecute([op])))

    async def adelete_if_equals(self, key: str, value: bytes) -> bool:
        """Async ``delete_if_equals``."""
        op = Op("delete_if", key, expected=value)
        return bool(_answer(await self.inner.aexecute([op])))


class DualConveniences(Conveniences, AsyncConveniences):
    """Both halves of conveniences over a backend that has both small halves.

    The two halves share nothing but the wrapped backend and override nothing, so the
    order of the bases does not matter.
    """

    inner: _BothHalves


@overload
def with_conveniences(backend: _BothHalves) -> FullBackend: ...
@overload
def with_conveniences(backend: Backend) -> ConvenientBackend: ...
@overload
def with_conveniences(backend: AsyncBackend) -> AsyncConvenientBackend: ...
def with_conveniences(
    backend: Backend | AsyncBackend,
) -> ConvenientBackend | AsyncConvenientBackend:
    """``backend`` with the convenience methods: as it is if it has them, else wrapped.

    A backend that has the convenience methods of each half it implements is returned
    unchanged, so the built-in backends keep their native (faster) methods. Otherwise the
    result is an adapter with the same halves as ``backend`` whose conveniences are
    derived from its ``execute`` and ``scan`` (see :class:`Conveniences`).

    Args:
        backend: Any object with the sync half (``Backend``), the async half
            (``AsyncBackend``) or both.

    Returns:
        A backend with the convenience methods of the halves ``backend`` has.

    Raises:
        ConfigurationError: ``backend`` has neither half of the protocol.

    Examples:
        >>> from kirocache.backends import MemoryBackend
        >>> memory = MemoryBackend()
        >>> with_conveniences(memory) is memory
        True
    """
    has_sync = _has(backend, _SYNC)
    has_async = _has(backend, _ASYNC)
    sync_done = not has_sync or _has(backend, _SYNC_CONVENIENCES)
    async_done = not has_async or _has(backend, _ASYNC_CONVENIENCES)
    if has_sync and has_async:
        return cast(
            "FullBackend", backend if sync_done and async_done else DualConveniences(backend)
        )
    if has_sync:
        return cast("ConvenientBackend", backend if sync_done else Conveniences(backend))
    if has_async:
        return cast("AsyncConvenientBackend", backend if async_done else AsyncConveniences(backend))
    msg = (
        f"{type(backend).__name__} is not a kirocache backend: it needs the methods of "
        "kirocache.backends.Backend (get, get_many, execute, scan, ping, stats, close) "
        "and/or AsyncBackend (the same with an 'a' prefix)"
    )
    raise ConfigurationError(msg)
