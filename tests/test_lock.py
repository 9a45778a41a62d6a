"""DistributedLock: mutual exclusion across threads, tasks and processes, expiry, ownership."""

from __future__ import annotations

import asyncio
import doctest
import itertools
import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
import redis

from kirocache import Cache, cached
from kirocache.backends import Op, OpResult, _lock
from kirocache.backends._lock import DistributedLock, _delay
from kirocache.backends.memory import MemoryBackend
from kirocache.backends.redis import RedisBackend
from kirocache.exceptions import BackendError, ConfigurationError
from kirocache.testing.conformance import FullBackend

REDIS_ENV = ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB", "CACHE_DEBUG")
PROCESSES = 4
HOLD = 0.1


@pytest.fixture
def key() -> str:
    return f"kirocache-lock-test:{uuid.uuid4().hex}"


class Occupancy:
    """Counts holders inside a critical section and remembers the most at once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.inside = 0
        self.most = 0
        self.entries = 0

    def enter(self) -> None:
        with self._guard:
            self.inside += 1
            self.entries += 1
            self.most = max(self.most, self.inside)

    def leave(self) -> None:
        with self._guard:
            self.inside -= 1


# -- threads and tasks of one process --------------------------------------------------------


def test_threads_take_turns(backend: FullBackend, key: str) -> None:
    occupancy = Occupancy()
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        try:
            barrier.wait()
            for _ in range(3):
                lock = DistributedLock(backend, key, timeout=10, wait=20)
                assert lock.acquire() is True
                occupancy.enter()
                time.sleep(0.005)
                occupancy.leave()
                assert lock.release() is True
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert (occupancy.most, occupancy.entries) == (1, 24)
    assert backend.exists(key) is False


async def test_tasks_take_turns(backend: FullBackend, key: str) -> None:
    occupancy = Occupancy()

    async def work() -> None:
        for _ in range(3):
            lock = DistributedLock(backend, key, timeout=10, wait=20)
            assert await lock.aacquire() is True
            occupancy.enter()
            await asyncio.sleep(0.005)
            occupancy.leave()
            assert await lock.arelease() is True

    await asyncio.gather(*(work() for _ in range(8)))
    assert (occupancy.most, occupancy.entries) == (1, 24)
    assert await backend.aexists(key) is False


# -- expiry and ownership --------------------------------------------------------------------


def test_dead_holders_lock_expires(backend: FullBackend, key: str) -> None:
    dead = DistributedLock(backend, key, timeout=0.2)
    assert dead.acquire() is True
    assert DistributedLock(backend, key, wait=0).acquire() is False
    successor = DistributedLock(backend, key, timeout=10, wait=5)
    assert successor.acquire() is True
    # The dead holder's token no longer matches: it must not free the successor's lock.
    assert dead.release() is False
    assert backend.exists(key) is True
    assert successor.release() is True
    assert backend.exists(key) is False


async def test_dead_holders_lock_expires_async(backend: FullBackend, key: str) -> None:
    dead = DistributedLock(backend, key, timeout=0.2)
    assert await dead.aacquire() is True
    assert await DistributedLock(backend, key, wait=0).aacquire() is False
    successor = DistributedLock(backend, key, timeout=10, wait=5)
    assert await successor.aacquire() is True
    assert await dead.arelease() is False
    assert await backend.aexists(key) is True
    assert await successor.arelease() is True
    assert await backend.aexists(key) is False


def test_only_the_holder_releases(backend: FullBackend, key: str) -> None:
    holder = DistributedLock(backend, key)
    other = DistributedLock(backend, key, wait=0)
    assert holder.acquire() is True
    token = backend.get(key)
    assert other.acquire() is False
    assert other.release() is False
    assert backend.get(key) == token
    assert holder.release() is True
    assert holder.held is False
    assert holder.release() is False
    assert other.acquire() is True
    assert other.release() is True


async def test_only_the_holder_releases_async(backend: FullBackend, key: str) -> None:
    holder = DistributedLock(backend, key)
    other = DistributedLock(backend, key, wait=0)
    assert await holder.aacquire() is True
    token = await backend.aget(key)
    assert await other.aacquire() is False
    assert await other.arelease() is False
    assert await backend.aget(key) == token
    assert await holder.arelease() is True
    assert await holder.arelease() is False
    assert await other.aacquire() is True
    assert await other.arelease() is True


def test_lock_lives_for_timeout_and_tokens_are_fresh(backend: FullBackend, key: str) -> None:
    lock = DistributedLock(backend, key, timeout=timedelta(seconds=30))
    assert lock.acquire() is True
    remaining = backend.ttl(key)
    assert remaining is not None
    assert 0 < remaining <= 30
    first = backend.get(key)
    assert first is not None
    assert len(first) == 32
    assert lock.release() is True
    assert lock.acquire() is True
    assert backend.get(key) != first
    assert lock.release() is True


def test_acquiring_twice_is_a_mistake(key: str) -> None:
    lock = DistributedLock(MemoryBackend(), key)
    assert lock.acquire() is True
    with pytest.raises(RuntimeError, match="already held"):
        lock.acquire()
    assert lock.held is True
    assert repr(lock) == f"DistributedLock({key!r}, held=True)"


def test_waiter_gives_up_after_wait(key: str) -> None:
    now = [0.0]
    backend = MemoryBackend()
    assert DistributedLock(backend, key).acquire() is True
    attempts: list[float] = []
    original_execute = backend.execute

    def counting_execute(*args: Any, **kwargs: Any) -> list[OpResult]:
        attempts.append(now[0])
        now[0] += 0.3  # each attempt moves the injected clock on
        return original_execute(*args, **kwargs)

    backend.execute = counting_execute  # type: ignore[method-assign]
    waiter = DistributedLock(backend, key, wait=1.0, clock=lambda: now[0])
    assert waiter.acquire() is False
    assert attempts == pytest.approx([0.0, 0.3, 0.6, 0.9])
    assert waiter.held is False


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"wait": -1}, "wait"),
        ({"wait": float("nan")}, "wait"),
        ({"wait": "5"}, "wait"),
    ],
)
def test_bad_durations(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        DistributedLock(MemoryBackend(), "k", **options)


class BrokenBackend(MemoryBackend):
    def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        raise BackendError("down")

    async def aexecute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        raise BackendError("down")


def test_backend_faults_propagate(key: str) -> None:
    with pytest.raises(BackendError, match="down"):
        DistributedLock(BrokenBackend(), key).acquire()


async def test_backend_faults_propagate_async(key: str) -> None:
    with pytest.raises(BackendError, match="down"):
        await DistributedLock(BrokenBackend(), key).aacquire()


class SlotFailingBackend(MemoryBackend):
    def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        return [BackendError("slot down") for _ in ops]

    async def aexecute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        return [BackendError("slot down") for _ in ops]


def test_a_failure_in_the_ops_slot_propagates(key: str) -> None:
    with pytest.raises(BackendError, match="slot down"):
        DistributedLock(SlotFailingBackend(), key).acquire()


async def test_a_failure_in_the_ops_slot_propagates_async(key: str) -> None:
    with pytest.raises(BackendError, match="slot down"):
        await DistributedLock(SlotFailingBackend(), key).aacquire()


def test_backoff_doubles_to_a_cap_and_respects_the_deadline() -> None:
    for attempt, ceiling in [(0, 0.002), (1, 0.004), (3, 0.016), (5, 0.05), (40, 0.05)]:
        delays = [_delay(attempt, 10.0) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert _delay(10, 0.001) == 0.001


def test_docstring_example_runs() -> None:
    failed, attempted = doctest.testmod(_lock)
    assert failed == 0
    assert attempted >= 3


# -- separate processes against the real server ---------------------------------------------


def _hold_lock(url: str, key: str, log_key: str, mode: str, start: Any) -> None:
    """One process: wait for the others, take the lock, log the critical section, release."""
    backend = RedisBackend(url)
    log = redis.Redis.from_url(url)
    lock = DistributedLock(backend, key, timeout=10, wait=30)

    def critical_section() -> None:
        # CLOCK_MONOTONIC is one clock for every process on the host.
        entered = time.monotonic()
        log.rpush(log_key + ":pids", os.getpid())
        time.sleep(HOLD)
        log.rpush(log_key + ":spans", f"{os.getpid()} {entered} {time.monotonic()}")

    async def run_async() -> None:
        start.wait()
        if not await lock.aacquire():
            raise SystemExit(2)
        critical_section()
        if not await lock.arelease():
            raise SystemExit(3)

    if mode == "async":
        asyncio.run(run_async())
    else:
        start.wait()
        if not lock.acquire():
            raise SystemExit(2)
        critical_section()
        if not lock.release():
            raise SystemExit(3)
    backend.close()
    log.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_processes_take_turns(
    redis_url: str, key: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in REDIS_ENV:  # children inherit the environment; the URL says it all
        monkeypatch.delenv(name, raising=False)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    log_key = key + ":log"
    processes = [
        context.Process(target=_hold_lock, args=(redis_url, key, log_key, mode, start))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    exit_codes = [process.exitcode for process in processes]
    with redis.Redis.from_url(redis_url) as log:
        pids = [int(pid) for pid in log.lrange(log_key + ":pids", 0, -1)]
        spans = sorted(
            (float(entered), float(left))
            for _, entered, left in (
                raw.decode().split() for raw in log.lrange(log_key + ":spans", 0, -1)
            )
        )
        log.delete(log_key + ":pids", log_key + ":spans")
        lock_left = log.exists(key)
    assert exit_codes == [0] * PROCESSES
    assert len(pids) == PROCESSES
    assert set(pids) == {process.pid for process in processes}
    assert len(spans) == PROCESSES
    for (_, left), (entered, _) in itertools.pairwise(spans):
        assert left <= entered, f"critical sections overlap: {spans}"
    assert lock_left == 0


# -- the lease: acquire(lease=...), extend, and the renewal of @cached(lock="distributed") ----


def test_acquire_takes_the_lease_it_is_given(backend: FullBackend, key: str) -> None:
    lock = DistributedLock(backend, key, timeout=30)
    assert lock.timeout == 30
    assert lock.acquire(lease=timedelta(seconds=2)) is True
    remaining = backend.ttl(key)
    assert remaining is not None
    assert 0 < remaining <= 2
    assert lock.release() is True
    with pytest.raises(ConfigurationError, match="lease"):
        lock.acquire(lease=0)
    assert lock.held is False


class Now:
    """An injectable clock for the memory backend."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_extend_gives_a_full_lease_again_while_the_lock_is_ours(key: str) -> None:
    clock = Now()
    backend = MemoryBackend(clock=clock)
    lock = DistributedLock(backend, key, timeout=10)
    assert lock.extend() is False  # not acquired
    assert lock.acquire() is True
    clock.now += 8
    assert lock.extend() is True
    clock.now += 8  # 16 s after acquiring: alive only because it was extended
    assert DistributedLock(backend, key, wait=0).acquire() is False
    assert backend.ttl(key) == pytest.approx(2)
    clock.now += 3  # the lease ran out; another holder takes it
    successor = DistributedLock(backend, key, wait=0)
    assert successor.acquire() is True
    token = backend.get(key)
    assert lock.extend() is False  # lost: never extends the successor's lock
    assert backend.get(key) == token
    assert backend.ttl(key) == pytest.approx(10)
    assert lock.release() is False
    assert successor.release() is True


