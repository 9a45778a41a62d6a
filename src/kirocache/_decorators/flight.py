"""Waiting, thread side and asyncio side: single flight, background refresh, the lock's hold.

Between threads and asyncio only three things differ: how a caller waits for another's
result (an ``Event`` or a ``Future``), how work runs behind the caller (a ``Thread`` or a
``Task``) and how one pauses (``Event.wait`` or ``asyncio.wait_for``). Each primitive below
has its two sides next to each other, as httpcore's ``_synchronization.py`` does; what a
cached call decides is the plan's (``plan.py``), not theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from kirocache._cache.guard import is_fault

if TYPE_CHECKING:
    from kirocache._cache import Cache
    from kirocache.backends._lock import DistributedLock
    from kirocache.keys import Namespace

__all__ = [
    "AsyncFlights",
    "AsyncRefreshes",
    "Flights",
    "Refreshes",
    "aholding",
    "coalesced",
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


# -- single flight -----------------------------------------------------------------------
#
# One board per cached function holds its flights by slot, for every thread and every event
# loop of the process. A flight has one leader at a time; the others queue as waiters. When
# the leader has the value, every waiter gets it. When the leader ends without one (it
# raised, was cancelled or interrupted), the first waiter still there becomes the leader and
# calls the function: at most one call per slot runs at a time, and nobody inherits another
# caller's exception or cancellation. A waiter that waited ``timeout`` seconds leaves the
# queue and calls the function by itself rather than block longer.

_LEAD: Final = object()  # what a waiter is woken with when it becomes the leader
_GAVE_UP: Final = object()  # what a waiter finds when its ``timeout`` ran out first


class _Waiter:
    """A caller queued on a flight: what it was woken with (``None`` until then)."""

    __slots__ = ("outcome",)

    def __init__(self) -> None:
        # _LEAD, _GAVE_UP, or a 1-tuple holding the leader's value (which may be None)
        self.outcome: object = None

    def wake(self, outcome: object) -> bool:
        """Hand ``outcome`` over; ``False`` when nobody is left to take it."""
        raise NotImplementedError


class _ThreadWaiter(_Waiter):
    __slots__ = ("event",)

    def __init__(self) -> None:
        super().__init__()
        self.event = threading.Event()

    def wake(self, outcome: object) -> bool:
        self.outcome = outcome
        self.event.set()
        return True


class _TaskWaiter(_Waiter):
    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()

    def wake(self, outcome: object) -> bool:
        self.outcome = outcome  # read by its task once resumed, or by ``abandon``
        try:
            # from any thread: the leader may run in another event loop
            self.loop.call_soon_threadsafe(self.resolve)
        except RuntimeError:  # its loop is closed: this waiter will never run again
            return False
        return True

    def resolve(self) -> None:
        if not self.future.done():  # it may have been cancelled meanwhile
            self.future.set_result(None)


class _Flight:
    __slots__ = ("slot", "waiters")

    def __init__(self, slot: Hashable) -> None:
        self.slot = slot
        self.waiters: deque[_Waiter] = deque()


class _Board:
    """The flights of one cached function by slot, for every thread and event loop."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}
        self.landings = _Landings()

    def join(self, slot: Hashable, waiter: _Waiter) -> tuple[_Flight, bool]:
        """The slot's flight, and whether the caller leads it (else ``waiter`` is queued)."""
        with self._guard:
            flight = self._flights.get(slot)
            if flight is None:
                flight = self._flights[slot] = _Flight(slot)
                return flight, True
            flight.waiters.append(waiter)
            return flight, False

    def landed(self, flight: _Flight, value: object) -> None:
        """The leader has the value: the flight ends and every waiter gets it."""
        shared = (value,)
        with self._guard:  # woken under the guard: a waiter that ``leave`` misses has it
            del self._flights[flight.slot]
            for waiter in flight.waiters:
                waiter.wake(shared)
            flight.waiters.clear()
        self.landings.land(flight.slot)

    def failed(self, flight: _Flight) -> None:
        """The leader ended without a value: the first waiter still there leads next."""
        with self._guard:
            while flight.waiters:
                if flight.waiters.popleft().wake(_LEAD):
                    break
            else:
                del self._flights[flight.slot]
        # it may have stored before it ended (cancelled while releasing its lock, say):
        # the next leader reads again first
        self.landings.land(flight.slot)

    def leave(self, flight: _Flight, waiter: _Waiter) -> bool:
        """Take ``waiter`` off the queue; ``False`` when it was woken first."""
        with self._guard:
            try:
                flight.waiters.remove(waiter)
            except ValueError:
                return False
            return True

    def abandon(self, flight: _Flight, waiter: _Waiter) -> None:
        """A waiter is gone (cancelled, interrupted): a lead it was just given passes on."""
        if not self.leave(flight, waiter) and waiter.outcome is _LEAD:
            self.failed(flight)


