"""MemoryBackend behaviour beyond the conformance suite: limits, LRU, clock, purging, threads."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kirocache.backends._glob import escape_glob, glob_to_regex
from kirocache.backends._protocol import Op, OpName
from kirocache.backends.memory import MemoryBackend
from kirocache.exceptions import (
    BackendError,
    ConfigurationError,
    InvalidTTLError,
    SerializationError,
    ValueTooLargeError,
)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(clock: FakeClock) -> MemoryBackend:
    return MemoryBackend(clock=clock)


def live_keys(backend: MemoryBackend) -> set[str]:
    return set(backend.scan("*"))


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["max_entries", "max_bytes"])
@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_limits_must_be_positive_ints(name: str, bad: object) -> None:
    with pytest.raises(ConfigurationError, match=name):
        MemoryBackend(**{name: bad})  # type: ignore[arg-type]


def test_limits_may_be_none() -> None:
    backend = MemoryBackend(max_entries=None, max_bytes=None)
    backend.set_many({f"k{i}": b"x" * 100 for i in range(20_000)})
    stats = backend.stats()
    assert stats.keys == 20_000
    assert stats.max_memory is None
    assert stats.evictions == 0


def test_repr_shows_sizes() -> None:
    backend = MemoryBackend(max_entries=5, max_bytes=1000)
    backend.set("key", b"12345")
    assert repr(backend) == "MemoryBackend(keys=1/5, bytes=8/1000)"


# -- LRU eviction ----------------------------------------------------------------------------


def test_lru_evicts_least_recently_used_by_entries() -> None:
    backend = MemoryBackend(max_entries=3)
    backend.set_many({"a": b"1", "b": b"2", "c": b"3"})
    assert backend.get("a") == b"1"
    backend.set("d", b"4")
    assert live_keys(backend) == {"a", "c", "d"}
    # exists() and ttl() look without touching, so "c" stays the oldest
    assert backend.exists("c")
    assert backend.ttl("c") == math.inf
    backend.set("e", b"5")
    assert live_keys(backend) == {"a", "d", "e"}
    assert backend.stats().evictions == 2


def test_repeated_hits_keep_lru_order_whatever_read_in_between() -> None:
    # a hit on the most recent key skips the move; every other read or write that puts a
    # key at the end must be seen, or that skip would leave a key older than it should be
    backend = MemoryBackend(max_entries=3)
    backend.set_many({"a": b"1", "b": b"2", "c": b"3"})
    assert backend.get("a") == b"1"  # order b c a
    assert backend.get_many(["c"]) == [b"3"]  # order b a c
    assert backend.get("a") == b"1"  # order b c a: "a" is moved again
    backend.set("d", b"4")  # evicts b
    backend.set("e", b"5")  # evicts c, the least recently used
    assert live_keys(backend) == {"a", "d", "e"}
    backend.delete("e")
    assert backend.get("d") == b"4"  # order a d
    backend.set("e", b"5")
    backend.set("f", b"6")  # evicts a
    assert live_keys(backend) == {"d", "e", "f"}
    assert backend.stats().hits == 4


def test_tag_add_and_pipelined_reads_count_as_recent_use() -> None:
    backend = MemoryBackend(max_entries=3)
    backend.set_many({"a": b"1", "b": b"2"})
    backend.tag_add("t", ["x"], None)  # order a b t
    assert backend.get("b") == b"2"  # order a t b
    backend.tag_add("t", ["y"], None)  # order a b t
    assert backend.get("b") == b"2"  # order a t b
    backend.set("c", b"3")  # evicts a
    backend.set("d", b"4")  # evicts t
    assert live_keys(backend) == {"b", "c", "d"}
    assert backend.execute([Op("get", "b")]) == [b"2"]  # order c d b
    assert backend.get("c") == b"3"  # order d b c
    assert backend.execute([Op("get", "b")]) == [b"2"]  # order d c b
    assert backend.get("c") == b"3"  # order d b c
    backend.set("e", b"5")  # evicts d
    backend.set("f", b"6")  # evicts b
    assert live_keys(backend) == {"c", "e", "f"}


def test_overwrite_makes_key_most_recent() -> None:
    backend = MemoryBackend(max_entries=3)
    backend.set_many({"a": b"1", "b": b"2", "c": b"3"})
    backend.set("a", b"new")
    backend.incr("n")
    assert live_keys(backend) == {"a", "c", "n"}


def test_lru_evicts_by_bytes_counting_keys_and_values() -> None:
    backend = MemoryBackend(max_bytes=100)
    backend.set("k1", b"x" * 38)
    backend.set("k2", b"x" * 38)
    assert backend.stats().used_memory == 80
    backend.set("k3", b"x" * 38)
    assert live_keys(backend) == {"k2", "k3"}
    assert backend.stats().used_memory == 80
    backend.set("k2", b"x" * 8)
    assert backend.stats().used_memory == 50
    assert backend.stats().evictions == 1


def test_key_size_is_its_utf8_length() -> None:
    backend = MemoryBackend()
    backend.set("é", b"abc")
    assert backend.stats().used_memory == 5
    backend.delete("é")
    assert backend.stats().used_memory == 0


def test_expired_entries_go_before_live_ones_are_evicted(clock: FakeClock) -> None:
    backend = MemoryBackend(max_entries=2, clock=clock)
    backend.set("a", b"1", ttl=1)
    backend.set("b", b"2")
    clock.advance(2)
    backend.set("c", b"3")
    assert live_keys(backend) == {"b", "c"}
    stats = backend.stats()
    assert (stats.evictions, stats.expired) == (0, 1)


def test_value_larger_than_max_bytes_is_refused_without_evicting() -> None:
    backend = MemoryBackend(max_bytes=10)
    backend.set("a", b"123")
    with pytest.raises(ValueTooLargeError, match="max_bytes"):
        backend.set("k", b"x" * 10)
    with pytest.raises(ValueTooLargeError):
        backend.set_many({"b": b"1", "k": b"x" * 10})
    assert live_keys(backend) == {"a"}
    assert backend.set("k", b"x" * 9) is True
    assert live_keys(backend) == {"k"}


# -- TTL on an injected clock ----------------------------------------------------------------


def test_clock_drives_expiry(backend: MemoryBackend, clock: FakeClock) -> None:
    backend.set("a", b"v", ttl=10)
    assert backend.ttl("a") == 10
    clock.advance(4)
    assert backend.ttl("a") == 6
    clock.advance(5.5)
    assert backend.get("a") == b"v"
    clock.advance(0.5)
    assert backend.get("a") is None
    assert backend.ttl("a") is None
    assert backend.set("a", b"again", nx=True) is True


def test_expire_and_persist_on_clock(backend: MemoryBackend, clock: FakeClock) -> None:
    backend.set("a", b"v", ttl=5)
    assert backend.expire("a", 100) is True
    clock.advance(50)
    assert backend.ttl("a") == 50
    assert backend.persist("a") is True
    clock.advance(1000)
    assert backend.get("a") == b"v"
    assert backend.purge_expired() == 0


def test_incr_keeps_ttl_on_clock(backend: MemoryBackend, clock: FakeClock) -> None:
    assert backend.incr("n", ttl=10) == 1
    clock.advance(6)
    assert backend.incr("n", ttl=10) == 2
    assert backend.ttl("n") == 4
    clock.advance(4)
    assert backend.incr("n") == 1


def test_lazy_expiry_counts_expired_and_misses(backend: MemoryBackend, clock: FakeClock) -> None:
    backend.set("a", b"v", ttl=1)
    backend.set("b", b"v", ttl=1)
    clock.advance(1)
    assert backend.get("a") is None
    assert backend.delete("b") is False
    stats = backend.stats()
    assert (stats.keys, stats.expired, stats.misses, stats.hits) == (0, 2, 1, 0)


def test_writes_purge_expired_entries_without_reads(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    backend.set_many({f"k{i}": b"v" for i in range(100)}, ttl=1)
    clock.advance(2)
    assert backend.stats().keys == 100
    for i in range(10):
        backend.set(f"other{i}", b"v")
    stats = backend.stats()
    assert stats.keys == 10
    assert stats.expired == 100
    assert stats.misses == 0


def test_purge_expired_removes_all_expired(backend: MemoryBackend, clock: FakeClock) -> None:
    backend.set_many({f"t{i}": b"v" for i in range(5)}, ttl=1)
    backend.set_many({"p1": b"v", "p2": b"v"})
    backend.set("renewed", b"v", ttl=1)
    backend.set("renewed", b"v", ttl=100)
    clock.advance(2)
    assert backend.purge_expired() == 5
    assert backend.purge_expired() == 0
    assert live_keys(backend) == {"p1", "p2", "renewed"}
    assert backend.stats().expired == 5


def test_expiry_heap_stays_bounded_under_overwrite_churn(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    for round_ in range(200):
        backend.set_many({f"k{i}": b"v" for i in range(100)}, ttl=3600 + round_)
        backend.expire("k0", 7200)
    queue = backend.stats().extra["expiry_queue"]
    assert isinstance(queue, int)
    assert 100 <= queue <= 2 * 100 + 64
    clock.advance(3600 + 199)
    assert backend.purge_expired() == 99
    assert live_keys(backend) == {"k0"}


@pytest.mark.parametrize("ttl", [0, -1, math.nan, True, "5"])
def test_invalid_ttl_is_rejected(backend: MemoryBackend, ttl: object) -> None:
    with pytest.raises(InvalidTTLError):
        backend.set("a", b"v", ttl=ttl)  # type: ignore[arg-type]
    with pytest.raises(InvalidTTLError):
        backend.incr("n", ttl=ttl)  # type: ignore[arg-type]
    backend.set("a", b"v")
    with pytest.raises(InvalidTTLError):
        backend.expire("a", ttl)  # type: ignore[arg-type]
    assert backend.ttl("a") == math.inf
    assert backend.exists("n") is False


def test_infinite_ttl_means_no_expiry(backend: MemoryBackend) -> None:
    backend.set("a", b"v", ttl=math.inf)
    assert backend.ttl("a") == math.inf


# -- stats and the rest ----------------------------------------------------------------------


def test_stats_counters(clock: FakeClock) -> None:
    backend = MemoryBackend(max_entries=2, max_bytes=1000, clock=clock)
    backend.set("a", b"12")
    backend.get("a")
    backend.get_many(["a", "missing", "a"])
    backend.execute([Op("get", "nope")])
    backend.set_many({"b": b"1", "c": b"1"})
    clock.advance(7)
    stats = backend.stats()
    assert stats.backend == "memory"
    assert (stats.hits, stats.misses, stats.evictions, stats.expired) == (3, 2, 1, 0)
    assert (stats.keys, stats.used_memory, stats.max_memory) == (2, 4, 1000)
    assert stats.uptime_seconds == 7
    assert stats.memory_ratio == 4 / 1000
    assert stats.extra["max_entries"] == 2


def test_close_keeps_entries_and_clear_empties(backend: MemoryBackend) -> None:
    backend.set("a", b"v")
    backend.get("a")
    backend.close()
    assert backend.get("a") == b"v"
    backend.clear()
    assert backend.get("a") is None
    stats = backend.stats()
    assert (stats.keys, stats.used_memory, stats.hits) == (0, 0, 2)


def test_values_must_be_bytes_like(backend: MemoryBackend) -> None:
    with pytest.raises(SerializationError, match="str"):
        backend.set("a", "text")  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="int"):
        backend.set_many({"a": 5})  # type: ignore[dict-item]
    buffer = bytearray(b"abc")
    backend.set("a", buffer)  # type: ignore[arg-type]
    buffer[0] = ord("x")
    assert backend.get("a") == b"abc"


@pytest.mark.parametrize("stored", [b"01", b"-0", b"+1", b"1 ", b"9223372036854775808"])
def test_incr_accepts_only_what_redis_calls_an_integer(
    backend: MemoryBackend, stored: bytes
) -> None:
    backend.set("n", stored)
    with pytest.raises(BackendError, match="not an integer"):
        backend.incr("n")


def test_incr_overflow_and_amount_type(backend: MemoryBackend) -> None:
    backend.set("n", str(2**63 - 1).encode())
    with pytest.raises(BackendError, match="overflow"):
        backend.incr("n")
    assert backend.incr("n", -(2**63 - 1)) == 0
    with pytest.raises(TypeError, match="int"):
        backend.incr("n", 1.5)  # type: ignore[arg-type]


def test_execute_rejects_unknown_op_before_running_any(backend: MemoryBackend) -> None:
    ops = [Op("set", "a", value=b"v"), Op(cast(OpName, "flush"), "a")]
    with pytest.raises(ConfigurationError, match="flush"):
        backend.execute(ops)
    assert backend.exists("a") is False


def test_execute_transaction_puts_errors_in_slots(backend: MemoryBackend) -> None:
    backend.set("text", b"abc")
    ops = [Op("incr", "text"), Op("set", "big", value=b"v", ttl=-1), Op("incr", "n")]
    results = backend.execute(ops, transaction=True)
    assert isinstance(results[0], BackendError)
    assert isinstance(results[1], InvalidTTLError)
    assert results[2] == 1


def test_ping_is_a_small_latency(backend: MemoryBackend) -> None:
    latency = backend.ping()
    assert 0 <= latency < 1


# -- scan and globs --------------------------------------------------------------------------


def test_scan_does_not_hold_the_lock_between_chunks(backend: MemoryBackend) -> None:
    backend.set_many({"a": b"1", "b": b"2", "c": b"3"})
    keys = backend.scan("*", count=1)
    first = next(keys)
    # A scan that held the (non-reentrant) lock across a yield would deadlock here.
    backend.delete_many([key for key in "abc" if key != first])
    backend.set("d", b"4")
    assert list(keys) == []


def test_delete_pattern_during_writes_leaves_others(backend: MemoryBackend) -> None:
    backend.set_many({f"user:{i}": b"v" for i in range(1000)})
    backend.set_many({f"post:{i}": b"v" for i in range(10)})
    assert backend.delete_pattern("user:*", batch_size=7) == 1000
    assert live_keys(backend) == {f"post:{i}" for i in range(10)}


# Checked against redis-server 7.0's SCAN MATCH, quirks included.
@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("[]a", set()),
        ("[^]", {"a", "b", "]", "-", "\\", "^"}),
        ("[b-a]", {"a", "b"}),
        ("[^a-b]", {"]", "-", "\\", "^"}),
        ("[a-]", {"a", "]", "^"}),
        ("[a", {"a"}),
        ("[\\]]", {"]"}),
        ("\\", {"\\"}),
        ("a\\", {"a\\"}),
        ("**b", {"b", "ab", "a\\b"}),
        ("?\\b", {"ab"}),
    ],
)
def test_scan_follows_redis_glob_quirks(
    backend: MemoryBackend, pattern: str, expected: set[str]
) -> None:
    backend.set_many(dict.fromkeys(["a", "b", "]", "-", "\\", "^", "ab", "a\\", "a\\b"], b""))
    assert set(backend.scan(pattern)) == expected


@given(st.text(), st.text(min_size=1))
def test_escaped_text_matches_only_itself(text: str, other: str) -> None:
    regex = glob_to_regex(escape_glob(text))
    assert regex.match(text)
    assert not regex.match(text + other)
    assert not regex.match(other + text)


# -- threads ---------------------------------------------------------------------------------


def run_threads(count: int, target: Callable[[], None]) -> None:
    """Run ``target`` in ``count`` threads started together; re-raise the first failure."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def test_concurrent_incr_loses_no_update() -> None:
    backend = MemoryBackend()

    def work() -> None:
        for _ in range(2000):
            backend.incr("counter")

    run_threads(8, work)
    assert backend.get("counter") == b"16000"


