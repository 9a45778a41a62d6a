"""TTLs read from the result, a shorter TTL for "not found", and jitter."""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta

import pytest

from kirocache import NEVER, Cache, Namespace, cached, cached_many
from kirocache.exceptions import ConfigurationError, InvalidTTLError


def _ttl(cache: Cache, key: str, namespace: Namespace | None = None) -> float:
    left = cache.ttl(key, namespace=namespace)
    assert left is not None
    return left


def test_the_ttl_comes_from_the_result(cache: Cache) -> None:
    @cached(prefix="course", cache=cache, ttl=lambda course: 3600 if course["published"] else 60)
    def course(course_id: int) -> dict[str, object]:
        return {"id": course_id, "published": course_id % 2 == 0}

    course(2)
    course(3)
    assert 3500 < _ttl(cache, "course2") <= 3600
    assert 50 < _ttl(cache, "course3") <= 60


async def test_the_ttl_comes_from_the_result_async(cache: Cache) -> None:
    @cached(prefix="n:", cache=cache, ttl=lambda n: timedelta(seconds=10 * n))
    async def double(n: int) -> int:
        return n * 2

    await double(3)  # 6 -> 60 s
    assert 50 < _ttl(cache, "n:3") <= 60


def test_not_found_gets_its_own_shorter_ttl(cache: Cache) -> None:
    @cached(prefix="user:", cache=cache, ttl=3600, none_ttl=30)
    def user(user_id: int) -> dict[str, int] | None:
        return None if user_id == 404 else {"id": user_id}

    assert user(404) is None
    assert user(1) == {"id": 1}
    assert 20 < _ttl(cache, "user:404") <= 30
    assert _ttl(cache, "user:1") > 3500
    assert user(404) is None  # a hit: the cached "not found"


def test_a_ttl_function_may_say_never(cache: Cache) -> None:
    @cached(prefix="cfg:", cache=cache, ttl=lambda value: NEVER if value == "pinned" else 60)
    def setting(name: str) -> str:
        return "pinned" if name == "a" else "loose"

    setting("a")
    setting("b")
    assert cache.ttl("cfg:a") == float("inf")
    assert _ttl(cache, "cfg:b") <= 60


def test_jitter_spreads_expiries_within_bounds(cache: Cache) -> None:
    @cached(prefix="j:", cache=cache, ttl=100, jitter=20)
    def value(n: int) -> int:
        return n

    for n in range(40):
        value(n)
    ttls = [_ttl(cache, f"j:{n}") for n in range(40)]
    assert all(95 < left <= 120 for left in ttls)  # [ttl, ttl + jitter], less time passed
    assert max(ttls) - min(ttls) > 5  # spread: 40 draws of U(0, 20) within 5 s is ~1e-23


def test_a_namespace_carries_a_ttl_function_and_jitter(cache: Cache) -> None:
    sessions = Namespace("sess:", ttl=lambda value: 60 if value.get("remember") else 10)
    spread = Namespace("spread:", ttl=100, jitter=timedelta(seconds=50))
    cache.set("a", {"remember": True}, namespace=sessions)
    cache.set("b", {"remember": False}, namespace=sessions)
    assert 50 < _ttl(cache, "a", sessions) <= 60
    assert _ttl(cache, "b", sessions) <= 10
    for n in range(30):
        cache.set(str(n), n, namespace=spread)
    ttls = [_ttl(cache, str(n), spread) for n in range(30)]
    assert all(95 < left <= 150 for left in ttls)
    assert max(ttls) - min(ttls) > 10
    # and a decorated function in the namespace reads the same rule
    calls: list[int] = []

    @cached(prefix=sessions, cache=cache)
    def session(sid: str) -> dict[str, bool]:
        calls.append(1)
        return {"remember": sid == "long"}

    session("long")
    assert 50 < _ttl(cache, "long", sessions) <= 60


def test_cached_many_reads_each_values_ttl(cache: Cache) -> None:
    @cached_many(prefix="p:", cache=cache, ttl=lambda value: 300 if value else 30, none_ttl=5)
    def prices(ids: list[int]) -> dict[int, int | None]:
        return {i: (None if i == 0 else i * 10) for i in ids}

    assert prices([0, 1, 2]) == {0: None, 1: 10, 2: 20}
    assert _ttl(cache, "p:0") <= 5
    assert 250 < _ttl(cache, "p:1") <= 300


def test_stale_while_revalidate_uses_the_results_ttl(cache: Cache) -> None:
    @cached(prefix="s:", cache=cache, ttl=lambda value: 100 * value, stale_ttl=50)
    def scaled(n: int) -> int:
        return n

    scaled(2)
    assert 200 < _ttl(cache, "s:2") <= 250  # fresh 200 s, then stale 50 s


def test_warm_uses_the_rule_too(cache: Cache) -> None:
    from kirocache import warm

    @cached(prefix="w:", cache=cache, ttl=lambda value: 10 + value)
    def plus(n: int) -> int:
        return n

    warm(plus, [5, 50])
    assert _ttl(cache, "w:5") <= 15
    assert 50 < _ttl(cache, "w:50") <= 60


def test_a_bad_ttl_from_the_function_is_a_clear_error(cache: Cache) -> None:
    def zero(_value: object) -> int:
        return 0

    @cached(prefix="bad:", cache=cache, ttl=zero)
    def f(n: int) -> int:
        return n

    with pytest.raises(InvalidTTLError, match="zero"):
        f(1)


def test_options_are_checked_up_front() -> None:
    with pytest.raises(ConfigurationError, match="jitter"):
        cached(prefix="x:", ttl=10, jitter=-1)
    with pytest.raises(ConfigurationError, match="jitter"):
        Namespace("x:", jitter=float("inf"))
    with pytest.raises(InvalidTTLError):
        cached(prefix="x:", ttl=10, none_ttl=0)


def test_replace_keeps_the_ttl_function() -> None:
    def rule(value: object) -> int:
        return 7

    ns = Namespace("r:", ttl=rule)
    assert ns.ttl is None
    assert ns.ttl_function is rule
    moved = dataclasses.replace(ns, version=2)
    assert moved.ttl_function is rule
    assert "ttl_function" in repr(ns)


def test_jitter_never_advances_the_applications_random(cache: Cache) -> None:
    # An application that seeds the global ``random`` for a reproducible run gets the same
    # numbers whatever the cache draws: the cache's jitter comes from a generator of its own.
    @cached(prefix="own:", cache=cache, ttl=100, jitter=20)
    def value(n: int) -> int:
        return n

    random.seed(7)
    before = random.getstate()
    for n in range(20):
        value(n)
    assert random.getstate() == before
    ttls = [_ttl(cache, f"own:{n}") for n in range(20)]
    assert max(ttls) - min(ttls) > 2  # still spread: 20 draws of U(0, 20) within 2 s is ~0