class Flights:
    """Single flight among threads: per slot one caller (the leader) computes, others wait.

    ``run`` calls ``lead(reread)`` in the leader; ``reread`` is true when another flight of
    the slot finished after the leader's read (at ``read_at``), so its miss may be out of
    date. A waiter that gets the leader's value calls ``shared()`` and returns it. When the
    leader raises, one waiter becomes the leader in its place. A waiter that waited
    ``timeout`` seconds calls ``alone()`` rather than block longer.
    """

    def __init__(self) -> None:
        self._board = _Board()

    def run(
        self,
        slot: Hashable,
        read_at: float,
        timeout: float,
        lead: Callable[[bool], T],
        alone: Callable[[], T],
        shared: Callable[[], object],
    ) -> T:
        """Run ``lead`` in one caller of ``slot`` at a time and hand its value to the others."""
        board, waiter = self._board, _ThreadWaiter()
        flight, leading = board.join(slot, waiter)
        if not leading:
            try:
                woken = waiter.event.wait(timeout)
            except BaseException:  # interrupted while waiting
                board.abandon(flight, waiter)
                raise
            if not woken and board.leave(flight, waiter):
                return alone()
            if waiter.outcome is not _LEAD:
                shared()
                return cast("T", cast("tuple[Any]", waiter.outcome)[0])
        try:
            value = lead(board.landings.after(slot, read_at))
        except BaseException:
            board.failed(flight)
            raise
        board.landed(flight, value)
        return value


class AsyncFlights:
    """``Flights``' asyncio side, across the event loops of the process.

    A waiter in one loop is woken from another loop's thread (``call_soon_threadsafe``), so
    tasks of loops that run in different threads share one flight. A cancelled leader hands
    over to one waiter, which becomes the leader; the other waiters never see the
    cancellation. A cancelled waiter just leaves (passing on a lead it was given).
    """

    def __init__(self) -> None:
        self._board = _Board()

    async def run(
        self,
        slot: Hashable,
        read_at: float,
        timeout: float,
        lead: Callable[[bool], Awaitable[T]],
        alone: Callable[[], Awaitable[T]],
        shared: Callable[[], object],
    ) -> T:
        """Await ``lead`` in one task of ``slot`` at a time and hand its value to the others."""
        board, loop = self._board, asyncio.get_running_loop()
        waiter = _TaskWaiter(loop)
        flight, leading = board.join(slot, waiter)
        if not leading:
            timer = loop.call_later(timeout, self._give_up, flight, waiter)
            try:
                # a plain future, not ``wait_for``: a cancellation is never swallowed
                await waiter.future
            except BaseException:  # cancelled: the caller's own business
                board.abandon(flight, waiter)
                raise
            finally:
                timer.cancel()
            if waiter.outcome is _GAVE_UP:
                return await alone()
            if waiter.outcome is not _LEAD:
                shared()
                return cast("T", cast("tuple[Any]", waiter.outcome)[0])
        try:
            value = await lead(board.landings.after(slot, read_at))
        except BaseException:
            board.failed(flight)
            raise
        board.landed(flight, value)
        return value

    def _give_up(self, flight: _Flight, waiter: _TaskWaiter) -> None:
        """The waiter's ``timeout`` ran out (in its own loop): unless woken, it leaves."""
        if self._board.leave(flight, waiter):
            waiter.outcome = _GAVE_UP
            waiter.resolve()


def coalesced(cache: Cache, namespace: Namespace) -> None:
    """Count a waiter that got the leader's value: outcome ``coalesced`` (see metrics)."""
    metrics = cache.metrics
    if metrics is not None:
        metrics.record("get", namespace.prefix, "coalesced", 0.0)


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
    """Hold ``lock`` while the block runs, renewed; yields whether it is held.

    A backend fault while taking it goes on without the lock (fail open), one while
    renewing it is logged (``DistributedLock.renewed``), and a release that fails leaves
    the lock to expire by itself.
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
    try:
        with lock.renewed():
            yield True
    finally:
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
    try:
        async with lock.arenewed():
            yield True
    finally:
        try:
            await lock.arelease()
        except Exception as exc:
            if not is_fault(exc):
                raise
