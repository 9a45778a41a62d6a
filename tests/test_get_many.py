"""get_many's common path: keys resolved together, replies as they come, the same answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from kirocache import Cache, InvalidKeyError, Namespace
from kirocache._cache.keyspace import KeySpace
from kirocache.backends import MemoryBackend
from kirocache.backends._cluster_plan import slot_of
from kirocache.backends._redis_commands import as_bytes_list
from kirocache.backends._redis_connections import packed
from kirocache.exceptions import BackendError
from kirocache.metrics import InMemoryMetrics
from kirocache.testing import FaultyBackend

USERS = Namespace("user:", ttl=60)
POSTS = Namespace("user:posts:", ttl=30)  # longer: wins over USERS for its keys
FEED = Namespace("feed:", bumpable=True)
NEAR = Namespace("kiro")  # a prefix that could lead into the reserved "kirocache:"


def spaces(key_prefix: str = "app:") -> list[KeySpace]:
    """Key spaces without namespaces, with plain ones, and with a bumpable one."""
    bumped = KeySpace(key_prefix, 10, [USERS, FEED])
    bumped.generations[FEED.prefix] = 3
    return [KeySpace(key_prefix, None, []), KeySpace(key_prefix, 10, [USERS, POSTS]), bumped]


def outcome(call: Any) -> Any:
    """What ``call()`` returns, or the type and message of what it raises."""
    try:
        return call()
    except InvalidKeyError as exc:
        return type(exc), str(exc)


def one_by_one(space: KeySpace, keys: list[Any], namespace: Namespace | None) -> Any:
    resolved = [space.resolve(key, namespace) for key in keys]
    return [full for full, _, _ in resolved], [label for _, label, _ in resolved]


KEYS = st.text(alphabet="ab:é\x00kiroche", max_size=12)
ODD_KEYS = st.one_of(KEYS, st.sampled_from(["kirocache:gen:x", "", "user:1", "feed:9", "\ud800"]))


@given(st.lists(ODD_KEYS, min_size=1, max_size=6), st.sampled_from([None, USERS, FEED, NEAR]))
def test_resolve_many_answers_as_resolve_does_key_by_key(
    keys: list[str], namespace: Namespace | None
) -> None:
    for space in [*spaces(), *spaces("")]:
        many = outcome(lambda: space.resolve_many(keys, namespace))  # noqa: B023 - called now
        assert many == outcome(lambda: one_by_one(space, keys, namespace))  # noqa: B023


@pytest.mark.parametrize(
    ("keys", "namespace"),
    [
        (["a", "kirocache:tag:x"], None),  # the reserved space, not first
        (["kirocache:x", "a"], None),
        (["a", ""], None),  # an empty key
        (["", "a"], None),
        ([""], None),
        (["a", 1], None),  # not a str
        (["a", b"b"], USERS),
        (["a", "\ud800"], None),  # a lone surrogate no backend can encode
        (["a", "\ud800"], USERS),
        (["a", "cache:x"], NEAR),  # "kiro" + "cache:x" is reserved
    ],
)
def test_resolve_many_refuses_what_resolve_refuses(keys: list[Any], namespace: Any) -> None:
    space = KeySpace("", None, [])
    with pytest.raises(InvalidKeyError):
        space.resolve_many(keys, namespace)


def test_resolve_many_puts_each_key_in_its_namespace_with_its_generation() -> None:
    space = KeySpace("app:", None, [USERS, POSTS, FEED])
    space.generations[FEED.prefix] = 2
    fulls, labels = space.resolve_many(["x", "user:1", "user:posts:2", "feed:3"], None)
    assert fulls == ["app:x", "app:user:1", "app:user:posts:2", "app:feed:~g2:3"]
    assert labels == ["default", "user:", "user:posts:", "feed:"]
    fulls, labels = space.resolve_many(["1", "2"], USERS)
    assert (fulls, labels) == (["app:user:1", "app:user:2"], ["user:", "user:"])


def test_the_key_space_version_moves_when_a_namespace_is_registered() -> None:
    space = KeySpace("", None, [USERS])
    before = space.version
    space.register(POSTS)
    assert space.version > before
    moved = space.version
    space.register(POSTS)  # known already: nothing changed
    assert space.version == moved
    space.bumpable("feed:1", FEED)  # a bumpable namespace met in a call is registered
    assert space.version > moved


# -- get_many on every backend ----------------------------------------------------------------


def test_get_many_mixes_plain_tagged_corrupt_and_absent_entries(cache: Cache) -> None:
    cache.set_many({"a": 1, "b": [2]})
    cache.set("t", {"tagged": True}, tags=["t1"])
    cache.set("gone", "x", tags=["t2"])
    cache.invalidate_tags("t2")
    cache.set("c", "soon corrupt")
    raw = cache.backend.get("c")
    cache.backend.set("c", raw[:-1] + bytes([raw[-1] ^ 0xFF]))
    keys = ["a", "b", "t", "gone", "c", "absent"]
    assert cache.get_many(keys) == {"a": 1, "b": [2], "t": {"tagged": True}}
    assert not cache.backend.exists("c")  # the corrupt entry was dropped
    assert cache.get_many(["a", "b"], type=int) == {"a": 1}  # "b" is a list: a miss...
    assert cache.get_many(["b"]) == {"b": [2]}  # ...kept for the readers of its type


async def test_aget_many_mixes_plain_tagged_corrupt_and_absent_entries(cache: Cache) -> None:
    await cache.aset_many({"a": 1, "b": [2]})
    await cache.aset("t", {"tagged": True}, tags=["t1"])
    await cache.aset("gone", "x", tags=["t2"])
    await cache.ainvalidate_tags("t2")
    await cache.backend.aset("c", b"\xc5garbage")
    keys = ["a", "b", "t", "gone", "c", "absent"]
    assert await cache.aget_many(keys) == {"a": 1, "b": [2], "t": {"tagged": True}}
    assert not await cache.backend.aexists("c")


def test_get_many_counts_hits_and_misses_per_namespace(backend: Any) -> None:
    metrics = InMemoryMetrics()
    cache = Cache(backend, namespaces=[USERS], metrics=metrics)
    cache.set_many({"user:1": 1, "x": 2})
    assert cache.get_many(["user:1", "user:2", "x", "y", "z"]) == {"user:1": 1, "x": 2}
    figures = {item.namespace: item for item in metrics.stats(operation="get_many")}
    assert (figures["user:"].hits, figures["user:"].misses) == (1, 1)
    assert (figures["default"].hits, figures["default"].misses) == (1, 2)


def test_get_many_refuses_a_reserved_key_before_anything_is_sent() -> None:
    backend = FaultyBackend(MemoryBackend())
    cache = Cache(backend)
    backend.failing = True  # a call would fail open and hide the refusal
    with pytest.raises(InvalidKeyError, match="reserved"):
        cache.get_many(["a", "kirocache:gen:x"])


def test_get_many_fails_open_and_recovers() -> None:
    backend = FaultyBackend(MemoryBackend())
    cache = Cache(backend, breaker=None)
    cache.set_many({"a": 1, "b": 2})
    backend.failing = True
    assert cache.get_many(["a", "b"]) == {}
    assert asyncio.run(cache.aget_many(["a", "b"])) == {}
    backend.failing = False
    assert cache.get_many(["a", "b"]) == {"a": 1, "b": 2}


def test_get_many_reads_a_bumped_namespace_under_its_new_generation(cache: Cache) -> None:
    cache.register(FEED)
    cache.set_many({"feed:1": "old", "feed:2": "old"})
    cache.bump(FEED)
    cache.set("feed:1", "new")
    assert cache.get_many(["feed:1", "feed:2"]) == {"feed:1": "new"}


# -- the Redis backend's part ------------------------------------------------------------------


def test_an_mget_reply_of_bytes_is_handed_on_as_it_came() -> None:
    reply: list[Any] = [b"a", None, b""]
    assert as_bytes_list(reply) is reply
    assert as_bytes_list(["a", None, b"b"]) == [b"a", None, b"b"]  # a decoding client
    assert as_bytes_list((b"a", None)) == [b"a", None]
    with pytest.raises(BackendError, match="unexpected reply"):
        as_bytes_list([b"a", 1])


@pytest.mark.parametrize("command", [("GET", "k"), ("MGET", "a", "é:b", "c" * 300)])
def test_a_hot_read_is_packed_as_redis_py_packs_it(command: tuple[str, ...]) -> None:
    sync = redis.Connection()
    assert b"".join(packed(sync, command)) == b"".join(sync.pack_command(*command))
    aio = redis.asyncio.Connection()
    assert b"".join(packed(aio, command)) == b"".join(aio.pack_command(*command))
    # another encoding: the connection packs it, with its encoder where redis-py uses one
    for other in (
        redis.Connection(encoding="latin-1"),
        redis.asyncio.Connection(encoding="latin-1"),
    ):
        assert packed(other, ("GET", "é")) == other.pack_command("GET", "é")
    assert b"".join(other.pack_command("GET", "é")).endswith(b"\xe9\r\n")


# -- the cluster's slots -----------------------------------------------------------------------


@given(st.text(alphabet="ab{}é\ud800x", max_size=10))
def test_slot_of_is_redis_key_slot(key: str) -> None:
    assert slot_of(key) == key_slot(key.encode("utf-8", "surrogatepass"))


def test_slot_of_hashes_the_hash_tag_only() -> None:
    assert slot_of("{user:1}:profile") == slot_of("{user:1}:orders") == slot_of("user:1")
    assert slot_of("a{}b") == key_slot(b"a{}b")  # an empty tag is no tag
