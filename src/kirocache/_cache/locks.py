"""The public lock of a ``Cache``: ``with cache.lock("name"):``, across threads and processes."""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import TYPE_CHECKING

from typing_extensions import Self

from kirocache.backends import DistributedLock
from kirocache.exceptions import LockNotAcquiredError

if TYPE_CHECKING:
    from kirocache.backends import AsyncBackend, Backend

__all__ = ["CacheLock"]


class CacheLock:
    """A named lock in the cache's backend, held as a context manager, sync or async.

    The design of redis-py's ``Lock``, on any kirocache backend: ``SET key token NX PX
    timeout`` to take it, a compare-and-delete to free it (a holder whose lease ran out
    never frees the next holder's lock), and, unlike redis-py's, the lease is renewed
    every third of it while the block runs (``renew=True``), so a long holder keeps the
    lock and a dead one keeps the others out for at most ``timeout``.

    A lock is about exclusion, so it does not fail open: a backend fault raises
    ``BackendError`` (``kirocache.exceptions``) instead of running the block unlocked.
    One object is one holder: take a new ``cache.lock(name)`` per critical section.

    Args:
        backend: The cache's backend.
        key: The lock's full backend key.
        name: The name the caller gave (shown in messages).
        timeout: The lease in seconds.
        blocking_timeout: How long entering waits for another holder; 0 tries once.
        renew: Renew the lease while the block runs.
    """

    def __init__(
        self,
        backend: Backend | AsyncBackend,
        key: str,
        name: str,
        *,
        timeout: float,
        blocking_timeout: float,
        renew: bool,
    ) -> None:
        self._lock = DistributedLock(backend, key, timeout=timeout, wait=blocking_timeout)
        self._name = name
        self._wait = blocking_timeout
        self._renew = renew
        self._renewal: contextlib.ExitStack | None = None
        self._arenewal: contextlib.AsyncExitStack | None = None

    @property
    def name(self) -> str:
        """The lock's name."""
        return self._name

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (its lease may have run out since)."""
        return self._lock.held

    def acquire(self) -> bool:
        """Take the lock, waiting up to ``blocking_timeout``; whether it is now held.

        Raises:
            BackendError: The backend failed.
        """
        return self._lock.acquire()

    def release(self) -> bool:
        """Free the lock if this object still holds it; whether it did.

        Raises:
            BackendError: The backend failed (the lock then expires after its lease).
        """
        return self._lock.release()

    def extend(self) -> bool:
        """Give the lock a full lease again if this object still holds it.

        Raises:
            BackendError: The backend failed.
        """
        return self._lock.extend()

    async def aacquire(self) -> bool:
        """Async :meth:`acquire`; waits without blocking the event loop."""
        return await self._lock.aacquire()

    async def arelease(self) -> bool:
        """Async :meth:`release`."""
        return await self._lock.arelease()

    async def aextend(self) -> bool:
        """Async :meth:`extend`."""
        return await self._lock.aextend()

    def _refused(self) -> LockNotAcquiredError:
        return LockNotAcquiredError(
            f"lock {self._name!r} is held by another holder; gave up after "
            f"{self._wait:g} s (blocking_timeout)"
        )

    def __enter__(self) -> Self:
        if not self.acquire():
            raise self._refused()
        if self._renew:
            with contextlib.ExitStack() as stack:
                stack.enter_context(self._lock.renewed())
                self._renewal = stack.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        renewal, self._renewal = self._renewal, None
        try:
            if renewal is not None:
                renewal.close()  # joined: no renewal after the release
        finally:
            self.release()

    async def __aenter__(self) -> Self:
        if not await self.aacquire():
            raise self._refused()
        if self._renew:
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(self._lock.arenewed())
                self._arenewal = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        renewal, self._arenewal = self._arenewal, None
        try:
            if renewal is not None:
                await renewal.aclose()
        finally:
            await self.arelease()

    def __repr__(self) -> str:
        return f"CacheLock({self._name!r}, held={self.held})"
