"""DistributedLock: a lock across threads, tasks and processes on any kirocache backend.

Taking, extending and freeing it are written once, as steps (``kirocache.backends.Steps``):
the sync methods drive them with ``run_steps``, the async ones with ``arun_steps``, and the
pause between two tries is the one thing that differs (``PAUSE``: the sync driver sleeps,
the async one awaits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from kirocache._values.randomness import RANDOM
from kirocache._values.types import option_seconds
from kirocache.backends._protocol import Op
from kirocache.backends._steps import PAUSE, Call, Steps, arun_steps, run_steps
from kirocache.exceptions import BackendError

if TYPE_CHECKING:
    from kirocache.backends._protocol import AsyncBackend, Backend

__all__ = ["DistributedLock"]

_log = logging.getLogger("kirocache")

# Waiters poll: the first retry comes soon, since most critical sections (one function
# call filling the cache) are short, and the delay doubles up to a cap that bounds how
# late a waiter notices the release.
_FIRST_DELAY: Final = 0.002
_MAX_DELAY: Final = 0.05


def _delay(attempt: int, remaining: float) -> float:
    """Seconds to sleep before retry ``attempt`` (0-based), jittered, never past the deadline.

    The jitter (between half and all of the doubled delay) keeps waiters that started
    together from polling the store in lockstep.
    """
    ceiling = min(_MAX_DELAY, _FIRST_DELAY * 2**attempt)
    return min(remaining, RANDOM.uniform(ceiling / 2, ceiling))


class DistributedLock:
    """A lock held in the backend under ``key``: ``SET key token NX PX timeout``.

    Each acquisition stores a fresh random token, and ``release`` deletes the key only if
    it still holds that token (compare-and-delete), so a holder whose lock already
    expired never frees the lock of the next holder. The lease (``timeout``, or the
    ``lease`` given to ``acquire``) bounds how long a holder that died keeps the others
    out; a holder that needs longer calls ``extend`` before the lease runs out, which
    gives the lock a full lease again only if it still holds its token (compare-and-set),
    so it never extends a lock that expired and went to someone else. One object is one
    holder: make one per critical section rather than sharing it between threads (a
    thread or task that only renews it for its holder is fine).

    Backend faults (``BackendError``) propagate; callers decide whether to go on without
    the lock.

    Args:
        backend: Any kirocache backend: ``acquire``/``release`` send ops to its
            ``execute``, ``aacquire``/``arelease`` to its ``aexecute``.
        key: The full key of the lock.
        timeout: How long the lock lives unless released (seconds or a timedelta).
        wait: How long ``acquire`` keeps trying while another holder has the lock; 0
            tries once.
        clock: Monotonic seconds, for the ``wait`` deadline.

    Raises:
        ConfigurationError: ``timeout`` is not > 0 or ``wait`` is negative (or either is
            infinite or not a duration).

    Examples:
        >>> from kirocache.backends import MemoryBackend
        >>> lock = DistributedLock(MemoryBackend(), "lock:report", timeout=30, wait=1)
        >>> if lock.acquire():
        ...     try:
        ...         pass  # compute and store the report
        ...     finally:
        ...         released = lock.release()
    """

    def __init__(
        self,
        backend: Backend | AsyncBackend,
        key: str,
        *,
        timeout: float | timedelta = 10.0,
        wait: float | timedelta = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self._key = key
        self._timeout = option_seconds(timeout, "timeout")
        self._wait = option_seconds(wait, "wait", allow_zero=True)
        self._clock = clock
        self._token: bytes | None = None
        self._lease = self._timeout

    def __repr__(self) -> str:
        return f"DistributedLock({self._key!r}, held={self.held})"

    @property
    def key(self) -> str:
        """The key the lock lives under."""
        return self._key

    @property
    def timeout(self) -> float:
        """The lease an acquisition takes unless ``acquire`` is given another, in seconds."""
        return self._timeout

    @property
    def held(self) -> bool:
        """Whether this object acquired the lock and has not released it.

        The lock may have expired in the backend meanwhile; only ``release`` finds out.
        """
        return self._token is not None

    def _begin(self) -> bytes:
        if self._token is not None:
            msg = f"lock {self._key!r} is already held by this object; release it first"
            raise RuntimeError(msg)
        return secrets.token_hex(16).encode("ascii")

    def _answer(self, results: list[Any]) -> Any:
        """The one op's answer; a failure in its slot is raised."""
        (answer,) = results
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _acquiring(self, lease: float | timedelta | None) -> Steps[bool]:
        token = self._begin()
        ttl = self._timeout if lease is None else option_seconds(lease, "lease")
        take = [Op("set", self._key, token, ttl=ttl, nx=True)]
        deadline = self._clock() + self._wait
        attempt = 0
        while not self._answer((yield Call(self._backend, "execute", (take,)))):
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            yield Call(PAUSE, "sleep", (_delay(attempt, remaining),))
            attempt += 1
        self._token, self._lease = token, ttl
        return True

    def _extending(self) -> Steps[bool]:
        token = self._token
        if token is None:
            return False
        # the same token with a fresh TTL, only where the key still holds it
        keep = [Op("set_if", self._key, token, ttl=self._lease, expected=token)]
        return self._answer((yield Call(self._backend, "execute", (keep,)))) is True

    def _releasing(self) -> Steps[bool]:
        token, self._token = self._token, None
        if token is None:
            return False
        free = [Op("delete_if", self._key, expected=token)]
        return self._answer((yield Call(self._backend, "execute", (free,)))) is True

    def acquire(self, *, lease: float | timedelta | None = None) -> bool:
        """Take the lock, polling with backoff for up to ``wait`` seconds.

        Args:
            lease: How long this hold lives unless extended or released (seconds or a
                timedelta); ``None``: ``timeout``.

        Returns:
            ``True`` once held; ``False`` if another holder kept it for the whole wait.

        Raises:
            BackendError: The backend failed.
            ConfigurationError: ``lease`` is not a duration > 0.
            RuntimeError: This object already holds the lock.
        """
        return run_steps(self._acquiring(lease))

    def extend(self) -> bool:
        """Give the lock a full lease again, from now, if this object still holds it.

        Returns:
            ``True`` if the lock was still ours and now lives a full lease; ``False`` if it
            was never acquired, was released, or was lost (it expired, and may belong to
            someone else now).

        Raises:
            BackendError: The backend failed (the lock keeps its current expiry).
        """
        return run_steps(self._extending())

    def release(self) -> bool:
        """Free the lock if this object still holds it.

        Returns:
            ``True`` if the lock was ours and is now deleted; ``False`` if it was never
            acquired, was already released, or expired (and may belong to someone else).

        Raises:
            BackendError: The backend failed (the lock then expires after ``timeout``).
        """
        return run_steps(self._releasing())

    async def aacquire(self, *, lease: float | timedelta | None = None) -> bool:
        """Async :meth:`acquire`; waits with ``asyncio.sleep``, never blocking the loop."""
        return await arun_steps(self._acquiring(lease))

    async def aextend(self) -> bool:
        """Async :meth:`extend`."""
        return await arun_steps(self._extending())

    async def arelease(self) -> bool:
        """Async :meth:`release`."""
        return await arun_steps(self._releasing())

    # -- renewal: the lease is extended every third of it while a block runs ---------------

    @contextlib.contextmanager
    def renewed(self) -> Iterator[None]:
        """Extend the lease every third of it, from a thread, while the block runs.

        A renewal the backend refuses is logged and tried again at the next turn (the lock
        expires unless one gets through); a lock found lost (its lease ran out, or it was
        deleted) is logged once and renewals stop. The thread is joined before the block's
        exit returns, so nothing renews after a ``release`` that follows.
        """
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renewing, args=(stop,), name="kirocache-lease", daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()

    @contextlib.asynccontextmanager
    async def arenewed(self) -> AsyncIterator[None]:
        """Async :meth:`renewed`: a task extends the lease while the block runs."""
        stop = asyncio.Event()
        renewer = asyncio.create_task(self._arenewing(stop), name="kirocache-lease")
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait([renewer])

    def _renewing(self, stop: threading.Event) -> None:
        while not stop.wait(self._lease / 3):
            try:
                extended = self.extend()
            except Exception as exc:  # noqa: BLE001 - a background thread raises to nobody
                if self._renewal_failed(exc):
                    continue
                return
            if not extended:
                self._lost()
                return

    async def _arenewing(self, stop: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self._lease / 3)
                return
            try:
                extended = await self.aextend()
            except Exception as exc:  # noqa: BLE001 - a background task raises to nobody
                if self._renewal_failed(exc):
                    continue
                return
            if not extended:
                self._lost()
                return

    def _renewal_failed(self, exc: Exception) -> bool:
        """Log a renewal that raised; whether to try again (a fault) or stop (a bug)."""
        if isinstance(exc, BackendError):
            _log.warning(
                "could not renew the lease of lock %r: %s: %s; it expires unless a later "
                "renewal gets through",
                self._key,
                type(exc).__name__,
                exc,
            )
            return True
        _log.error("renewing lock %r failed; renewals stop", self._key, exc_info=exc)
        return False

    def _lost(self) -> None:
        _log.warning(
            "lock %r was lost while its holder worked (its lease ran out or it was deleted); "
            "another holder may have it now",
            self._key,
        )
