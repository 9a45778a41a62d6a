"""``kirocache demo``: a tour of the library on a learning platform, in memory or on Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import sys
import threading
import time
from collections import Counter

from kirocache import MISSING, Cache, CircuitBreaker, cached, invalidates, presets
from kirocache.backends import MemoryBackend, mask_url
from kirocache.invalidation import InvalidationEvent, Tag
from kirocache.keys import code_hash
from kirocache.metrics import InMemoryMetrics
from kirocache.monitoring import HealthChecker, Monitor
from kirocache.sessions import SessionStore
from kirocache.testing import FaultyBackend, use_cache

__all__ = ["demo"]


@dataclasses.dataclass
class Profile:
    """A user profile, as the platform's database would return it."""

    id: int
    name: str
    level: str
    joined: dt.date


# The platform's database, and how often each function really ran.
_NAMES: dict[int, str] = {}
_RUNS: Counter[str] = Counter()


# No cache= on the decorators: like an application's functions, they use the default
# cache, which ``demo`` points at the cache it tours.
@cached(prefix=presets.USER_PROFILE, key="{user_id}")
def get_profile(user_id: int) -> Profile:
    """Load a profile from the database (slow: 20 ms)."""
    _RUNS["get_profile"] += 1
    time.sleep(0.02)
    return Profile(user_id, _NAMES.get(user_id, "Ada"), "intermediate", dt.date(2024, 9, 1))


@invalidates(prefix=presets.USER_PROFILE, key="{user_id}")
def update_profile(user_id: int, name: str) -> None:
    """Write a new name to the database; the cached profile is removed afterwards."""
    _NAMES[user_id] = name


@cached(prefix=presets.USER_PROGRESS, tags=["user:{user_id}"])
def get_progress(user_id: int, course: str) -> int:
    """Percent of ``course`` the user has completed."""
    return 40 if course == "python" else 10


@cached(prefix=presets.RECOMMENDATIONS, key="{user_id}", tags=["user:{user_id}"])
def get_recommendations(user_id: int) -> list[str]:
    """Courses to suggest next."""
    return ["rust basics", "async python"]


@cached(prefix=presets.PERFORMANCE_METRICS, key="leaderboard:{course}")
def get_leaderboard(course: str) -> list[str]:
    """An expensive query (100 ms) that many requests want at once."""
    _RUNS["get_leaderboard"] += 1
    time.sleep(0.1)
    return ["ada", "grace", "linus"]


@cached(prefix=presets.LEARNING_PATH)
async def get_learning_path(path_id: int) -> dict[str, str | int]:
    """Fetch a learning path from another service (slow: 20 ms)."""
    _RUNS["get_learning_path"] += 1
    await asyncio.sleep(0.02)
    return {"id": path_id, "title": "Python from scratch", "steps": 12}


def _step(title: str) -> None:
    print(f"\n== {title}")


def _timed_profile(user_id: int) -> tuple[Profile, float, int]:
    """Call ``get_profile``; returns the result, milliseconds taken and whether it ran."""
    runs = _RUNS["get_profile"]
    started = time.perf_counter()
    profile = get_profile(user_id)
    return profile, (time.perf_counter() - started) * 1000, _RUNS["get_profile"] - runs