def test_concurrent_set_and_get_never_see_a_torn_value() -> None:
    backend = MemoryBackend()
    values = {b"A" * 4096, b"B" * 4096}
    backend.set("k", b"A" * 4096)
    seen: set[bytes] = set()

    def work() -> None:
        for i in range(3000):
            if i % 2:
                backend.set("k", b"A" * 4096 if i % 3 else b"B" * 4096)
            else:
                value = backend.get("k")
                assert value is not None
                seen.add(value)

    run_threads(8, work)
    assert seen <= values
    assert seen


def test_concurrent_writes_keep_limits_and_byte_count_exact() -> None:
    backend = MemoryBackend(max_entries=50, max_bytes=5000)

    def work() -> None:
        name = threading.current_thread().name
        for i in range(1500):
            backend.set(f"{name}:{i % 80}", b"x" * (i % 97))
            if i % 5 == 0:
                backend.delete(f"{name}:{(i * 7) % 80}")

    run_threads(8, work)
    keys = list(backend.scan("*"))
    values = backend.get_many(keys)
    stats = backend.stats()
    assert stats.keys == len(keys) <= 50
    assert stats.used_memory == sum(
        len(key.encode()) + len(value or b"") for key, value in zip(keys, values, strict=True)
    )
    assert stats.used_memory is not None
    assert stats.used_memory <= 5000