def test_extend_after_release_or_loss(backend: FullBackend, key: str) -> None:
    lock = DistributedLock(backend, key, timeout=10)
    assert lock.acquire(lease=5) is True
    assert lock.extend() is True
    remaining = backend.ttl(key)
    assert remaining is not None
    assert 0 < remaining <= 5  # the acquisition's lease, not the timeout
    assert lock.release() is True
    assert lock.extend() is False
    assert backend.exists(key) is False  # extending does not bring a released lock back
    assert lock.acquire() is True
    backend.delete(key)  # lost (as if it expired)
    assert lock.extend() is False
    assert backend.exists(key) is False


async def test_aextend(backend: FullBackend, key: str) -> None:
    lock = DistributedLock(backend, key, timeout=10)
    assert await lock.aacquire(lease=5) is True
    assert await lock.aextend() is True
    remaining = await backend.attl(key)
    assert remaining is not None
    assert 0 < remaining <= 5
    assert await lock.arelease() is True
    assert await lock.aextend() is False


def _lock_key(cache: Cache, func: Any, *args: Any) -> str:
    return cache.full_key(func.cache_key(*args)) + ":lock"


def test_the_lease_of_a_cached_functions_lock_follows_lock_timeout(backend: FullBackend) -> None:
    cache = Cache(backend)
    leases: list[float | None] = []

    @cached(prefix="lease:", cache=cache, lock="distributed", lock_timeout=3)
    def compute(x: int) -> int:
        leases.append(backend.ttl(_lock_key(cache, compute, x)))
        return x

    assert compute(1) == 1
    (lease,) = leases
    assert lease is not None
    assert 0 < lease <= 3  # before: 10 s whatever lock_timeout was
    assert backend.exists(_lock_key(cache, compute, 1)) is False


