"""A stampede: 100 concurrent callers of one cold key whose function takes 20 ms.

Sync callers are 100 threads (started before the timing), async callers 100 tasks of one
event loop. A round is the time until the last caller has its value; every round uses a
new key. The group's ``one call`` row is the function alone, so the report can put the
stampede's time against one call. How many times the function ran per round goes into
``extra_info``; kirocache's in-process lock makes it exactly one, which is asserted (it is
behaviour, not a time). Peers run without extra locking options, as their decorators do
by default; dogpile.cache's lock is built in.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import pytest
from _peers import KIROCACHE, MEMORY_URL, Calls, async_participant, sync_participant
from _workload import SMALL, label
from pytest_benchmark.fixture import BenchmarkFixture

CALLERS = 100
WORK = 0.020
ROUNDS = 5
ONE_CALL = "one call"

_users = itertools.count(2_000_000)


def fresh_user() -> tuple[tuple[int], dict[str, Any]]:
    return (next(_users),), {}


def work() -> None:
    time.sleep(WORK)


async def awork() -> None:
    await asyncio.sleep(WORK)


def record(benchmark: BenchmarkFixture, lib: str, counts: list[int]) -> None:
    benchmark.extra_info.update(
        callers=CALLERS,
        function_calls_max=max(counts),
        function_calls_mean=sum(counts) / len(counts),
    )
    if lib == KIROCACHE:
        assert counts
        assert max(counts) == 1, f"the function ran {counts} times per round"


def threads(stack: ExitStack) -> ThreadPoolExecutor:
    """``CALLERS`` threads, all started (each has taken a task) before anything is timed."""
    pool = stack.enter_context(ThreadPoolExecutor(max_workers=CALLERS))
    started = threading.Barrier(CALLERS)
    for future in [pool.submit(started.wait) for _ in range(CALLERS)]:
        future.result()
    return pool


@pytest.mark.parametrize("backend", ["memory", "redis"])
@pytest.mark.parametrize("lib", [KIROCACHE, "dogpile", ONE_CALL])
def test_stampede_sync(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    request: pytest.FixtureRequest,
    backend: str,
    lib: str,
) -> None:
    label(benchmark, f"stampede/{backend}/sync", lib)
    if lib == ONE_CALL:
        benchmark.pedantic(work, rounds=ROUNDS)
        return
    url = MEMORY_URL if backend == "memory" else request.getfixturevalue("redis_url")
    if backend == "redis":
        request.getfixturevalue("flushed")
    calls = Calls()
    profile = sync_participant(lib, SMALL, url, stack, calls, compute=work)
    pool = threads(stack)
    counts: list[int] = []

    def stampede(user: int) -> None:
        before = calls.count
        for future in [pool.submit(profile, user) for _ in range(CALLERS)]:
            assert future.result() == SMALL
        counts.append(calls.count - before)

    # A cold round first, untimed, fills the connection pool: while 100 threads open their
    # connections, a caller can read its miss after the first call stored the value and
    # compute again (its count is kept, apart, in ``function_calls_cold``).
    stampede(*fresh_user()[0])
    cold = counts.pop()
    benchmark.pedantic(stampede, setup=fresh_user, rounds=ROUNDS)
    benchmark.extra_info["function_calls_cold"] = cold
    record(benchmark, lib, counts)


@pytest.mark.parametrize("backend", ["memory", "redis"])
@pytest.mark.parametrize("lib", [KIROCACHE, "aiocache", "cashews", ONE_CALL])
def test_stampede_async(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    loop: asyncio.AbstractEventLoop,
    request: pytest.FixtureRequest,
    backend: str,
    lib: str,
) -> None:
    label(benchmark, f"stampede/{backend}/async", lib)
    if lib == ONE_CALL:
        benchmark.pedantic(lambda: loop.run_until_complete(awork()), rounds=ROUNDS)
        return
    url = MEMORY_URL if backend == "memory" else request.getfixturevalue("redis_url")
    if backend == "redis":
        request.getfixturevalue("flushed")
    calls = Calls()
    profile: Callable[[int], Awaitable[Any]] = async_participant(
        lib, SMALL, url, loop, stack, calls, compute=awork
    )
    counts: list[int] = []

    async def callers(user: int) -> None:
        results = await asyncio.gather(*(profile(user) for _ in range(CALLERS)))
        assert results == [SMALL] * CALLERS

    def stampede(user: int) -> None:
        before = calls.count
        loop.run_until_complete(callers(user))
        counts.append(calls.count - before)

    stampede(*fresh_user()[0])  # untimed, to fill the connection pool (see the sync test)
    cold = counts.pop()
    benchmark.pedantic(stampede, setup=fresh_user, rounds=ROUNDS)
    benchmark.extra_info["function_calls_cold"] = cold
    record(benchmark, lib, counts)
