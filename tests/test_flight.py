"""Single flight under cancellation, failure and several event loops, with real tasks and threads.

What is asserted are the flight's invariants, not a scheduling: at most one call per key
runs at a time, a caller never inherits another caller's exception or cancellation, and
every waiter gets the value one call produced.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from kirocache import Cache, cached
from kirocache._decorators.flight import _LEAD, _Board, _TaskWaiter, _ThreadWaiter
from kirocache.backends.redis import RedisBackend
from kirocache.metrics import InMemoryMetrics

REDIS_ENV = ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB", "CACHE_DEBUG")
WAIT = 10.0
FOLLOWERS = 20


class Calls:
    """How often the function ran, and the most calls that ran at once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.count = 0
        self.inside = 0
        self.most = 0

    def enter(self) -> int:
        with self._guard:
            self.count += 1
            self.inside += 1
            self.most = max(self.most, self.inside)
            return self.count

    def leave(self) -> None:
        with self._guard:
            self.inside -= 1


@pytest.fixture
def roomy(
    request: pytest.FixtureRequest, cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cache]:
    """``cache``; on the real server with room for every caller to connect at once.

    The default connect timeout fails a read open on a loaded machine, and a read that
    failed open is a caller of its own; what these tests check is the flight.
    """
    if request.node.callspec.params["backend"] != "redis":
        yield cache
        return
    for name in REDIS_ENV:
        monkeypatch.delenv(name, raising=False)
    backend = RedisBackend(
        request.getfixturevalue("redis_url"),
        max_connections=100,
        connect_timeout=10,
        socket_timeout=10,
        pool_timeout=10,
    )
    try:
        yield Cache(backend)
    finally:
        backend.close()


def reads(cache: Cache) -> int:
    """How many reads the cache recorded (hits, misses and failed reads)."""
    metrics = cache.metrics
    assert isinstance(metrics, InMemoryMetrics)
    return sum(row.calls for row in metrics.stats(operation="get"))


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


# -- asyncio -------------------------------------------------------------------------------


async def test_a_cancelled_leader_hands_over_to_one_waiter(roomy: Cache) -> None:
    calls, started, never = Calls(), asyncio.Event(), asyncio.Event()

    @cached(prefix="flight:cancel:", cache=roomy, ttl=60)
    async def compute(x: int) -> int:
        first = calls.enter() == 1
        try:
            if first:  # the leader hangs until it is cancelled
                started.set()
                await never.wait()
            await asyncio.sleep(0.02)
            return x + 1
        finally:
            calls.leave()

    leader = asyncio.create_task(compute(1))
    await asyncio.wait_for(started.wait(), WAIT)
    followers = [asyncio.create_task(compute(1)) for _ in range(FOLLOWERS)]
    await until(lambda: reads(roomy) >= FOLLOWERS + 1)  # every follower read and queued
    leader.cancel()
    results = await asyncio.gather(*followers, return_exceptions=True)
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert results == [2] * FOLLOWERS  # no CancelledError, no error of any kind
    assert calls.most == 1  # the new leader ran alone, not 20 followers at once
    assert calls.count == 2  # the cancelled call, then one waiter's in its place


async def test_a_failing_leader_hands_over_to_one_waiter(roomy: Cache) -> None:
    calls = Calls()

    @cached(prefix="flight:fail:", cache=roomy, ttl=60)
    async def compute(x: int) -> int:
        first = calls.enter() == 1
        try:
            if first:  # fails once the others wait for it
                await until(lambda: reads(roomy) >= FOLLOWERS + 1)
                raise ValueError("the first call fails")
            await asyncio.sleep(0.02)
            return x + 1
        finally:
            calls.leave()

    results = await asyncio.gather(
        *(compute(1) for _ in range(FOLLOWERS + 1)), return_exceptions=True
    )
    assert sum(isinstance(result, ValueError) for result in results) == 1  # the leader's own
    assert results.count(2) == FOLLOWERS
    assert calls.most == 1
    assert calls.count == 2  # not one call per waiter


