"""The in-process hit of ``@cached``: resolved once, read lean, and every promise kept."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import kirocache
import kirocache._cache.default
from kirocache import Cache, Namespace, cached
from kirocache._cache.resolved import Looked
from kirocache.backends import MemoryBackend
from kirocache.keys import ArgumentKey
from kirocache.metrics import InMemoryMetrics
from kirocache.serializers import OrjsonSerializer


class CopyingBackend(MemoryBackend):
    """Hands out a new bytes object on every read, as bytes off a wire are."""

    def get(self, key: str) -> bytes | None:
        raw = super().get(key)
        return None if raw is None else bytes(bytearray(raw))


# -- the key: a quick build for one positional argument -------------------------------------


def one(user_id: object) -> None: ...


class Owner:
    def method(self, user_id: object) -> None: ...


@pytest.mark.parametrize(
    "value",
    [0, 42, -7, 10**19, 10**20, -(10**20), "alice", "a.b@c-d", "1", "-3", "a:b", "", "é",
     "x" * 64, "x" * 65, True, False, None, 1.5, (1, 2), [1]],
)  # fmt: skip
def test_the_quick_key_build_gives_build_s_bodies(value: object) -> None:
    for func, args in ((one, (value,)), (Owner.method, (Owner(), value))):
        keys = ArgumentKey(func)
        quick = keys.builder()
        assert quick is not keys.build  # the quick function is used for these signatures
        assert quick(args, {}) == keys.build(args, {})
        by_name = {"user_id": value}
        assert quick(args[:-1], by_name) == keys.build(args[:-1], by_name)


def test_the_quick_key_build_is_left_out_where_it_would_not_help() -> None:
    def two(a: int, b: int) -> None: ...

    keys = ArgumentKey(two)
    assert keys.builder() == keys.build
    short = ArgumentKey(one, max_length=40)  # a 64-character str must be hashed there
    assert short.builder() == short.build


# -- the namespace resolved once per cache ---------------------------------------------------


def test_a_changed_key_prefix_is_followed_at_once() -> None:
    with Cache.from_url("memory://") as cache:
        calls: list[int] = []

        @cached(prefix="p:", ttl=60, cache=cache)
        def load(x: int) -> int:
            calls.append(x)
            return x

        assert load(1) == load(1) == 1
        assert calls == [1]
        assert cache.backend.get("p:1") is not None
        cache.key_prefix = "app:"
        assert load(1) == 1  # a miss under the new prefix, stored there
        assert calls == [1, 1]
        assert cache.backend.get("app:p:1") is not None
        assert load(1) == 1
        assert calls == [1, 1]


def test_one_function_on_two_default_caches_reads_each() -> None:
    first, second = Cache.from_url("memory://"), Cache.from_url("memory://", key_prefix="b:")
    calls: list[int] = []

    @cached(prefix="two:", ttl=60)
    def load(x: int) -> int:
        calls.append(x)
        return x * 10

    previous = kirocache._cache.default._default
    try:
        for _ in range(2):
            kirocache.configure(first)
            assert load(1) == 10
            kirocache.configure(second)
            assert load(1) == 10
    finally:
        kirocache._cache.default._default = previous
    assert calls == [1, 1]
    assert first.backend.get("two:1") is not None
    assert second.backend.get("b:two:1") is not None


def test_keys_the_route_cannot_take_are_resolved_per_call() -> None:
    with Cache.from_url("memory://") as cache:

        @cached(prefix=Namespace("kiro", ttl=60), cache=cache)
        def near(name: str) -> str:
            return name

        @cached(prefix="ü:", ttl=60, cache=cache)
        def wide(x: int) -> int:
            return x

        assert near("x") == near("x") == "x"
        assert wide(3) == wide(3) == 3
        assert near._plan.route is None  # a prefix leading into the reserved key space
        assert wide._plan.route is None  # not ASCII: its keys are checked one by one
        hits = {s.namespace: s.hits for s in cache.metrics.stats(operation="get")}  # type: ignore[union-attr]
        assert hits == {"kiro": 1, "ü:": 1}


def test_a_route_answers_a_plain_hit_alone_and_anything_else_with_what_was_seen() -> None:
    with Cache.from_url("memory://") as cache:

        @cached(prefix="p:", ttl=60, cache=cache)
        def plain(name: str) -> str:
            return name

        @cached(prefix="e:", ttl=60, stale_ttl=60, cache=cache)
        def enveloped(name: str) -> str:
            return name

        assert plain("a") == enveloped("a") == "a"  # misses, stored
        read, eread = plain._plan.route.read, enveloped._plan.route.read  # type: ignore[union-attr]
        assert read("a", 0.0) == "a"  # a plain hit: the value alone
        missed = read("b", 0.0)
        assert type(missed) is Looked
        assert missed == (kirocache.MISSING, ("p:b", None, ()))
        hit = eread("a", 0.0)  # an envelope's hit carries what was seen, for its refresh
        assert type(hit) is Looked
        assert hit[0][2] == "a"
        assert hit[1][:2] == ("e:a", cache.backend.get("e:a"))
        # a body that is not ASCII is read as ``lookup`` reads it (its checks included)
        cache.set("é", "v", namespace=plain._plan.namespace)
        assert read("é", 0.0) == Looked(("v", ("p:é", cache.backend.get("p:é"), ())))
        stats = cache.metrics.stats("p:", "get")[0]  # type: ignore[union-attr]
        assert (stats.hits, stats.misses) == (2, 2)


def test_what_a_cache_s_owner_sets_later_is_followed_by_the_next_hit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loaded: list[bytes] = []

    class Counting(OrjsonSerializer):
        def loads(self, data: bytes, type: Any = None) -> Any:
            loaded.append(data)
            return super().loads(data, type)

    with Cache.from_url("memory://") as cache:

        @cached(prefix="o:", ttl=60, cache=cache)
        def load(x: int) -> tuple[int, ...]:
            return (x,)

        assert load(1) == load(1) == (1,)  # an immutable result: served from the memo
        other = InMemoryMetrics()
        cache.metrics = other
        assert load(1) == (1,)
        assert other.stats("o:", "get")[0].hits == 1
        cache.metrics = None
        assert load(1) == (1,)
        assert other.stats("o:", "get")[0].hits == 1
        cache.metrics = other
        cache.debug = True
        with caplog.at_level(logging.DEBUG, logger="kirocache"):
            assert load(1) == (1,)
        assert any("get o:1 -> hit" in record.getMessage() for record in caplog.records)
        assert other.stats("o:", "get")[0].hits == 2
        cache.debug = False
        cache.serializer = Counting()  # bytes decoded by another serializer: decoded anew
        assert load(1) == load(1) == (1,)
        assert len(loaded) == 1


def test_a_bumped_namespace_is_never_read_from_an_old_route() -> None:
    with Cache.from_url("memory://") as cache:
        space = Namespace("bump:", ttl=60, bumpable=True)
        version = [0]

        @cached(prefix=space, cache=cache)
        def load(x: int) -> int:
            version[0] += 1
            return version[0]

        assert load(1) == load(1) == 1
        load.invalidate_all()
        assert load(1) == 2


# -- the memo: checked payloads for mutable results -------------------------------------------


def test_a_mutable_result_is_decoded_afresh_from_the_checked_payload() -> None:
    with Cache.from_url("memory://") as cache:

        @cached(prefix="m:", ttl=60, cache=cache)
        def profile(x: int) -> dict[str, Any]:
            return {"id": x, "roles": ["a"]}

        profile(1)
        first, second = profile(1), profile(1)
        assert first == second == {"id": 1, "roles": ["a"]}
        assert first is not second
        assert first["roles"] is not second["roles"]
        first["roles"].append("mutated")
        assert profile(1) == {"id": 1, "roles": ["a"]}
        full = cache.full_key("1", profile._plan.namespace)
        assert cache.codec.decoded[full][3] is None  # kept as a payload, not a value


def test_new_bytes_at_a_key_are_checked_even_after_its_payload_was() -> None:
    with Cache.from_url("memory://") as cache:
        calls: list[int] = []

        @cached(prefix="c:", ttl=60, cache=cache)
        def profile(x: int) -> dict[str, int]:
            calls.append(x)
            return {"id": x}

        profile(1)
        profile(1)
        full = cache.full_key("1", profile._plan.namespace)
        raw = cache.backend.get(full)
        corrupt = raw[:-2] + b"9}"  # the payload changed, the checksum did not
        cache.backend.set(full, corrupt, 60)
        assert profile(1) == {"id": 1}  # a miss: computed again, not the corrupt value
        assert calls == [1, 1]
        stats = cache.metrics.stats("c:", "get")[0]  # type: ignore[union-attr]
        assert (stats.hits, stats.misses) == (1, 2)


def test_bytes_off_a_wire_are_checked_on_every_read() -> None:
    backend = CopyingBackend()
    with Cache(backend) as cache:

        @cached(prefix="w:", ttl=60, cache=cache)
        def profile(x: int) -> dict[str, int]:
            return {"id": x}

        profile(1)
        assert profile(1) == {"id": 1}
        full = cache.full_key("1", profile._plan.namespace)
        raw = MemoryBackend.get(backend, full)
        assert raw is not None
        MemoryBackend.set(backend, full, raw[:-2] + b"9}", 60)
        assert profile(1) == {"id": 1}
        assert cache.get("1", namespace=profile._plan.namespace) == {"id": 1}


def test_the_memo_keeps_no_payload_for_other_serializers_or_large_entries() -> None:
    with Cache.from_url("memory://", serializer="msgpack") as packed:
        packed.set("k", {"a": 1})
        assert packed.get("k") == {"a": 1}
        assert packed.get("k") == {"a": 1}
        assert packed.full_key("k") not in packed.codec.decoded
    with Cache.from_url("memory://") as cache:
        cache.set("big", {"a": "x" * 4000})
        assert cache.get("big") == {"a": "x" * 4000}
        assert cache.get("big") == {"a": "x" * 4000}
        assert "big" not in cache.codec.decoded


# -- async: an in-process backend is read without a coroutine --------------------------------


async def test_the_async_hit_reads_an_inline_backend_and_keeps_its_promises() -> None:
    async with Cache.from_url("memory://") as cache:
        calls: list[int] = []

        @cached(prefix="a:", ttl=60, cache=cache)
        async def profile(x: int) -> dict[str, list[int]]:
            calls.append(x)
            await asyncio.sleep(0)
            return {"items": [x]}

        await profile(1)
        read = await profile(1)
        read["items"].append(2)
        assert await profile(1) == {"items": [1]}
        assert profile._plan.route is not None
        assert profile._plan.route.inline is cache.backend
        await profile.invalidate(1)
        assert await profile(1) == {"items": [1]}
        assert calls == [1, 1]
        stats = cache.metrics.stats("a:", "get")[0]  # type: ignore[union-attr]
        assert (stats.calls, stats.hits, stats.misses) == (4, 2, 2)


async def test_a_swapped_backend_is_awaited_not_called() -> None:
    async with Cache.from_url("memory://") as cache:

        @cached(prefix="s:", ttl=60, cache=cache)
        async def load(x: int) -> int:
            return x

        assert await load(1) == 1
        awaited: list[str] = []

        class Watched(MemoryBackend):
            async def aget(self, key: str) -> bytes | None:
                awaited.append(key)
                return self.get(key)

        cache.backend = Watched()
        assert await load(1) == 1
        assert awaited == ["s:1"]


async def test_a_memory_backend_with_its_own_aget_is_awaited() -> None:
    awaited: list[str] = []

    class Watched(MemoryBackend):
        async def aget(self, key: str) -> bytes | None:
            awaited.append(key)
            await asyncio.sleep(0)
            return self.get(key)

    async with Cache(Watched()) as cache:

        @cached(prefix="w:", ttl=60, cache=cache)
        async def load(x: int) -> int:
            return x

        assert await load(1) == await load(1) == 1
        assert awaited == ["w:1", "w:1"]
        assert CopyingBackend.answers_inline  # its own get only: still read inline


# -- what a review found ------------------------------------------------------------------


class _Counting:
    """A mixin whose ``aget`` counts its calls before the backend's own."""

    agets = 0

    async def aget(self, key: str) -> bytes | None:
        _Counting.agets += 1
        return await super().aget(key)  # type: ignore[misc, no-any-return]


