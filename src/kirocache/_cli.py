"""The ``kirocache`` command: ``kirocache demo`` tours the library on a learning platform."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence

from kirocache import presets
from kirocache._breaker import CircuitBreaker
from kirocache._cache import Cache
from kirocache._config import mask_url
from kirocache.backends.memory import MemoryBackend
from kirocache.keys import code_hash
from kirocache.metrics import InMemoryMetrics
from kirocache.testing import FaultyBackend

__all__ = ["main"]


@dataclasses.dataclass
class Profile:
    """A user profile, as the platform's database would return it."""

    id: int
    name: str
    level: str
    joined: dt.date


def _load_profile(user_id: int) -> Profile:
    time.sleep(0.02)  # the database round trip the cache saves
    return Profile(user_id, f"learner-{user_id}", "intermediate", dt.date(2024, 9, 1))


def _step(title: str) -> None:
    print(f"\n== {title}")


def _tour(cache: Cache) -> None:
    profiles = presets.USER_PROFILE
    _step("Typed values under readable keys, with the namespace's TTL")
    started = time.perf_counter()
    profile = cache.get("42", type=Profile, namespace=profiles)
    if profile is None:
        profile = _load_profile(42)
        cache.set("42", profile, namespace=profiles)
    miss_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    again = cache.get("42", type=Profile, namespace=profiles)
    hit_ms = (time.perf_counter() - started) * 1000
    print(f"key {profiles.key(42)!r}, ttl {cache.ttl('42', namespace=profiles):.0f} s")
    print(f"miss + load: {miss_ms:.2f} ms; hit: {hit_ms:.3f} ms; hit is {type(again).__name__}")

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
    print(
        f"removed {removed} search results; profile still cached: {cache.exists(profiles.key(42))}"
    )


async def _async_tour(cache: Cache) -> None:
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
    print(f"{'namespace':<18}{'op':<16}{'calls':>6}{'hits':>6}{'miss':>6}{'hit %':>7}{'p95 ms':>9}")
    for row in cache.metrics.stats():
        rate = "-" if row.hit_rate is None else f"{row.hit_rate:.0%}"
        p95 = "-" if row.latency_p95 is None else f"{row.latency_p95 * 1000:.3f}"
        print(
            f"{row.namespace:<18}{row.operation:<16}{row.calls:>6}{row.hits:>6}"
            f"{row.misses:>6}{rate:>7}{p95:>9}"
        )


def demo(url: str) -> int:
    """Run the tour on the cache at ``url``; returns the exit status."""
    cache = Cache.from_url(url, namespaces=presets.ALL, key_prefix="kirocache-demo:")
    print(f"kirocache demo on {mask_url(url)}")
    try:
        cache.ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server ends the demo
        print(f"cannot reach {mask_url(url)}: {exc}", file=sys.stderr)
        return 1
    try:
        cache.delete_pattern("*")
        _tour(cache)
        asyncio.run(_async_tour(cache))
        _faults()
        _metrics_table(cache)
        cache.delete_pattern("*")
    finally:
        cache.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kirocache`` command."""
    parser = argparse.ArgumentParser(prog="kirocache", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    tour = commands.add_parser("demo", help="a short tour on the in-memory backend or Redis")
    tour.add_argument(
        "--redis-url", default=None, help="run against Redis at this URL instead of memory"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    return demo(args.redis_url or "memory://")