async def test_cancelled_waiters_leave_and_pass_on_a_lead_they_were_given(roomy: Cache) -> None:
    calls, started, never = Calls(), asyncio.Event(), asyncio.Event()

    @cached(prefix="flight:waiters:", cache=roomy, ttl=60)
    async def compute(x: int) -> int:
        first = calls.enter() == 1
        try:
            if first:
                started.set()
                await never.wait()
            await asyncio.sleep(0.02)
            return x + 1
        finally:
            calls.leave()

    leader = asyncio.create_task(compute(1))
    await asyncio.wait_for(started.wait(), WAIT)
    waiters = [asyncio.create_task(compute(1)) for _ in range(6)]
    await until(lambda: reads(roomy) >= 7)
    # the first waiter, next in line, is cancelled with the leader: whichever of the two
    # runs first, the lead must not be lost with it
    waiters[0].cancel()
    waiters[3].cancel()
    leader.cancel()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert [type(result).__name__ for result in results] == [
        "CancelledError",
        "int",
        "int",
        "CancelledError",
        "int",
        "int",
    ]
    assert [result for result in results if isinstance(result, int)] == [2] * 4
    assert calls.most == 1
    assert calls.count == 2


async def test_a_waiter_gives_up_after_lock_timeout_and_calls_alone(cache: Cache) -> None:
    calls, started, release = Calls(), asyncio.Event(), asyncio.Event()

    @cached(prefix="flight:slow:", cache=cache, ttl=60, lock_timeout=0.05)
    async def compute(x: int) -> int:
        first = calls.enter() == 1
        try:
            if first:
                started.set()
                await release.wait()
            return x + 1
        finally:
            calls.leave()

    leader = asyncio.create_task(compute(1))
    await asyncio.wait_for(started.wait(), WAIT)
    assert await asyncio.wait_for(compute(1), WAIT) == 2  # did not wait for the leader
    release.set()
    assert await leader == 2
    assert calls.count == 2


def test_one_flight_across_event_loops(roomy: Cache) -> None:
    """Threads each running their own event loop share one flight per key."""
    calls, loops = Calls(), 4
    start = threading.Barrier(loops)

    @cached(prefix="flight:loops:", cache=roomy, ttl=60)
    async def compute(x: int) -> int:
        calls.enter()
        try:
            await asyncio.sleep(0.3)
            return x * 2
        finally:
            calls.leave()

    async def callers() -> list[int]:
        start.wait(WAIT)
        return list(await asyncio.gather(*(compute(21) for _ in range(5))))

    results: list[list[int]] = []
    threads = [
        threading.Thread(target=lambda: results.append(asyncio.run(callers())))
        for _ in range(loops)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert results == [[42] * 5] * loops
    assert calls.most == 1  # before: one call per event loop, all at once
    assert calls.count == 1


# -- threads -------------------------------------------------------------------------------


class Interrupted(BaseException):
    """Stands for a KeyboardInterrupt or SystemExit in the leader's thread."""


@pytest.mark.parametrize("error", [ValueError, Interrupted])
def test_a_failing_leader_thread_hands_over_to_one_waiter(
    roomy: Cache, error: type[BaseException]
) -> None:
    calls = Calls()

    @cached(prefix="flight:threads:", cache=roomy, ttl=60)
    def compute(x: int) -> int:
        first = calls.enter() == 1
        try:
            if first:
                wait_until(lambda: reads(roomy) >= FOLLOWERS + 1)
                time.sleep(0.05)  # a read is recorded just before its caller queues
                raise error("the first call fails")
            time.sleep(0.02)
            return x + 1
        finally:
            calls.leave()

    outcomes: list[object] = []
    guard = threading.Lock()

    def caller() -> None:
        try:
            result: object = compute(1)
        except BaseException as exc:  # the outcome is what is asserted
            result = exc
        with guard:
            outcomes.append(result)

    threads = [threading.Thread(target=caller) for _ in range(FOLLOWERS + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert sum(isinstance(outcome, error) for outcome in outcomes) == 1
    assert outcomes.count(2) == FOLLOWERS
    assert calls.most == 1
    assert calls.count == 2


# -- the board, without a cache ------------------------------------------------------------


def test_a_waiter_of_a_closed_loop_is_passed_over() -> None:
    board = _Board()
    gone_loop = asyncio.new_event_loop()
    gone, alive = _TaskWaiter(gone_loop), _ThreadWaiter()
    gone_loop.close()
    flight, leading = board.join("k", _ThreadWaiter())
    assert leading
    assert board.join("k", gone) == (flight, False)
    assert board.join("k", alive) == (flight, False)
    board.failed(flight)  # the leader raised
    assert alive.event.is_set()
    assert alive.outcome is _LEAD  # the next waiter leads; the closed loop's is skipped
    board.landed(flight, "value")
    assert board.join("k", _ThreadWaiter())[1]  # the flight ended: a new one starts
