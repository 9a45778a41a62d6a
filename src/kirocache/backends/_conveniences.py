"""The convenience methods over the small protocol (``set``, ``tag_add``, ...), as protocols.

``ConvenientBackend`` is ``Backend`` plus one method per common op (``set``, ``delete``,
``tag_add``, ...) and the batch helpers (``set_many``, ``delete_many``,
``delete_pattern``); ``AsyncConvenientBackend`` is its async half, and ``FullBackend``
both. The built-in backends have these methods natively;
:func:`kirocache.backends.with_conveniences` derives them from ``execute`` and ``scan``
for a backend that only has the small protocol. Each method answers what its op answers
(see :class:`~kirocache.backends.Op`) and raises the op's error instead of returning it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from kirocache.backends._protocol import AsyncBackend, Backend

__all__ = ["AsyncConvenientBackend", "ConvenientBackend", "FullBackend"]


@runtime_checkable
class ConvenientBackend(Backend, Protocol):
    """``Backend`` with the convenience methods. Every method may raise ``BackendError``."""

    def set(self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False) -> bool:
        """Store ``value``; with ``nx`` only if absent. Returns whether it was stored."""
        ...

    def delete(self, key: str) -> bool:
        """Remove ``key``; returns whether it existed."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a live value."""
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

    def delete_pattern(self, pattern: str, batch_size: int = 500) -> int:
        """Delete keys matching ``pattern`` in batches (scan + delete); returns the count."""
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


@runtime_checkable
class AsyncConvenientBackend(AsyncBackend, Protocol):
    """``AsyncBackend`` with the convenience methods: ``ConvenientBackend``'s, ``a``-prefixed."""

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


@runtime_checkable
class FullBackend(ConvenientBackend, AsyncConvenientBackend, Protocol):
    """Both halves with the convenience methods, as every built-in backend has them."""
