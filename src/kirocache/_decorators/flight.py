"""Waiting, thread side and asyncio side: single-flight, background refresh, the lock's wait.

Between threads and asyncio only three things differ: how a caller waits for another's
result (an ``Event`` or a ``Future``), how work runs behind the caller (a ``Thread`` or a
``Task``) and how one pauses (``time.sleep`` or ``asyncio.sleep``). Each primitive below
has its two sides next to each other, as httpcore's ``_synchronization.py`` does; what a
cached call decides is the plan's (``plan.py``), not theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

from kirocache._cache.guard import is_fault

if TYPE_CHECKING:
    from kirocache.backends._lock import DistributedLock

__all__ = [
    "AsyncFlights",
    "AsyncRefreshes",
    "Flights",
    "LeaderGoneError",
    "Refreshes",
    "aholding",
    "holding",
]

T = TypeVar("T")

_log = logging.getLogger("kirocache")

# How long a finished flight is remembered for callers whose read came before it.
_LANDED_FOR = 5.0


class _Landings:
    """When each slot's last flight finished, for a few seconds; the same in both worlds.

    A caller whose miss was read just before another caller stored the value, and who
    becomes a leader once that flight has ended, would call the function a second time:
    ``after`` tells it to read again first.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._at: OrderedDict[Hashable, float] = OrderedDict()

    def land(self, slot: Hashable) -> None:
        now = time.perf_counter()
        with self._guard:
            landed = self._at
            landed.pop(slot, None)
            landed[slot] = now
            while landed and next(iter(landed.values())) < now - _LANDED_FOR:
                del landed[next(iter(landed))]

    def after(self, slot: Hashable, read_at: float) -> bool:
        landed = self._at.get(slot)
        return landed is not None and landed >= read_at


# -- single-flight -----------------------------------------------------------------------


class _Flight:
    __slots__ = ("done", "ok", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None


class Flights:
    """Single-flight among threads: per slot one caller (the leader) computes, others wait.

    ``run`` calls ``lead(reread)`` in the leader; ``reread`` is true when another flight of
    the slot finished after the leader's read (at ``read_at``), so its miss may be out of
    date. A follower waits up to ``timeout`` seconds for the leader's value; when the
    leader fails or is too slow, the follower calls ``alone()`` rather than fail or block.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}
        self._landings = _Landings()

    def run(
        self,
        slot: Hashable,
        read_at: float,
        timeout: float,
        lead: Callable[[bool], T],
        alone: Callable[[], T],
    ) -> T:
        """Run ``lead`` in one caller of ``slot`` and hand its value to the others."""
        with self._guard:
            flight = self._flights.get(slot)
            leader = flight is None
            if flight is None:
                flight = self._flights[slot] = _Flight()
        if not leader:
            if flight.done.wait(timeout) and flight.ok:
                return cast("T", flight.value)
            return alone()
        try:
            flight.value = lead(self._landings.after(slot, read_at))
            flight.ok = True
            return cast("T", flight.value)
        finally:
            with self._guard:
                del self._flights[slot]
            self._landings.land(slot)
            flight.done.set()


class AsyncFlights:
    """Single-flight among the tasks of each event loop: ``Flights``' asyncio side."""

    def __init__(self) -> None:
        self._flights: dict[tuple[int, Hashable], asyncio.Future[Any]] = {}
        self._landings = _Landings()

    async def run(
        self,
        slot: Hashable,
        read_at: float,
        timeout: float,
        lead: Callable[[bool], Awaitable[T]],
        alone: Callable[[], Awaitable[T]],
    ) -> T:
        """Await ``lead`` in one task per loop and slot and hand its value to the others."""
        loop = asyncio.get_running_loop()
        key = (id(loop), slot)  # a future belongs to its loop
        flight = self._flights.get(key)
        if flight is not None:
            try:
                return cast("T", await asyncio.wait_for(asyncio.shield(flight), timeout))
            except Exception:  # noqa: BLE001 - the leader's failure is not ours
                return await alone()
        flight = self._flights[key] = loop.create_future()
        try:
            value = await lead(self._landings.after(key, read_at))
            flight.set_result(value)
            return value
        except BaseException as exc:
            # A leader that was cancelled (or interrupted) is its own business: its followers
            # see a plain failure and compute alone instead of being cancelled with it.
            flight.set_exception(exc if isinstance(exc, Exception) else LeaderGoneError())
            flight.exception()  # retrieved here, so an unawaited failure is not logged
            raise
        finally:
            del self._flights[key]
            self._landings.land(key)


# -- background refresh ------------------------------------------------------------------


class Refreshes:
    """Background work in daemon threads, at most one per slot at a time.

    A failure is swallowed: a refresh that fails leaves the stale value serving.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._running: set[Hashable] = set()

    def start(self, slot: Hashable, name: str, work: Callable[[], object]) -> None:
        """Run ``work`` in a new thread named ``name``, unless ``slot`` is already running."""
        with self._guard:
            if slot in self._running:
                return
            self._running.add(slot)

        def run() -> None:
            try:
                work()
            except Exception:  # noqa: BLE001, S110 - a failed refresh keeps serving the stale copy
                pass
            finally:
                with self._guard:
                    self._running.discard(slot)

        threading.Thread(target=run, name=name, daemon=True).start()


class AsyncRefreshes:
    """Background work in tasks of the running loop: ``Refreshes``' asyncio side."""

    def __init__(self) -> None:
        self._running: set[tuple[int, Hashable]] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until done

    def start(self, slot: Hashable, name: str, work: Callable[[], Awaitable[object]]) -> None:
        """Run ``work`` in a new task named ``name``, unless ``slot`` is already running."""
        key = (id(asyncio.get_running_loop()), slot)
        if key in self._running:
            return
        self._running.add(key)

        async def run() -> None:
            try:
                await work()
            except Exception:  # noqa: BLE001, S110 - a failed refresh keeps serving the stale copy
                pass
            finally:
                self._running.discard(key)

        task = asyncio.create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# -- the distributed lock's hold ---------------------------------------------------------
#
# The lock is taken for a lease of ``lock_timeout`` seconds, so a leader that dies keeps the
# others out no longer than they are willing to wait, and the lease is renewed every third
# of it while the leader computes, so a computation longer than the lease keeps the lock.


@contextlib.contextmanager
def holding(lock: DistributedLock, lease: float) -> Iterator[bool]:
    """Hold ``lock`` while the block runs, renewed by a thread; yields whether it is held.

    A backend fault while taking it goes on without the lock (fail open), one while
    renewing it is logged (the lock expires unless a later renewal gets through), and a
    release that fails leaves the lock to expire by itself.
    """
    try:
        held = lock.acquire(lease=lease)
    except Exception as exc:
        if not is_fault(exc):
            raise
        held = False
    if not held:
        yield False
        return
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renewing, args=(lock, lease / 3, stop), name="kirocache-lease", daemon=True
    )
    renewer.start()
    try:
        yield True
    finally:
        stop.set()
        renewer.join()  # no renewal after the release below
        try:
            lock.release()
        except Exception as exc:
            if not is_fault(exc):
                raise