async def test_async_the_lease_follows_lock_timeout(backend: FullBackend) -> None:
    cache = Cache(backend)
    leases: list[float | None] = []

    @cached(prefix="alease:", cache=cache, lock="distributed", lock_timeout=3)
    async def compute(x: int) -> int:
        leases.append(await backend.attl(_lock_key(cache, compute, x)))
        return x

    assert await compute(1) == 1
    (lease,) = leases
    assert lease is not None
    assert 0 < lease <= 3
    assert await backend.aexists(_lock_key(cache, compute, 1)) is False


def _renewed_three_times(backend: MemoryBackend, clock: Now, lock_key: str, lease: float) -> None:
    """Move the backend's clock near the end of the lease, three times; each time the
    renewal (a real thread or task, every third of the lease) must give it a full lease."""
    for _ in range(3):
        clock.now += lease * 0.9
        deadline = time.monotonic() + 10
        while (backend.ttl(lock_key) or 0) < lease * 0.5:
            assert time.monotonic() < deadline, "the lease was not renewed"
            time.sleep(0.005)
        assert (backend.ttl(lock_key) or 0) <= lease  # renewed by one lease, no more
    assert backend.get(lock_key) is not None  # 2.7 leases after it was taken


def test_the_lock_is_renewed_while_the_leader_computes() -> None:
    clock = Now()
    backend = MemoryBackend(clock=clock)
    cache = Cache(backend)

    @cached(prefix="renew:", cache=cache, lock="distributed", lock_timeout=0.3)
    def compute(x: int) -> int:
        _renewed_three_times(backend, clock, _lock_key(cache, compute, x), 0.3)
        return x

    assert compute(1) == 1
    assert backend.exists(_lock_key(cache, compute, 1)) is False
    assert not [t for t in threading.enumerate() if t.name == "kirocache-lease"]  # stopped


