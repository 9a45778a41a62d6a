"""Faults fail open: the caller never breaks, the breaker stops paying, the cache recovers."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from kirocache import MISSING, NEVER, BackendError, Cache, CircuitBreaker, CircuitOpenError
from kirocache._cache.guard import is_outage
from kirocache.backends._limits import MAX_TTL
from kirocache.backends.memory import MemoryBackend
from kirocache.exceptions import CommandError, InvalidKeyError, InvalidTTLError
from kirocache.metrics import InMemoryMetrics
from kirocache.testing import FaultyBackend


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def faulty() -> FaultyBackend:
    return FaultyBackend(MemoryBackend())


def make_cache(backend: Any, clock: Clock | None = None, **options: Any) -> Cache:
    breaker = CircuitBreaker(failure_threshold=3, recovery_time=1.0, clock=clock or Clock())
    return Cache(backend, breaker=breaker, **options)


def test_every_operation_fails_open(faulty: FaultyBackend) -> None:
    cache = Cache(faulty, breaker=None)
    cache.set("k", 1)
    faulty.failing = True
    assert cache.get("k", "fallback") == "fallback"
    assert cache.set("k", 2) is False
    assert cache.delete("k") is False
    cache.invalidator.pending.close()  # no retry in the background: the count below is exact
    assert cache.exists("k") is False
    assert cache.get_many(["k"]) == {}
    assert cache.set_many({"k": 3}) is False
    assert cache.delete_many(["k"]) == 0
    assert cache.ttl("k") is None
    assert cache.expire("k", 5) is False
    assert cache.persist("k") is False
    assert cache.incr("n") is None
    assert cache.get_or_set("k", lambda: "computed") == "computed"
    # Each call that reached the failing backend counts once. Not counted: get_or_set's
    # write (its read failed, so nothing computed after it is stored), and exists, ttl,
    # expire and persist of "k", which the refused delete kept pending, so they answer
    # "absent" here without asking the backend.
    assert cache.errors_total == 8
    faulty.failing = False
    # None, not 1 (issue 11): the deletes made during the outage were kept pending and are
    # replayed before a read from the recovered backend; nothing else was written
    assert cache.get("k") is None


async def test_every_async_operation_fails_open(faulty: FaultyBackend) -> None:
    cache = Cache(faulty, breaker=None)
    await cache.aset("k", 1)
    faulty.failing = True
    assert await cache.aget("k", "fallback") == "fallback"
    assert await cache.aset("k", 2) is False
    assert await cache.adelete("k") is False
    assert await cache.aexists("k") is False
    assert await cache.aget_many(["k"]) == {}
    assert await cache.aset_many({"k": 3}) is False
    assert await cache.adelete_many(["k"]) == 0
    assert await cache.attl("k") is None
    assert await cache.aincr("n") is None
    assert await cache.adelete_pattern("k*") == 0
    assert await cache.aget_or_set("k", lambda: "computed") == "computed"
    faulty.failing = False
    assert await cache.aget("k") is None  # the deletes were kept pending, then replayed


def test_errors_are_counted_in_metrics(faulty: FaultyBackend) -> None:
    cache = Cache(faulty, breaker=None)
    faulty.failing = True
    cache.get("user:1")
    cache.set("user:1", 1)
    assert isinstance(cache.metrics, InMemoryMetrics)
    assert sum(s.errors for s in cache.metrics.stats()) == 2


def test_breaker_stops_calling_a_failing_backend_and_probes_it_back(
    faulty: FaultyBackend,
) -> None:
    clock = Clock()
    cache = make_cache(faulty, clock)
    faulty.failing = True
    for _ in range(100):
        assert cache.get("k", MISSING) is MISSING
    assert faulty.calls["get"] == 3  # the threshold; the other 97 never reached it
    assert cache.breaker is not None
    assert cache.breaker.state == "open"
    assert cache.errors_total == 100
    faulty.failing = False
    clock.now += 1.0
    cache.set("k", "back")  # the probe
    assert cache.breaker.state == "closed"
    assert cache.get("k") == "back"


async def test_breaker_guards_async_calls_too(faulty: FaultyBackend) -> None:
    clock = Clock()
    cache = make_cache(faulty, clock)
    faulty.failing = True
    for _ in range(50):
        await cache.aget("k")
    assert faulty.calls["aget"] == 3
    faulty.failing = False
    clock.now += 1.0
    assert await cache.aset("k", 1)
    assert await cache.aget("k") == 1


def test_failed_probe_keeps_the_breaker_open(faulty: FaultyBackend) -> None:
    clock = Clock()
    cache = make_cache(faulty, clock)
    faulty.failing = True
    for _ in range(3):
        cache.get("k")
    clock.now += 1.0
    cache.get("k")  # probe fails
    assert faulty.calls["get"] == 4
    cache.get("k")
    assert faulty.calls["get"] == 4
    assert cache.breaker is not None
    assert cache.breaker.state == "open"


def test_on_error_raise(faulty: FaultyBackend) -> None:
    clock = Clock()
    cache = make_cache(faulty, clock, on_error="raise")
    faulty.failing = True
    for _ in range(3):
        with pytest.raises(BackendError, match="injected"):
            cache.get("k")
    with pytest.raises(CircuitOpenError):
        cache.get("k")


async def test_on_error_raise_async_wraps_foreign_errors() -> None:
    backend = FaultyBackend(MemoryBackend(), error=ConnectionResetError("peer reset"))
    cache = Cache(backend, on_error="raise", breaker=None)
    backend.failing = True
    with pytest.raises(BackendError, match="peer reset") as info:
        await cache.aget("k")
    assert isinstance(info.value.__cause__, ConnectionResetError)


def test_foreign_exceptions_from_a_backend_fail_open() -> None:
    backend = FaultyBackend(MemoryBackend(), error=TimeoutError("slow"))
    cache = Cache(backend, breaker=None)
    backend.failing = True
    assert cache.get("k", 0) == 0
    assert cache.errors_total == 1


def test_logged_once_per_burst(faulty: FaultyBackend, caplog: pytest.LogCaptureFixture) -> None:
    cache = Cache(faulty, breaker=None)
    with caplog.at_level(logging.WARNING, logger="kirocache"):
        faulty.failing = True
        for _ in range(20):
            cache.get("k")
        faulty.failing = False
        cache.get("k")
        cache.get("k")
        faulty.failing = True
        cache.get("k")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("failing open" in m for m in messages) == 2
    assert sum("recovered after 20 failed calls" in m for m in messages) == 1
    assert len(messages) == 3


def test_programming_errors_still_raise_while_the_backend_is_down(faulty: FaultyBackend) -> None:
    cache = Cache(faulty)
    faulty.failing = True
    with pytest.raises(TypeError):
        cache.set(42, "v")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="object"):
        cache.set("k", object())


# -- the real server ---------------------------------------------------------------------


@pytest.mark.slow  # a real server stopped and restarted
@pytest.mark.real_redis
def test_real_server_stopped_mid_run_then_back(fault_redis: Any) -> None:
    cache = Cache.from_url(
        fault_redis.url,
        breaker=CircuitBreaker(failure_threshold=2, recovery_time=0.1, max_recovery_time=0.2),
    )
    try:
        assert cache.set("k", "before")
        fault_redis.stop()
        for _ in range(20):
            assert cache.get("k", "fallback") == "fallback"  # no exception reaches us
        assert cache.breaker is not None
        assert cache.breaker.state in ("open", "half_open")
        assert cache.errors_total == 20
        fault_redis.restart()
        deadline = time.monotonic() + 10
        while not cache.set("k", "after") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cache.get("k") == "after"
        assert cache.breaker.state == "closed"
    finally:
        cache.guard.close()  # no PING in flight past the close below
        cache.close()


@pytest.mark.slow  # a real server stopped and restarted
@pytest.mark.real_redis
async def test_real_server_stopped_mid_run_async(fault_redis: Any) -> None:
    cache = Cache.from_url(
        fault_redis.url,
        breaker=CircuitBreaker(failure_threshold=2, recovery_time=0.1, max_recovery_time=0.2),
    )
    try:
        assert await cache.aset("k", "before")
        fault_redis.stop()
        for _ in range(10):
            assert await cache.aget("k", "fallback") == "fallback"
        fault_redis.restart()
        deadline = time.monotonic() + 10
        while not await cache.aset("k", "after") and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert await cache.aget("k") == "after"
    finally:
        cache.guard.close()
        await cache.aclose()
        cache.close()


@pytest.mark.slow  # real socket timeouts
def test_unanswering_server_costs_one_timeout_then_nothing(blackhole: Any) -> None:
    from kirocache.backends.redis import RedisBackend

    backend = FaultyBackend(RedisBackend(blackhole.url, socket_timeout=0.2, connect_timeout=0.2))
    cache = Cache(
        backend, breaker=CircuitBreaker(failure_threshold=3, recovery_time=60, max_recovery_time=60)
    )
    try:
        started = time.monotonic()
        for _ in range(3):
            assert cache.get("k", "fallback") == "fallback"
        # each of the first calls is bounded by the socket timeout (peers wait 2-10 s)
        assert time.monotonic() - started < 3 * 2.0
        assert cache.breaker is not None
        assert cache.breaker.state == "open"
        for _ in range(200):
            assert cache.get("k", "fallback") == "fallback"
            assert cache.set("k", 1) is False
        # a call that waits out its whole deadline opens the breaker at once (issue 12,
        # item 10): the other 402 calls never touched the network
        assert backend.calls["get"] == 1
        assert backend.calls["set"] == 0
    finally:
        cache.guard.close()  # the probe would go on PINGing the silent server
        cache.close()


# ---- faults, not mistakes: what opens the breaker (issue 11, defect 4) ------------------------


def _closed(cache: Cache) -> bool:
    breaker = cache.breaker
    assert breaker is not None
    return breaker.state == "closed" and breaker.times_opened == 0


def test_a_ttl_too_long_is_the_callers_error_and_never_opens_the_breaker(cache: Cache) -> None:
    cache.set("good", "value")
    for _ in range(3):
        with pytest.raises(InvalidTTLError, match="at most 100 years"):
            cache.set("k", 1, ttl=1e300)
    with pytest.raises(InvalidTTLError):
        cache.set_many({"k": 1}, ttl=1e300)
    with pytest.raises(InvalidTTLError):
        cache.expire("good", 1e300)
    assert _closed(cache)
    assert cache.errors_total == 0
    assert cache.get("good") == "value"  # another caller still hits
    assert cache.get("k") is None
    assert cache.set("k", 1, ttl=NEVER)  # no expiry is still said with NEVER
    assert cache.set("k", 1, ttl=MAX_TTL)


async def test_a_ttl_too_long_is_refused_on_async_calls_too(cache: Cache) -> None:
    await cache.aset("good", "value")
    for _ in range(3):
        with pytest.raises(InvalidTTLError):
            await cache.aset("k", 1, ttl=1e300)
    assert _closed(cache)
    assert await cache.aget("good") == "value"


def test_a_lone_surrogate_key_is_refused_the_same_on_every_backend(cache: Cache) -> None:
    cache.set("good", "value")
    bad = "user:\ud800"
    calls = (
        lambda: cache.get(bad),
        lambda: cache.set(bad, 1),
        lambda: cache.exists(bad),
        lambda: cache.get_many([bad]),
    )
    for call in calls:
        with pytest.raises(InvalidKeyError, match="lone surrogate"):
            call()
    assert _closed(cache)
    assert cache.errors_total == 0
    assert cache.get("good") == "value"


def test_a_delete_of_a_lone_surrogate_key_is_refused_and_forgotten(cache: Cache) -> None:
    cache.set("good", "value")
    with pytest.raises(InvalidKeyError):
        cache.delete("user:\ud800")
    assert cache.get("good") == "value"
    assert cache.invalidator.pending.figures()["invalidations_pending"] == 0


@pytest.mark.real_redis
def test_a_lone_surrogate_key_never_reaches_the_server(redis_url: str) -> None:
    import redis

    from kirocache.backends.redis import RedisBackend

    cache = Cache(RedisBackend(redis_url))
    try:
        with redis.Redis.from_url(redis_url) as raw:
            raw.config_resetstat()
            for call in (lambda: cache.get("\ud800"), lambda: cache.set("\ud800", 1)):
                with pytest.raises(InvalidKeyError):
                    call()
            stats = raw.info("commandstats")
        assert "cmdstat_get" not in stats
        assert "cmdstat_set" not in stats
        assert _closed(cache)
    finally:
        cache.close()


def _hold_a_set_at(cache: Cache, key: str) -> None:
    """Put a set where a value is expected, as a tag index would be (WRONGTYPE on GET)."""
    full = cache.keyspace.resolve(key, None)[0]
    cache.backend.tag_add(full, ["member"], None)


def test_a_wrongtype_answer_fails_that_call_only(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    cache.set("good", "value")
    _hold_a_set_at(cache, "k")
    with caplog.at_level(logging.WARNING, logger="kirocache"):
        for _ in range(10):
            assert cache.get("k", "fallback") == "fallback"  # fails open
    assert _closed(cache)
    assert cache.errors_total == 10
    assert cache.get("good") == "value"
    assert len(caplog.records) == 1  # refusals are logged, at most once a second
    assert "refused get" in caplog.records[0].getMessage()


async def test_a_wrongtype_answer_raises_under_on_error_raise(backend: Any) -> None:
    cache = Cache(backend, on_error="raise")
    await cache.aset("good", "value")
    _hold_a_set_at(cache, "k")
    for _ in range(5):
        with pytest.raises(CommandError, match="WRONGTYPE"):
            await cache.aget("k")
    assert _closed(cache)
    assert await cache.aget("good") == "value"


@pytest.mark.real_redis
def test_a_read_only_replica_opens_the_breaker(fault_redis: Any) -> None:
    import redis

    cache = Cache.from_url(fault_redis.url, breaker=CircuitBreaker(probe_interval=None))
    try:
        with redis.Redis.from_url(fault_redis.url) as raw:
            # a replica of a master that is not there: it answers, and refuses every write
            raw.execute_command("REPLICAOF", "127.0.0.1", "1")
            for _ in range(3):
                assert cache.set("k", 1) is False  # READONLY: an outage, failed open
            assert cache.breaker is not None
            assert cache.breaker.state == "open"
            raw.execute_command("REPLICAOF", "NO", "ONE")
    finally:
        cache.close()


def test_an_answer_to_one_bad_command_closes_a_half_open_breaker() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1.0, clock=clock)
    faulty = FaultyBackend(MemoryBackend(), error=BackendError("connection refused"))
    cache = Cache(faulty, breaker=breaker)
    faulty.failing = True
    cache.get("k")
    assert breaker.state == "open"
    faulty.error = CommandError("WRONGTYPE")  # the store is back, this one key is wrong
    clock.now += 1.0
    assert cache.get("k", "fallback") == "fallback"
    assert breaker.state == "closed"
    assert breaker.times_opened == 1


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (BackendError("connection refused"), True),
        (CircuitOpenError("open"), True),
        (ConnectionResetError("a third-party backend's own error"), True),
        (CommandError("WRONGTYPE"), False),
        (InvalidKeyError("a bug, raised, never counted"), False),
    ],
)
def test_only_outages_count_toward_the_breaker(error: Exception, outage: bool) -> None:
    assert is_outage(error) is outage


@pytest.mark.slow  # holds the only pooled connection for 0.3 s
@pytest.mark.real_redis
async def test_waiting_for_a_pooled_connection_never_opens_the_breaker(redis_url: str) -> None:
    from kirocache.backends.redis import RedisBackend

    backend = RedisBackend(redis_url, max_connections=1, pool_timeout=0.05, socket_timeout=2)
    cache = Cache(backend)
    try:
        await cache.aset("good", "value")
        holder = asyncio.create_task(backend._acall("hold", ("BLPOP", "kc:nothing", 0.3)))
        await asyncio.sleep(0.02)  # the holder has the connection
        got = [await cache.aget("good", "fallback") for _ in range(5)]
        assert got == ["fallback"] * 5  # each waited 50 ms and failed open
        await holder
        assert _closed(cache)
        assert await cache.aget("good") == "value"
    finally:
        await cache.aclose()
        cache.close()


# ---- recovery follows the backend (issue 11, defect 5) -----------------------------------------


def _open(cache: Cache, faulty: FaultyBackend) -> CircuitBreaker:
    faulty.failing = True
    for _ in range(3):
        cache.get("k")
    breaker = cache.breaker
    assert breaker is not None
    assert breaker.state == "open"
    return breaker


def _wait_for(condition: Any, seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_a_background_probe_resumes_hits_as_soon_as_the_backend_answers(
    faulty: FaultyBackend,
) -> None:
    # The timed retry is 30 s away and the clock never moves: only the probe can close it.
    breaker = CircuitBreaker(recovery_time=30, probe_interval=0.02, clock=Clock())
    cache = Cache(faulty, breaker=breaker)
    cache.set("k", "value")
    _open(cache, faulty)
    assert _wait_for(lambda: faulty.calls["ping"] >= 2)  # probing while down
    assert breaker.state == "open"
    assert cache.get("k") is None
    faulty.failing = False
    assert _wait_for(lambda: breaker.state == "half_open")
    assert cache.get("k") == "value"
    assert breaker.state == "closed"
    probe = cache.guard.probe_thread
    assert probe is not None
    assert _wait_for(lambda: not probe.is_alive())  # the probe ends with the outage


def test_the_probe_is_a_daemon_thread_that_stops_on_close(faulty: FaultyBackend) -> None:
    cache = Cache(faulty, breaker=CircuitBreaker(probe_interval=0.02, clock=Clock()))
    _open(cache, faulty)
    probe = cache.guard.probe_thread
    assert probe is not None
    assert probe.is_alive()
    assert probe.daemon  # never keeps a process alive
    cache.guard.close()
    assert not probe.is_alive()  # close joins it
    pings = faulty.calls["ping"]
    time.sleep(0.06)
    assert faulty.calls["ping"] == pings


def test_without_a_probe_the_timed_half_open_remains(faulty: FaultyBackend) -> None:
    clock = Clock()
    breaker = CircuitBreaker(recovery_time=1.0, probe_interval=None, clock=clock)
    cache = Cache(faulty, breaker=breaker)
    cache.set("k", "value")
    _open(cache, faulty)
    faulty.failing = False
    assert cache.guard.probe_thread is None  # this cache never started one
    assert cache.get("k") is None
    clock.now += 1.0
    assert cache.get("k") == "value"


def test_half_open_lets_one_call_through_not_a_herd() -> None:
    release = threading.Event()
    entered = threading.Event()

    class Slow(MemoryBackend):
        held = 0

        def get(self, key: str) -> bytes | None:
            if not release.is_set():
                Slow.held += 1
                entered.set()
                release.wait(5)
            return super().get(key)

    inner = Slow()
    faulty = FaultyBackend(inner)
    cache = Cache(faulty, breaker=CircuitBreaker(probe_interval=None, clock=Clock()))
    cache.set("k", "value")
    breaker = _open(cache, faulty)
    faulty.failing = False
    breaker.backend_answered()  # as the probe does when a PING comes back
    results: list[object] = []
    herd = [
        threading.Thread(target=lambda: results.append(cache.get("k", "fb"))) for _ in range(20)
    ]
    for thread in herd:
        thread.start()
    assert entered.wait(5)
    assert _wait_for(lambda: len(results) == 19)  # the others failed fast
    assert Slow.held == 1
    release.set()
    for thread in herd:
        thread.join()
    assert breaker.state == "closed"
    assert results.count("value") == 1


@pytest.mark.slow  # a real server stopped for 3 s and restarted
@pytest.mark.real_redis
def test_hits_resume_within_a_second_of_a_real_server_coming_back(fault_redis: Any) -> None:
    # Before: open 1 s, then 2 s, then 4 s after failed tries, so a server back after 3 s
    # was first tried again about 7 s after the outage began.
    cache = Cache.from_url(fault_redis.url)
    try:
        cache.set("k", "value")
        fault_redis.stop()
        for _ in range(3):
            assert cache.get("k", "fallback") == "fallback"
        assert cache.breaker is not None
        assert cache.breaker.state == "open"
        time.sleep(3)
        fault_redis.start()
        back = time.monotonic()
        with Cache.from_url(fault_redis.url) as writer:
            writer.set("k", "value")  # the restart lost the data
        while cache.get("k") != "value" and time.monotonic() - back < 10:
            time.sleep(0.01)
        assert time.monotonic() - back < 1.0
        assert cache.breaker.state == "closed"
    finally:
        cache.guard.close()
        cache.close()