def _decorators(cache: Cache) -> None:
    _step("@cached get_profile on the USER_PROFILE preset")
    _, miss_ms, ran = _timed_profile(42)
    print(f"first call:  {miss_ms:7.2f} ms, function ran {ran} time(s) (miss)")
    profile, hit_ms, ran = _timed_profile(42)
    print(f"second call: {hit_ms:7.2f} ms, function ran {ran} time(s) (hit)")
    key = get_profile.cache_key(42)
    print(f"stored at {cache.full_key(key)!r} for {cache.ttl(key):.0f} s (the preset's TTL)")
    print(f"the hit came back as a {type(profile).__name__}: {profile}")

    _step("@invalidates update_profile")
    update_profile(42, "Ada Lovelace")
    gone = get_profile.get_cached(42) is MISSING
    print(f"after update_profile(42, ...): cached entry {'invalidated' if gone else 'still there'}")
    profile, _, ran = _timed_profile(42)
    print(f"next get_profile(42): function ran {ran} time(s), name {profile.name!r}")

    _step("Tags: drop every entry of one user")
    for user_id, course in ((42, "python"), (42, "rust"), (7, "python")):
        get_progress(user_id, course)
    get_recommendations(42)
    removed = cache.invalidate_tags("user:42")
    kept = get_progress.get_cached(7, "python") is not MISSING
    print(f"invalidate_tags('user:42') removed {removed} entries; user 7 still cached: {kept}")

    _step("Stampede protection: 50 threads on one cold key")
    start = threading.Barrier(50)
    answers: list[list[str]] = []

    def reader() -> None:
        start.wait()
        answers.append(get_leaderboard("python"))

    threads = [threading.Thread(target=reader) for _ in range(50)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = (time.perf_counter() - started) * 1000
    same = all(answer == answers[0] for answer in answers)
    print(
        f"{len(answers)} callers in {took:.0f} ms: get_leaderboard ran "
        f"{_RUNS['get_leaderboard']} time(s); all got the same answer: {same}"
    )


def _tour(cache: Cache) -> None:
    _step("Many keys in one round trip")
    exercises = {str(i): {"id": i, "title": f"Exercise {i}"} for i in range(1, 6)}
    cache.set_many(exercises, namespace=presets.EXERCISE)
    found = cache.get_many(["1", "3", "99"], namespace=presets.EXERCISE)
    print(f"asked for 1, 3, 99 -> got {sorted(found)} (99 was never cached)")

    _step("Counters, and analysis results keyed by a code hash")
    for _ in range(3):
        cache.incr("42:completed", namespace=presets.USER_PROGRESS)
    print(f"completed exercises: {cache.get('42:completed', namespace=presets.USER_PROGRESS)}")
    digest = code_hash("def add(a, b):\n    return a + b\n", "python")
    cache.set(digest, {"issues": 0, "complexity": 1}, namespace=presets.CODE_ANALYSIS)
    print(f"analysis cached at {presets.CODE_ANALYSIS.key(digest)!r}")

    _step("Pattern invalidation inside the namespace (SCAN + UNLINK, never KEYS)")
    for query in ("python", "rust", "go"):
        cache.set(query, [f"{query} result"], namespace=presets.SEARCH_RESULTS)
    removed = cache.delete_pattern("*", namespace=presets.SEARCH_RESULTS)
    still = get_profile.get_cached(42) is not MISSING
    print(f"removed {removed} search results; profile still cached: {still}")


def _events(cache: Cache) -> None:
    _step("Invalidation by event: rules, a dependency, and the log")
    cache.rules.clear()
    cache.rules.on(
        "user.profile.updated",
        keys=[presets.USER_PROFILE.key("{entity_id}")],
        tags=["user:{user_id}"],
    ).on("course.*.published", namespaces=[presets.SEARCH_RESULTS])
    get_recommendations(7)
    get_progress(7, "rust")
    path = presets.LEARNING_PATH.key(7)
    cache.set(path, {"next": "rust basics"})
    cache.depends(path, on=Tag("user:7"))
    record = cache.invalidate(InvalidationEvent("user.profile.updated", entity_id=7, user_id=7))
    print(
        f"user.profile.updated for user 7: rule {record.rules[0]!r} removed "
        f"{record.removed} entries (its learning path too: {cache.get(path) is None})"
    )
    why = cache.invalidation_log.why(path)
    assert why is not None
    print(f"why is {path!r} gone? {why.source} {why.event!r}, {why.duration * 1000:.2f} ms")


async def _async_tour(cache: Cache) -> None:
    _step("@cached on an async function: 10 concurrent tasks, then a hit")
    started = time.perf_counter()
    paths = await asyncio.gather(*(get_learning_path(3) for _ in range(10)))
    cold_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    await get_learning_path(3)
    hit_ms = (time.perf_counter() - started) * 1000
    print(
        f"10 tasks on a cold key: {cold_ms:.2f} ms, get_learning_path ran "
        f"{_RUNS['get_learning_path']} time(s); all equal: {all(p == paths[0] for p in paths)}"
    )
    print(f"then a hit: {hit_ms:.2f} ms, still {_RUNS['get_learning_path']} run(s)")

    _step("The same cache from async code")
    await cache.aset("7", {"id": 7, "name": "async learner"}, namespace=presets.USER_PROFILE)
    results = await asyncio.gather(
        *(cache.aget(str(i), namespace=presets.USER_PROFILE) for i in (7, 8))
    )
    print(f"aget 7 and 8 concurrently -> {results}")


def _faults() -> None:
    _step("A failing backend never fails the caller")
    backend = FaultyBackend(MemoryBackend())
    cache = Cache(backend, breaker=CircuitBreaker(failure_threshold=3, recovery_time=0.2))
    cache.set("up", "before the outage")
    backend.failing = True
    answers = [cache.get("up", "fallback") for _ in range(10)]
    breaker = cache.breaker
    assert breaker is not None
    print(f"10 reads during the outage -> {set(answers)}; backend saw {backend.calls['get']}")
    print(f"breaker: {breaker.state}, errors counted: {cache.errors_total}")
    backend.failing = False
    time.sleep(0.25)
    print(f"after recovery: {cache.get('up')!r}, breaker {breaker.state}")


def _metrics_table(cache: Cache) -> None:
    _step("Metrics per namespace and operation")
    if not isinstance(cache.metrics, InMemoryMetrics):
        return
    # coalesced: misses served the value another caller computed (stampede waiters); the
    # hit rate counts them as served
    print(
        f"{'namespace':<18}{'op':<16}{'calls':>6}{'hits':>6}{'miss':>6}{'hit %':>7}"
        f"{'p95 ms':>9}{'coalesced':>11}"
    )
    for row in cache.metrics.stats():
        rate = "-" if row.hit_rate is None else f"{row.hit_rate:.0%}"
        p95 = "-" if row.latency_p95 is None else f"{row.latency_p95 * 1000:.3f}"
        print(
            f"{row.namespace:<18}{row.operation:<16}{row.calls:>6}{row.hits:>6}"
            f"{row.misses:>6}{rate:>7}{p95:>9}{row.coalesced:>11}"
        )


def _sessions(cache: Cache) -> None:
    _step("Sessions: several per user, a cap, revocation")
    store = SessionStore(cache, max_sessions_per_user=2)
    first = store.create(42, {"device": "laptop"})
    store.create(42, {"device": "phone"})
    store.create(42, {"device": "tablet"})  # over the cap: the oldest is revoked
    devices = [info.data.get("device") for info in store.user_sessions(42)]
    print(f"user 42 live sessions: {devices}; the first one is gone: {store.get(first) is None}")
    store.touch(store.create(7, {"device": "phone"}), page="/exercises/1")
    print(f"revoke_all(42) revoked {store.revoke_all(42)}; stats: {store.stats()}")


def _health(cache: Cache) -> None:
    _step("Health and alerts")
    report = HealthChecker(cache).check()
    print(f"status: {report.status}; breaker: {report.breaker}")
    for issue in report.issues:
        print(f"  [{issue.severity}] {issue.message}: {issue.recommendation}")
    alerts = Monitor(cache).monitor_and_alert()
    print(f"alerts raised: {len(alerts)}")
    for alert in alerts:
        print(f"  [{alert.severity}] {alert.message}")


def demo(url: str) -> int:
    """Run the tour on the cache at ``url``; returns the exit status."""
    cache = Cache.from_url(url, namespaces=presets.ALL, key_prefix="kirocache-demo:")
    print(f"kirocache demo on {mask_url(url)}")
    try:
        cache.ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server ends the demo
        print(f"cannot reach {mask_url(url)}: {exc}", file=sys.stderr)
        return 1
    _NAMES.clear()
    _RUNS.clear()
    try:
        with use_cache(cache):
            cache.delete_pattern("*")
            _decorators(cache)
            _tour(cache)
            _events(cache)
            asyncio.run(_async_tour(cache))
            _sessions(cache)
            _faults()
            _metrics_table(cache)
            _health(cache)
            cache.delete_pattern("*")
    finally:
        cache.close()
    return 0