async def test_async_the_lock_is_renewed_while_the_leader_computes() -> None:
    clock = Now()
    backend = MemoryBackend(clock=clock)
    cache = Cache(backend)

    @cached(prefix="arenew:", cache=cache, lock="distributed", lock_timeout=0.3)
    async def compute(x: int) -> int:
        lock_key = _lock_key(cache, compute, x)
        for _ in range(3):
            clock.now += 0.27
            deadline = time.monotonic() + 10
            while (backend.ttl(lock_key) or 0) < 0.15:
                assert time.monotonic() < deadline, "the lease was not renewed"
                await asyncio.sleep(0.005)
            assert (backend.ttl(lock_key) or 0) <= 0.3
        return x

    assert await compute(1) == 1
    assert backend.exists(_lock_key(cache, compute, 1)) is False
    me = asyncio.current_task()
    assert not [t for t in asyncio.all_tasks() if t is not me and t.get_name() == "kirocache-lease"]


@pytest.mark.slow  # real time: the server's own expiry is what is tested
def test_a_computation_longer_than_the_lease_keeps_the_lock_on_the_server(
    backend: FullBackend,
) -> None:
    cache = Cache(backend)
    seen: list[bool] = []

    @cached(prefix="renew:real:", cache=cache, lock="distributed", lock_timeout=0.3)
    def compute(x: int) -> int:
        lock_key = _lock_key(cache, compute, x)
        assert (backend.ttl(lock_key) or 0) <= 0.3  # the lease is lock_timeout
        for _ in range(4):
            time.sleep(0.3)  # four leases in all
            seen.append(DistributedLock(backend, lock_key, wait=0).acquire())
        return x

    assert compute(1) == 1
    assert seen == [False] * 4  # nobody else could take it while it ran
    assert backend.exists(_lock_key(cache, compute, 1)) is False


class RenewalFails(MemoryBackend):
    """Takes and frees locks, but every renewal (``set_if``) fails."""

    def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        if any(op.name == "set_if" and op.key.endswith(":lock") for op in ops):
            raise BackendError("renewal refused")
        return super().execute(ops, transaction=transaction)

    async def aexecute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        return self.execute(ops, transaction=transaction)


def test_renewal_failures_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    backend = RenewalFails()
    cache = Cache(backend)

    @cached(prefix="renew:fails:", cache=cache, lock="distributed", lock_timeout=0.06)
    def compute(x: int) -> int:
        deadline = time.monotonic() + 10
        while not any("could not renew" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        return x

    with caplog.at_level(logging.WARNING, logger="kirocache"):
        assert compute(1) == 1  # the computation goes on: a failed renewal is logged only
    (record, *_) = [r for r in caplog.records if "could not renew" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "renew:fails:1:lock" in record.getMessage()
    assert "renewal refused" in record.getMessage()


async def test_a_lost_lock_is_logged_and_renewal_stops(caplog: pytest.LogCaptureFixture) -> None:
    backend = MemoryBackend()
    cache = Cache(backend)

    @cached(prefix="renew:lost:", cache=cache, lock="distributed", lock_timeout=0.06)
    async def compute(x: int) -> int:
        backend.delete(_lock_key(cache, compute, x))  # as if it expired
        deadline = time.monotonic() + 10
        while not any("was lost" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        return x

    with caplog.at_level(logging.WARNING, logger="kirocache"):
        assert await compute(1) == 1
    lost = [r for r in caplog.records if "was lost" in r.getMessage()]
    assert len(lost) == 1  # renewals stopped there
    assert "renew:lost:1:lock" in lost[0].getMessage()