@contextlib.asynccontextmanager
async def aholding(lock: DistributedLock, lease: float) -> AsyncIterator[bool]:
    """``holding``'s asyncio side: the wait lets the loop run, a task renews the lease."""
    try:
        held = await lock.aacquire(lease=lease)
    except Exception as exc:
        if not is_fault(exc):
            raise
        held = False
    if not held:
        yield False
        return
    stop = asyncio.Event()
    renewer = asyncio.create_task(_arenewing(lock, lease / 3, stop), name="kirocache-lease")
    try:
        yield True
    finally:
        stop.set()
        await asyncio.wait([renewer])  # no renewal after the release below
        try:
            await lock.arelease()
        except Exception as exc:
            if not is_fault(exc):
                raise


def _renewing(lock: DistributedLock, every: float, stop: threading.Event) -> None:
    """Extend ``lock``'s lease every ``every`` seconds until ``stop`` is set or it is lost."""
    while not stop.wait(every):
        try:
            extended = lock.extend()
        except Exception as exc:  # noqa: BLE001 - a background thread raises to nobody
            if _renewal_failed(lock, exc):
                continue
            return
        if not extended:
            _lost(lock)
            return


async def _arenewing(lock: DistributedLock, every: float, stop: asyncio.Event) -> None:
    """``_renewing``'s asyncio side."""
    while True:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
            return
        try:
            extended = await lock.aextend()
        except Exception as exc:  # noqa: BLE001 - a background task raises to nobody
            if _renewal_failed(lock, exc):
                continue
            return
        if not extended:
            _lost(lock)
            return


def _renewal_failed(lock: DistributedLock, exc: Exception) -> bool:
    """Log a renewal that raised; whether to try again (a fault) or stop (a bug)."""
    if is_fault(exc):
        _log.warning(
            "could not renew the lease of lock %r: %s: %s; it expires unless a later "
            "renewal gets through",
            lock.key,
            type(exc).__name__,
            exc,
        )
        return True
    _log.error("renewing lock %r failed; renewals stop", lock.key, exc_info=exc)
    return False


def _lost(lock: DistributedLock) -> None:
    _log.warning(
        "lock %r was lost while its holder computed (its lease ran out or it was deleted); "
        "another process may compute the same value meanwhile",
        lock.key,
    )


class LeaderGoneError(Exception):
    """What a flight's followers see when its leader was cancelled: they compute alone."""
