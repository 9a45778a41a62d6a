"""A miss: the function runs and its result is stored; every timed call uses a new key.

Rounds are bounded (and pedantic) so the keys written stay few. After the timing, one more
miss through a kirocache participant is counted on the wire: client writes (round trips)
and, from the server's ``INFO commandstats``, the commands it ran. Those figures go into
the benchmark's ``extra_info`` for the report; the test asserts them, since they are
behaviour, and never a time.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
import redis
import redis.asyncio.connection
import redis.connection
from _peers import (
    KIROCACHE,
    KIROCACHE_LIBS,
    MEMORY_URL,
    RAW,
    TAGGED,
    ZLIB,
    Calls,
    async_participant,
    sync_participant,
)
from _workload import ASYNC_CALLS, VALUES, label
from pytest_benchmark.fixture import BenchmarkFixture

SYNC_ROUNDS = 300
ASYNC_ROUNDS = 10  # of ASYNC_CALLS misses each

# Keys never repeat within a run, across tests too.
_users = itertools.count(1_000_000)


def cases(libs: list[str]) -> list[tuple[str, str]]:
    return [
        (lib, size)
        for size in VALUES
        for lib in libs
        if not (lib == ZLIB and size == "small") and not (lib == TAGGED and size == "large")
    ]


class Wire:
    """Round trips (packed writes by redis-py connections) counted while active."""

    def __init__(self) -> None:
        self.round_trips = 0


@contextmanager
def counted_round_trips() -> Iterator[Wire]:
    """Count every ``send_packed_command`` of redis-py's sync and asyncio connections.

    One call sends one command or one whole pipeline, so it is one round trip.
    """
    wire = Wire()
    sync_class = redis.connection.AbstractConnection
    async_class = redis.asyncio.connection.AbstractConnection
    sync_send = sync_class.send_packed_command
    async_send = async_class.send_packed_command

    def send(self: Any, *args: Any, **kwargs: Any) -> Any:
        wire.round_trips += 1
        return sync_send(self, *args, **kwargs)

    async def asend(self: Any, *args: Any, **kwargs: Any) -> Any:
        wire.round_trips += 1
        return await async_send(self, *args, **kwargs)

    sync_class.send_packed_command = send  # type: ignore[method-assign]
    async_class.send_packed_command = asend  # type: ignore[method-assign]
    try:
        yield wire
    finally:
        sync_class.send_packed_command = sync_send  # type: ignore[method-assign]
        async_class.send_packed_command = async_send  # type: ignore[method-assign]


def _command_calls(raw: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = raw.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(item["calls"]) for name, item in stats.items()}


def wire_cost(raw: redis.Redis, miss: Callable[[], None]) -> tuple[int, dict[str, int]]:
    """Round trips and commands (by name) of one ``miss()``."""
    before = _command_calls(raw)
    with counted_round_trips() as wire:
        miss()
    after = _command_calls(raw)
    commands = {
        name: count - before.get(name, 0)
        for name, count in after.items()
        if name != "info" and count != before.get(name, 0)
    }
    return wire.round_trips, commands


def check_wire(
    benchmark: BenchmarkFixture, lib: str, round_trips: int, commands: dict[str, int]
) -> None:
    """Record the wire cost of one miss, and hold it to the target: exactly two.

    One read (the key, and for a tagged function its tags' stamps, in the same MGET), then
    one write (the conditional set and the tag index entries in one pipeline). The
    commands (``GET``, ``MGET``, ``EVAL``...) are recorded, not prescribed.
    """
    benchmark.extra_info.update(round_trips=round_trips, commands=commands)
    assert round_trips <= 2, f"a miss took {round_trips} round trips: {commands}"
    assert round_trips >= 2, f"a miss took {round_trips} round trip(s): {commands}"


@pytest.mark.parametrize(("lib", "size"), cases([KIROCACHE, ZLIB, "cachetools", "dogpile"]))
def test_miss_store_memory_sync(
    benchmark: BenchmarkFixture, stack: ExitStack, lib: str, size: str
) -> None:
    calls = Calls()
    profile = sync_participant(lib, VALUES[size], MEMORY_URL, stack, calls)
    label(benchmark, f"miss-store/memory/sync/{size}", lib)
    benchmark.pedantic(profile, setup=lambda: ((next(_users),), {}), rounds=SYNC_ROUNDS)
    assert calls.count == (1 if benchmark.disabled else SYNC_ROUNDS)  # every call a miss


@pytest.mark.parametrize(("lib", "size"), cases([KIROCACHE, ZLIB, "aiocache", "cashews"]))
def test_miss_store_memory_async(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    loop: asyncio.AbstractEventLoop,
    lib: str,
    size: str,
) -> None:
    calls = Calls()
    profile = async_participant(lib, VALUES[size], MEMORY_URL, loop, stack, calls)
    label(benchmark, f"miss-store/memory/async/{size}", lib, ops=ASYNC_CALLS)
    benchmark.pedantic(misses(loop, profile), setup=fresh_users, rounds=ASYNC_ROUNDS)
    assert calls.count == ASYNC_CALLS * (1 if benchmark.disabled else ASYNC_ROUNDS)


@pytest.mark.parametrize(("lib", "size"), cases([*KIROCACHE_LIBS, RAW, "dogpile"]))
def test_miss_store_redis_sync(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    redis_url: str,
    raw_redis: redis.Redis,
    lib: str,
    size: str,
) -> None:
    profile = sync_participant(lib, VALUES[size], redis_url, stack)
    profile(next(_users))  # connect outside the timing and the counting
    label(benchmark, f"miss-store/redis/sync/{size}", lib)
    benchmark.pedantic(profile, setup=lambda: ((next(_users),), {}), rounds=SYNC_ROUNDS)
    if lib in KIROCACHE_LIBS:
        check_wire(benchmark, lib, *wire_cost(raw_redis, lambda: profile(next(_users))))


@pytest.mark.parametrize(("lib", "size"), cases([*KIROCACHE_LIBS, RAW, "aiocache", "cashews"]))
def test_miss_store_redis_async(
    benchmark: BenchmarkFixture,
    stack: ExitStack,
    loop: asyncio.AbstractEventLoop,
    redis_url: str,
    raw_redis: redis.Redis,
    lib: str,
    size: str,
) -> None:
    profile = async_participant(lib, VALUES[size], redis_url, loop, stack)
    loop.run_until_complete(profile(next(_users)))
    label(benchmark, f"miss-store/redis/async/{size}", lib, ops=ASYNC_CALLS)
    benchmark.pedantic(misses(loop, profile), setup=fresh_users, rounds=ASYNC_ROUNDS)
    if lib in KIROCACHE_LIBS:
        cost = wire_cost(raw_redis, lambda: loop.run_until_complete(profile(next(_users))))
        check_wire(benchmark, lib, *cost)


def fresh_users() -> tuple[tuple[int], dict[str, Any]]:
    """The first of ``ASYNC_CALLS`` user ids no call has used yet."""
    first = next(_users)
    for _ in range(ASYNC_CALLS - 1):
        next(_users)
    return (first,), {}


def misses(loop: asyncio.AbstractEventLoop, profile: Callable[[int], Any]) -> Callable[[int], None]:
    """A sync callable awaiting ``ASYNC_CALLS`` misses, from user id ``first`` on."""

    async def run(first: int) -> None:
        for user in range(first, first + ASYNC_CALLS):
            await profile(user)

    return lambda first: loop.run_until_complete(run(first))
