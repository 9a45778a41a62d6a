"""@cached and @invalidates on every backend, sync and async side by side."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import kirocache
from kirocache import (
    MISSING,
    Cache,
    ConfigurationError,
    Namespace,
    SerializationError,
    awarm,
    cached,
    invalidates,
    presets,
    warm,
)
from kirocache.backends import Op, OpResult
from kirocache.backends._lock import DistributedLock
from kirocache.backends.memory import MemoryBackend
from kirocache.backends.redis import RedisBackend
from kirocache.testing import FaultyBackend, ManualClock
from kirocache.testing.conformance import FullBackend

PROFILE = Namespace("user:profile:", ttl=3600)
REDIS_ENV = ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB", "CACHE_DEBUG")


@dataclasses.dataclass
class Profile:
    id: int
    name: str
    joined: dt.date


# -- hits, misses and keys ----------------------------------------------------------------


def test_miss_then_hit_with_the_same_type(cache: Cache) -> None:
    calls = Counter[int]()

    @cached(prefix=PROFILE, cache=cache)
    def get_profile(user_id: int) -> Profile:
        calls[user_id] += 1
        return Profile(user_id, "Ada", dt.date(2024, 1, 2))

    first = get_profile(42)
    second = get_profile(user_id=42)
    assert first == second == Profile(42, "Ada", dt.date(2024, 1, 2))
    assert type(second) is Profile
    assert calls[42] == 1
    assert cache.exists("user:profile:42")
    assert get_profile.cache_key(42) == "user:profile:42"


async def test_async_miss_then_hit_with_the_same_type(cache: Cache) -> None:
    calls = Counter[int]()

    @cached(prefix=PROFILE, cache=cache)
    async def get_profile(user_id: int) -> Profile:
        calls[user_id] += 1
        return Profile(user_id, "Ada", dt.date(2024, 1, 2))

    first = await get_profile(42)
    second = await get_profile(user_id=42)
    assert first == second
    assert type(second) is Profile
    assert calls[42] == 1
    assert get_profile.cache_key(42) == "user:profile:42"


def test_key_template_and_ttl(cache: Cache) -> None:
    @cached(prefix="search:", key="{query}:{page}", ttl=60, cache=cache)
    def search(query: str, page: int = 1, debug: bool = False) -> list[str]:
        return [query] * page

    assert search("python", 2) == ["python", "python"]
    assert search("python", page=2, debug=True) == ["python", "python"]  # debug is not in the key
    assert cache.exists("search:python:2")
    left = cache.ttl("search:python:2")
    assert left is not None
    assert left <= 60


def test_default_cache_is_looked_up_at_call_time() -> None:
    @cached(prefix="late:")
    def answer() -> int:
        return 42

    first = Cache(MemoryBackend())
    second = Cache(MemoryBackend())
    previous = kirocache._cache.default._default
    try:
        kirocache.configure(first)
        assert answer() == 42
        assert first.exists("late:")
        kirocache.configure(second)
        assert answer() == 42
        assert second.exists("late:")
    finally:
        kirocache._cache.default._default = previous


def test_condition_decides_what_is_stored(cache: Cache) -> None:
    calls = []

    @cached(prefix="maybe:", cache=cache, condition=lambda result: result is not None)
    def find(name: str) -> dict[str, str] | None:
        calls.append(name)
        return None if name == "nobody" else {"name": name}

    assert find("nobody") is None
    assert find("nobody") is None
    assert find("ada") == {"name": "ada"}
    assert find("ada") == {"name": "ada"}
    assert calls == ["nobody", "nobody", "ada"]


def test_cached_none_is_a_hit(cache: Cache) -> None:
    calls = []

    @cached(prefix="none:", cache=cache)
    def nothing(x: int) -> None:
        calls.append(x)

    nothing(1)
    nothing(1)
    assert calls == [1]


# -- methods ------------------------------------------------------------------------------


def test_methods_classmethods_and_staticmethods(cache: Cache) -> None:
    calls: list[str] = []

    class Repo:
        def __init__(self, name: str) -> None:
            self.name = name

        @cached(prefix="repo:m:", cache=cache)
        def get(self, item: int) -> str:
            calls.append(f"m{item}")
            return f"{self.name}:{item}"

        @classmethod
        @cached(prefix="repo:c:", cache=cache)
        def make(cls, item: int) -> str:
            calls.append(f"c{item}")
            return f"class:{item}"

        @staticmethod
        @cached(prefix="repo:s:", cache=cache)
        def pure(item: int) -> int:
            calls.append(f"s{item}")
            return item * 2

    repo = Repo("a")
    assert repo.get(1) == repo.get(1) == "a:1"
    assert Repo.make(2) == Repo.make(2) == "class:2"
    assert Repo.pure(3) == repo.pure(3) == 6
    assert calls == ["m1", "c2", "s3"]
    assert repo.get.cache_key(1) == "repo:m:1"  # self is left out of the key
    assert repo.get.invalidate(1)
    assert repo.get(1) == "a:1"
    assert calls[-1] == "m1"


# -- helpers ------------------------------------------------------------------------------


def test_helpers_invalidate_refresh_get_cached(cache: Cache) -> None:
    version = [0]

    @cached(prefix="v:", cache=cache)
    def current(item: int) -> int:
        version[0] += 1
        return version[0]

    assert current.get_cached(1) is MISSING
    assert current(1) == 1
    assert current.get_cached(1) == 1
    assert current.refresh(1) == 2
    assert current(1) == 2
    assert current.invalidate(1)
    assert not current.invalidate(1)
    assert current(1) == 3
    assert current.__wrapped__(1) == 4  # the undecorated function


async def test_async_helpers_are_awaitable(cache: Cache) -> None:
    version = [0]

    @cached(prefix="v:", cache=cache)
    async def current(item: int) -> int:
        version[0] += 1
        return version[0]

    assert await current.get_cached(1) is MISSING
    assert await current(1) == 1
    assert await current.refresh(1) == 2
    assert await current.get_cached(1) == 2
    assert await current.invalidate(1)
    assert await current(1) == 3


def test_sync_and_async_wrappers_expose_the_same_names() -> None:
    def public(cls: type) -> set[str]:
        return {name for name in dir(cls) if not name.startswith("_")}

    assert public(kirocache.CachedFunction) == public(kirocache.AsyncCachedFunction)


# -- invalidation -------------------------------------------------------------------------


def test_invalidates_after_a_normal_return_only(cache: Cache) -> None:
    @cached(prefix=PROFILE, key="{user_id}", cache=cache)
    def get_profile(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    @invalidates(prefix=PROFILE, key="{user_id}", patterns=["search:{user_id}:*"], cache=cache)
    def update(user_id: int, fail: bool = False) -> str:
        if fail:
            raise RuntimeError("database down")
        return "ok"

    get_profile(7)
    cache.set("search:7:a", 1)
    cache.set("search:8:a", 1)
    with pytest.raises(RuntimeError, match="database down"):
        update(7, fail=True)
    assert cache.exists("user:profile:7")
    assert update(7) == "ok"
    assert not cache.exists("user:profile:7")
    assert not cache.exists("search:7:a")
    assert cache.exists("search:8:a")


async def test_async_invalidates(cache: Cache) -> None:
    @cached(prefix=PROFILE, key="{user_id}", cache=cache)
    async def get_profile(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    @invalidates(keys=["user:profile:{user_id}"], cache=cache)
    async def update(user_id: int) -> None:
        await asyncio.sleep(0)

    await get_profile(3)
    assert cache.exists("user:profile:3")
    await update(3)
    assert not cache.exists("user:profile:3")


def test_invalidates_needs_something_to_remove() -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        invalidates(prefix=PROFILE)(lambda user_id: None)
    with pytest.raises(ConfigurationError, match="something"):
        invalidates()(lambda user_id: None)


def test_tags_invalidate_every_entry_of_a_tag(cache: Cache) -> None:
    @cached(prefix="progress:", tags=["user:{user_id}"], ttl=60, cache=cache)
    def progress(user_id: int, course: str) -> int:
        return len(course)

    @cached(prefix="recs:", tags=["user:{user_id}"], ttl=60, cache=cache)
    def recommendations(user_id: int) -> list[str]:
        return ["rust"]

    progress(1, "python")
    progress(1, "go")
    progress(2, "go")
    recommendations(1)
    assert cache.invalidate_tags("user:1") == 3
    assert not cache.exists(progress.cache_key(1, "python"))
    assert not cache.exists(recommendations.cache_key(1))
    assert cache.exists(progress.cache_key(2, "go"))


async def test_async_tags(cache: Cache) -> None:
    @cached(prefix="recs:", tags=["user:{user_id}"], ttl=60, cache=cache)
    async def recommendations(user_id: int) -> list[str]:
        return ["rust"]

    await recommendations(1)
    assert await cache.ainvalidate_tags("user:1") == 1
    assert await recommendations.get_cached(1) is MISSING


# -- stampede protection ------------------------------------------------------------------


def test_hundred_threads_one_call(cache: Cache) -> None:
    calls = []
    start = threading.Barrier(100)

    @cached(prefix="slow:", cache=cache)
    def slow(x: int) -> int:
        calls.append(x)
        time.sleep(0.2)
        return x * 10

    results: list[int] = []

    def caller() -> None:
        start.wait()
        results.append(slow(7))

    threads = [threading.Thread(target=caller) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [7]
    assert results == [70] * 100


@pytest.fixture
def roomy_cache(
    request: pytest.FixtureRequest, backend: FullBackend, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cache]:
    """``cache``, with room on the real server for 100 tasks that connect at once.

    The default 0.25 s connect timeout is for a live service, where a slow connect is a
    fault to fail open on. Opening 50 connections at once on a loaded 2-core test machine
    can take longer: a read then fails open and its caller computes too. What the tests
    using this fixture check is the stampede guard, not the connect timeout.
    """
    if request.node.callspec.params["backend"] != "redis":
        yield Cache(backend)
        return
    for name in REDIS_ENV:
        monkeypatch.delenv(name, raising=False)
    roomy = RedisBackend(
        request.getfixturevalue("redis_url"),
        max_connections=100,
        connect_timeout=10,
        socket_timeout=10,
        pool_timeout=10,
    )
    try:
        yield Cache(roomy)
    finally:
        roomy.close()


async def test_hundred_tasks_one_call(roomy_cache: Cache) -> None:
    cache = roomy_cache
    calls = []

    @cached(prefix="slow:", cache=cache)
    async def slow(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0.05)
        return x * 10

    results = await asyncio.gather(*(slow(7) for _ in range(100)))
    assert calls == [7]
    assert results == [70] * 100


async def test_a_failed_leader_does_not_fail_the_waiters(cache: Cache) -> None:
    attempts = []

    @cached(prefix="flaky:", cache=cache)
    async def flaky(x: int) -> int:
        attempts.append(x)
        await asyncio.sleep(0.02)
        if len(attempts) == 1:
            raise ValueError("first call fails")
        return x

    results = await asyncio.gather(*(flaky(1) for _ in range(5)), return_exceptions=True)
    assert sum(isinstance(r, ValueError) for r in results) == 1
    assert results.count(1) == 4


def test_a_failed_leader_does_not_fail_the_waiting_threads(cache: Cache) -> None:
    attempts = []
    inside = threading.Event()
    start = threading.Event()

    @cached(prefix="flaky:", cache=cache)
    def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            inside.set()
            assert start.wait(10)  # the others are waiting for this leader by now
            raise ValueError("first call fails")
        return x

    outcomes: list[object] = []

    def caller() -> None:
        try:
            outcomes.append(flaky(1))
        except ValueError as exc:
            outcomes.append(exc)

    leader = threading.Thread(target=caller)
    leader.start()
    assert inside.wait(10)
    followers = [threading.Thread(target=caller) for _ in range(4)]
    for thread in followers:
        thread.start()
    time.sleep(0.05)  # let the followers reach the flight
    start.set()
    for thread in [leader, *followers]:
        thread.join(10)
    assert sum(isinstance(outcome, ValueError) for outcome in outcomes) == 1
    assert outcomes.count(1) == 4


class _LateReader:
    """A backend whose first ``get`` reads the store, then answers only when released.

    That reader misses, and its miss arrives after another caller computed and stored the
    value: the window in which a stampede guard that only knows flights in progress would
    let the function run a second time.
    """

    def __init__(self, inner: MemoryBackend) -> None:
        self.inner = inner
        self.read = threading.Event()
        self.release = threading.Event()
        self.hold = True

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def get(self, key: str) -> bytes | None:
        raw = self.inner.get(key)
        if self.hold:
            self.hold = False
            self.read.set()
            assert self.release.wait(10)
        return raw

    async def aget(self, key: str) -> bytes | None:
        raw = self.inner.get(key)
        if self.hold:
            self.hold = False
            self.read.set()
            assert await asyncio.to_thread(self.release.wait, 10)
        return raw


def test_a_miss_read_before_the_store_does_not_run_the_function_again() -> None:
    backend = _LateReader(MemoryBackend())
    cache = Cache(backend)  # type: ignore[arg-type]
    calls: list[int] = []

    @cached(prefix="late:", cache=cache)
    def load(x: int) -> int:
        calls.append(x)
        return x * 10

    late: list[int] = []
    reader = threading.Thread(target=lambda: late.append(load(3)))
    reader.start()
    assert backend.read.wait(10)  # the late reader has read its miss...
    assert load(3) == 30  # ...then another caller computes and stores
    backend.release.set()  # ...then the late reader's miss arrives
    reader.join(10)
    assert late == [30]
    assert calls == [3]


async def test_async_a_miss_read_before_the_store_does_not_run_the_function_again() -> None:
    backend = _LateReader(MemoryBackend())
    cache = Cache(backend)  # type: ignore[arg-type]
    calls: list[int] = []

    @cached(prefix="late:", cache=cache)
    async def load(x: int) -> int:
        calls.append(x)
        return x * 10

    late = asyncio.create_task(load(3))
    assert await asyncio.to_thread(backend.read.wait, 10)
    assert await load(3) == 30
    backend.release.set()
    assert await late == 30
    assert calls == [3]


# -- faults and errors --------------------------------------------------------------------


def test_backend_fault_never_fails_the_call() -> None:
    backend = FaultyBackend(MemoryBackend())
    cache = Cache(backend)
    calls = []

    @cached(prefix="x:", cache=cache)
    def compute(x: int) -> int:
        calls.append(x)
        return x + 1

    backend.failing = True
    assert compute(1) == compute(1) == 2
    assert calls == [1, 1]


async def test_async_backend_fault_never_fails_the_call() -> None:
    backend = FaultyBackend(MemoryBackend())
    cache = Cache(backend)

    @cached(prefix="x:", cache=cache)
    async def compute(x: int) -> int:
        return x + 1

    backend.failing = True
    assert await compute(1) == 2


def test_distributed_lock_fails_open() -> None:
    backend = FaultyBackend(MemoryBackend())
    cache = Cache(backend)
    calls = []

    @cached(prefix="x:", cache=cache, lock="distributed")
    def compute(x: int) -> int:
        calls.append(x)
        return x + 1

    backend.failing = True  # the lock cannot be taken: the call goes on without it
    assert compute(1) == compute(1) == 2
    assert calls == [1, 1]


async def test_async_distributed_lock_fails_open() -> None:
    backend = FaultyBackend(MemoryBackend())
    cache = Cache(backend)

    @cached(prefix="x:", cache=cache, lock="distributed")
    async def compute(x: int) -> int:
        return x + 1

    backend.failing = True
    assert await compute(1) == await compute(1) == 2


class UnreachableLocks(MemoryBackend):
    """A third-party-like backend whose writes fail with a plain ConnectionError."""

    def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        raise ConnectionError("connection refused")

    async def aexecute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        raise ConnectionError("connection refused")


def test_distributed_lock_fails_open_on_any_fault_of_a_third_party_backend() -> None:
    cache = Cache(UnreachableLocks())
    calls = []

    @cached(prefix="x:", cache=cache, lock="distributed")
    def compute(x: int) -> int:
        calls.append(x)
        return x + 1

    assert compute(1) == compute(1) == 2
    assert calls == [1, 1]


async def test_async_distributed_lock_fails_open_on_any_fault_of_a_third_party_backend() -> None:
    cache = Cache(UnreachableLocks())
    calls = []

    @cached(prefix="x:", cache=cache, lock="distributed")
    async def compute(x: int) -> int:
        calls.append(x)
        return x + 1

    assert await compute(1) == await compute(1) == 2
    assert calls == [1, 1]


async def test_a_cancelled_leader_does_not_cancel_its_followers() -> None:
    cache = Cache(MemoryBackend())
    started, never = asyncio.Event(), asyncio.Event()
    calls = []

    @cached(prefix="x:", cache=cache, lock=True)
    async def compute(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:  # the leader hangs until it is cancelled
            started.set()
            await never.wait()
        return x + 1

    leader = asyncio.create_task(compute(1))
    await started.wait()
    follower = asyncio.create_task(compute(1))
    for _ in range(20):  # the follower reads (memory: no real I/O) and joins the flight
        await asyncio.sleep(0)
    leader.cancel()
    assert await follower == 2  # it computed alone instead of being cancelled too
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert calls == [1, 1]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"prefix": 42}, "prefix must be a Namespace or a str, not int"),
        ({"condition": "yes"}, "condition must be a callable taking the result"),
        ({"lock": "global"}, "lock must be True, False, 'local' or 'distributed'"),
        ({"early_refresh": -1.0}, "early_refresh must be a bool or a factor >= 0"),
        ({"ttl": 0}, "ttl must be greater than 0"),
        ({"lock_timeout": -1}, "lock_timeout must be a non-negative number"),
        ({"lock_timeout": float("inf")}, "lock_timeout must be a finite number of seconds"),
        ({"lock_timeout": 0}, "lock_timeout must be a finite number of seconds, greater than 0"),
        ({"stale_ttl": "5"}, "stale_ttl must be a number of seconds"),
    ],
)
def test_bad_options_fail_when_the_decorator_is_made(
    options: dict[str, object], match: str
) -> None:
    with pytest.raises((ConfigurationError, kirocache.InvalidTTLError), match=match):
        cached(**options)  # type: ignore[arg-type]


def test_exceptions_propagate_unchanged_and_are_not_cached(cache: Cache) -> None:
    calls = []

    class Boom(Exception):
        pass

    @cached(prefix="boom:", cache=cache)
    def boom(x: int) -> int:
        calls.append(x)
        raise Boom(x)

    for _ in range(2):
        with pytest.raises(Boom):
            boom(1)
    assert calls == [1, 1]
    assert not cache.exists("boom:1")


def test_unserializable_result_names_function_and_type(cache: Cache) -> None:
    class Opaque:
        pass

    @cached(prefix="opaque:", cache=cache, strict=True)  # strict: raised, not warned about
    def make() -> Opaque:
        return Opaque()

    with pytest.raises(SerializationError, match=r"make.*Opaque|Opaque.*make"):
        make()


def test_bad_templates_fail_at_decoration() -> None:
    with pytest.raises(ConfigurationError, match="user_id"):

        @cached(prefix="x:", key="{user_id}")
        def f(uid: int) -> int:
            return uid


# -- stale-while-revalidate and early refresh ---------------------------------------------


def test_stale_value_served_while_refreshing(backend: FullBackend) -> None:
    clock = ManualClock()
    cache = Cache(backend, clock=clock)
    version = [0]
    refreshed = threading.Event()

    @cached(prefix="swr:", ttl=0.2, stale_ttl=5, cache=cache)
    def value() -> int:
        version[0] += 1
        if version[0] > 1:
            refreshed.set()
        return version[0]

    assert value() == 1
    assert value() == 1  # fresh: no refresh
    clock.advance(0.3)
    assert value() == 1  # stale, served at once; a refresh starts behind it
    assert refreshed.wait(5)
    deadline = time.monotonic() + 5
    while value() != 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert value() == 2
    assert version[0] == 2  # the refreshed value is fresh again on the same clock
    stats = cache.metrics.stats("swr:", "get") if cache.metrics else []  # type: ignore[attr-defined]
    assert stats[0].stale >= 1


def test_a_stale_serve_counts_once_as_stale() -> None:
    clock = ManualClock()
    cache = Cache(MemoryBackend(), clock=clock)
    refreshed = threading.Event()
    version = [0]

    @cached(prefix="once:", ttl=1, stale_ttl=60, cache=cache)
    def value() -> int:
        version[0] += 1
        if version[0] > 1:
            refreshed.set()
        return version[0]

    assert value() == 1  # a miss
    assert value() == 1  # a fresh hit
    clock.advance(2)
    assert value() == 1  # stale, served while the refresh runs: one read, one record
    assert cache.metrics is not None
    [stats] = cache.metrics.stats("once:", "get")  # type: ignore[attr-defined]
    assert (stats.calls, stats.misses, stats.hits, stats.stale) == (3, 1, 1, 1)
    assert stats.hit_rate == pytest.approx(2 / 3)
    assert refreshed.wait(5)
    cache.close()


async def test_async_a_stale_serve_counts_once_as_stale() -> None:
    clock = ManualClock()
    cache = Cache(MemoryBackend(), clock=clock)
    refreshed = asyncio.Event()
    version = [0]

    @cached(prefix="once:", ttl=1, stale_ttl=60, cache=cache)
    async def value() -> int:
        version[0] += 1
        if version[0] > 1:
            refreshed.set()
        return version[0]

    assert await value() == 1
    assert await value() == 1
    clock.advance(2)
    assert await value() == 1
    assert cache.metrics is not None
    [stats] = cache.metrics.stats("once:", "get")  # type: ignore[attr-defined]
    assert (stats.calls, stats.misses, stats.hits, stats.stale) == (3, 1, 1, 1)
    assert stats.hit_rate == pytest.approx(2 / 3)
    await asyncio.wait_for(refreshed.wait(), 5)
    await cache.aclose()


async def test_async_stale_survives_a_failing_function(backend: FullBackend) -> None:
    clock = ManualClock()
    cache = Cache(backend, clock=clock)
    calls = []

    @cached(prefix="swr:", ttl=0.1, stale_ttl=5, cache=cache)
    async def value() -> str:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("source down")
        return "good"

    assert await value() == "good"
    clock.advance(0.2)
    for _ in range(3):
        assert await value() == "good"  # the refresh fails; the stale copy keeps serving
        await asyncio.sleep(0.02)
    assert len(calls) >= 2


def test_stale_survives_a_failing_function(backend: FullBackend) -> None:
    clock = ManualClock()
    cache = Cache(backend, clock=clock)
    calls = []
    failed = threading.Event()

    @cached(prefix="swr:", ttl=0.1, stale_ttl=5, cache=cache)
    def value() -> str:
        calls.append(1)
        if len(calls) > 1:
            failed.set()
            raise RuntimeError("source down")
        return "good"

    assert value() == "good"
    clock.advance(0.2)
    assert value() == "good"  # stale; the refresh behind it fails
    assert failed.wait(5)
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        assert value() == "good"  # the stale copy keeps serving; refreshes are retried
        time.sleep(0.01)
    assert len(calls) >= 3


def test_early_refresh_recomputes_before_expiry(cache: Cache) -> None:
    version = [0]

    @cached(prefix="early:", ttl=0.5, early_refresh=1000.0, cache=cache)
    def value() -> int:
        version[0] += 1
        time.sleep(0.01)
        return version[0]

    assert value() == 1
    deadline = time.monotonic() + 3
    while version[0] < 2 and time.monotonic() < deadline:
        value()
        time.sleep(0.01)
    assert version[0] >= 2  # refreshed by a background call...
    left = cache.ttl(value.cache_key())
    assert left is not None  # ...before the entry ever expired


def test_stale_options_need_a_ttl() -> None:
    with pytest.raises(ConfigurationError, match="ttl"):
        cached(prefix="x:", stale_ttl=5)(lambda: 1)


# -- warming and presets ------------------------------------------------------------------


def test_warm_fills_the_cache_in_one_go(cache: Cache) -> None:
    calls = []

    @cached(prefix=presets.EXERCISE, cache=cache)
    def exercise(exercise_id: int) -> dict[str, int]:
        calls.append(exercise_id)
        return {"id": exercise_id}

    assert warm(exercise, [1, (2,), {"exercise_id": 3}]) == 3
    assert [exercise(i) for i in (1, 2, 3)] == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert calls == [1, 2, 3]


async def test_awarm(cache: Cache) -> None:
    @cached(prefix=presets.EXERCISE, cache=cache)
    async def exercise(exercise_id: int) -> dict[str, int]:
        return {"id": exercise_id}

    assert await awarm(exercise, [1, 2]) == 2
    assert await exercise.get_cached(2) == {"id": 2}


def test_presets_match_the_platform() -> None:
    expected = {
        "USER_SESSION": ("session:", 86400),
        "USER_PROFILE": ("user:profile:", 3600),
        "USER_PROGRESS": ("user:progress:", 1800),
        "LEARNING_PATH": ("learning:path:", 7200),
        "EXERCISE": ("exercise:", 3600),
        "CODE_ANALYSIS": ("analysis:", 900),
        "RECOMMENDATIONS": ("recommendations:", 1800),
        "SEARCH_RESULTS": ("search:", 600),
        "PERFORMANCE_METRICS": ("metrics:", 300),
    }
    for name, (prefix, ttl) in expected.items():
        namespace = getattr(presets, name)
        assert (namespace.prefix, namespace.ttl) == (prefix, ttl)
    assert len(presets.ALL) == len(expected)


def test_decorated_functions_keep_their_metadata() -> None:
    @cached(prefix="meta:")
    def documented(x: int) -> int:
        """Doubles."""
        return x * 2

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "Doubles."
    assert documented.__wrapped__(2) == 4


@pytest.mark.slow
@pytest.mark.real_redis
def test_distributed_lock_across_processes(redis_url: str) -> None:
    import multiprocessing

    import redis

    import stampede_worker

    with redis.Redis.from_url(redis_url) as raw:
        raw.delete("stampede-calls", "stampede:21", "stampede:21:lock")
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0  # every process is up and waiting by then
    with context.Pool(4) as pool:
        results = pool.starmap(stampede_worker.stampede, [(redis_url, start_at)] * 4)
    assert results == [42] * 4
    with redis.Redis.from_url(redis_url) as raw:
        assert int(raw.get("stampede-calls") or 0) == 1
        raw.delete("stampede-calls", "stampede:21")


def test_async_distributed_lock_across_event_loops(
    roomy_cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two event loops, each with its own wrapper (as two processes have): one call.

    In-process waiting is per event loop, so each loop has a leader, and the two leaders
    meet at the lock in the backend: the second one takes it after the first stored the
    value, reads it, and returns it without calling the function.
    """
    cache = roomy_cache
    calls: list[int] = []
    taken: list[bool] = []
    aacquire = DistributedLock.aacquire

    async def counting_aacquire(lock: DistributedLock, **options: Any) -> bool:
        held = await aacquire(lock, **options)
        taken.append(held)
        return held

    monkeypatch.setattr(DistributedLock, "aacquire", counting_aacquire)
    start = threading.Barrier(2)

    def process() -> list[int]:
        @cached(prefix="dlock:", cache=cache, lock="distributed", lock_timeout=10)
        async def expensive(x: int) -> int:
            calls.append(x)
            await asyncio.sleep(0.2)
            return x * 2

        async def callers() -> list[int]:
            start.wait(10)
            return list(await asyncio.gather(*(expensive(21) for _ in range(5))))

        return asyncio.run(callers())

    results: list[list[int]] = []
    threads = [threading.Thread(target=lambda: results.append(process())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [[42] * 5, [42] * 5]
    assert calls == [21]  # one call for the two loops' ten callers, each read succeeding
    assert taken == [True, True]  # both loops' leaders went through the lock, one at a time
    assert not cache.exists("dlock:21:lock")


def test_object_in_the_annotation_means_any_json_value(cache: Cache) -> None:
    calls = []

    @cached(prefix="obj:", cache=cache)
    def info(x: int) -> dict[str, object]:
        calls.append(x)
        return {"id": x, "tags": ["a"], "nested": {"k": None}}

    assert info(1) == info(1) == {"id": 1, "tags": ["a"], "nested": {"k": None}}
    assert calls == [1]


def test_without_a_lock_every_concurrent_miss_computes_and_the_cache_still_fills(
    cache: Cache,
) -> None:
    calls = []
    barrier = threading.Barrier(4)

    @cached(prefix="nolock:", cache=cache, lock=False)
    def compute(x: int) -> int:
        calls.append(x)
        return x + 1

    def call() -> int:
        barrier.wait()
        return compute(1)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # no single flight: between 1 and 4 calls, each miss computing for itself
    assert 1 <= len(calls) <= 4
    assert compute(1) == 2
    assert compute.get_cached(1) == 2


async def test_async_without_a_lock_every_concurrent_miss_computes(cache: Cache) -> None:
    calls = []
    all_in, release = asyncio.Event(), asyncio.Event()

    @cached(prefix="anolock:", cache=cache, lock=False)
    async def compute(x: int) -> int:
        calls.append(x)
        if len(calls) == 3:
            all_in.set()
        await release.wait()
        return x + 1

    tasks = [asyncio.create_task(compute(1)) for _ in range(3)]
    # every caller missed and computes: nobody waits for a leader
    await asyncio.wait_for(all_in.wait(), 10)
    release.set()
    assert await asyncio.gather(*tasks) == [2, 2, 2]
    assert await compute.get_cached(1) == 2