# -- tag sets and compare-and-delete ----------------------------------------------------------


def test_tag_sets_count_in_keys_and_bytes(backend: MemoryBackend) -> None:
    backend.tag_add("tag", ["ab", "é"], 60)
    backend.tag_add("tag", ["ab", "c"], 60)
    stats = backend.stats()
    assert (stats.keys, stats.used_memory) == (1, len("tag") + 2 + 2 + 1)
    assert backend.tag_remove("tag", ["ab", "zz"]) == 1
    assert backend.stats().used_memory == len("tag") + 2 + 1
    assert backend.tag_remove("tag", ["é", "c"]) == 2
    assert (backend.stats().keys, backend.stats().used_memory) == (0, 0)
    assert backend.stats().hits == backend.stats().misses == 0


def test_tag_ttl_grows_by_the_clock(backend: MemoryBackend, clock: FakeClock) -> None:
    backend.tag_add("tag", ["a"], 10)
    clock.advance(5)
    backend.tag_add("tag", ["b"], 3)
    assert backend.ttl("tag") == 5
    backend.tag_add("tag", ["c"], 20)
    assert backend.ttl("tag") == 20
    clock.advance(20)
    assert backend.tag_members("tag") == []
    assert backend.stats().expired == 1


def test_expired_tag_sets_are_purged(backend: MemoryBackend, clock: FakeClock) -> None:
    backend.tag_add("old", ["a"], 1)
    backend.tag_add("kept", ["a"], None)
    clock.advance(2)
    assert backend.purge_expired() == 1
    assert live_keys(backend) == {"kept"}
    assert backend.stats().used_memory == len("kept") + 1