class _MixedMemory(_Counting, MemoryBackend):
    """A MemoryBackend whose ``aget`` comes from a mixin, not its own class body."""


def test_an_async_hit_awaits_an_aget_from_a_mixin_or_put_on_the_instance() -> None:
    backend = _MixedMemory()
    cache = Cache(backend)

    @cached(cache=cache, ttl=60, prefix="mixed:")
    async def f(x: int) -> int:
        return x

    async def main() -> None:
        for _ in range(4):
            assert await f(1) == 1
        assert _Counting.agets == 4  # every read went through the mixin's aget

        plain = MemoryBackend()
        plain_cache = Cache(plain)

        @cached(cache=plain_cache, ttl=60, prefix="patched:")
        async def g(x: int) -> int:
            return x

        assert await g(1) == 1
        seen: list[str] = []
        real = plain.aget

        async def spy(key: str) -> bytes | None:
            seen.append(key)
            return await real(key)

        plain.aget = spy  # type: ignore[method-assign]  # as a test's patch would
        assert await g(1) == 1
        assert len(seen) == 1

    asyncio.run(main())


class _FailSafe(MemoryBackend):
    """A MemoryBackend that can stop answering reads, with a fail-safe copy like Tiered's."""

    down = False

    def get(self, key: str) -> bytes | None:
        if self.down:
            raise ConnectionError("down")
        return super().get(key)

    def kept(self, key: str) -> bytes | None:
        entry = self._data.get(key)
        return None if entry is None else entry[0]


def test_a_fail_safe_serve_of_an_enveloped_entry_is_counted_once() -> None:
    backend = _FailSafe()
    metrics = InMemoryMetrics()
    cache = Cache(backend, breaker=None, metrics=metrics)

    @cached(cache=cache, ttl=60, stale_ttl=60, prefix="fs:")
    def f(x: int) -> int:
        return x

    assert f(1) == 1  # a miss, stored
    assert f(1) == 1  # a hit
    backend.down = True
    assert f(1) == 1  # the fail-safe copy, served as stale
    [get] = [s for s in metrics.stats("fs:") if s.operation == "get"]
    assert (get.hits, get.stale) == (1, 1)
    assert get.calls == get.hits + get.stale + get.misses + get.errors - get.coalesced


def test_a_short_frame_with_a_json_header_is_corrupt_not_a_crash() -> None:
    backend = MemoryBackend()
    cache = Cache(backend)
    cache.set("k", {"a": 1})
    [full] = list(backend._data)
    backend.set(full, b"\xc5\x01\x01\x00\x12")  # the header's first bytes, cut short
    assert cache.get("k") is None  # a miss, counted as a decode error; never struct.error