def test_tag_sets_take_part_in_lru_eviction(clock: FakeClock) -> None:
    backend = MemoryBackend(max_entries=2, clock=clock)
    backend.tag_add("tag", ["a"], None)
    backend.set("v1", b"1")
    backend.tag_add("tag", ["b"], None)  # adding touches the set, so v1 is older now
    backend.set("v2", b"2")
    assert live_keys(backend) == {"tag", "v2"}
    assert backend.stats().evictions == 1


def test_growing_tag_set_evicts_to_stay_under_max_bytes(clock: FakeClock) -> None:
    backend = MemoryBackend(max_bytes=20, clock=clock)
    backend.set("v", b"12345")
    backend.tag_add("t", ["0123456789"], None)
    backend.tag_add("t", ["abcdef"], None)
    assert live_keys(backend) == {"t"}
    assert backend.stats().used_memory == 1 + 10 + 6


def test_set_replaces_a_tag_set_and_its_bytes(backend: MemoryBackend) -> None:
    backend.tag_add("k", ["member"], None)
    assert backend.set("k", b"v", ttl=5) is True
    assert backend.get("k") == b"v"
    assert backend.stats().used_memory == 2
    with pytest.raises(BackendError, match="not a tag set"):
        backend.tag_remove("k", ["member"])
    backend.tag_add("t", ["a"], None)
    with pytest.raises(BackendError, match="holds a tag set"):
        backend.incr("t")
    assert isinstance(backend.execute([Op("get", "t")])[0], BackendError)


def test_delete_if_equals_refuses_a_tag_set(backend: MemoryBackend) -> None:
    backend.tag_add("t", ["a"], None)
    with pytest.raises(BackendError, match="tag set"):
        backend.delete_if_equals("t", b"a")
    assert backend.exists("t") is True


def test_delete_if_equals_ignores_an_expired_value(
    backend: MemoryBackend, clock: FakeClock
) -> None:
    backend.set("lock", b"token", ttl=1)
    clock.advance(1)
    assert backend.delete_if_equals("lock", b"token") is False


@pytest.mark.parametrize("call", ["tag_add", "tag_remove"])
def test_tag_members_must_not_be_one_string(backend: MemoryBackend, call: str) -> None:
    args: tuple[object, ...] = ("tag", "abc", 60) if call == "tag_add" else ("tag", "abc")
    with pytest.raises(TypeError, match="single str"):
        getattr(backend, call)(*args)
    assert backend.exists("tag") is False


def test_invalid_tag_ttl_is_rejected(backend: MemoryBackend) -> None:
    with pytest.raises(InvalidTTLError):
        backend.tag_add("tag", ["a"], 0)
    assert backend.exists("tag") is False


def test_concurrent_tag_adds_lose_no_member() -> None:
    backend = MemoryBackend()

    def work() -> None:
        name = threading.current_thread().name
        for i in range(300):
            backend.tag_add("tag", [f"{name}:{i}"], 60)
            if i % 3 == 0:
                backend.tag_remove("tag", [f"{name}:{i}"])

    run_threads(8, work)
    assert len(backend.tag_members("tag")) == 8 * 200
