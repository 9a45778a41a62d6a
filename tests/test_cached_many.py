"""@cached_many on every backend, sync and async side by side."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

import kirocache
from kirocache import (
    Cache,
    ConfigurationError,
    InvalidKeyError,
    Namespace,
    SerializationError,
    cached,
    cached_many,
)
from kirocache.backends.memory import MemoryBackend
from kirocache.testing import CacheRecorder, FaultyBackend, ause_cache, use_cache

PROFILE = Namespace("user:profile:", ttl=3600)


@dataclasses.dataclass
class Profile:
    id: int
    name: str
    joined: dt.date


def profile(user_id: int) -> Profile:
    return Profile(user_id, f"user {user_id}", dt.date(2024, 1, 2))


@pytest.fixture
def counted(cache: Cache) -> FaultyBackend:
    """The ``cache`` fixture's backend, counting the calls that reach it (never failing)."""
    return FaultyBackend(cache.backend)


@pytest.fixture
def counting_cache(counted: FaultyBackend) -> Cache:
    return Cache(counted)


# -- hits, misses and order -----------------------------------------------------------------


def test_only_missing_ids_reach_the_function(cache: Cache) -> None:
    calls: list[list[int]] = []

    @cached_many(prefix=PROFILE, cache=cache)
    def get_profiles(user_ids: list[int]) -> dict[int, Profile]:
        calls.append(list(user_ids))
        return {user_id: profile(user_id) for user_id in user_ids}

    assert get_profiles([2, 4]) == {2: profile(2), 4: profile(4)}
    answer = get_profiles([5, 4, 3, 2, 1])
    assert calls == [[2, 4], [5, 3, 1]]
    assert list(answer) == [5, 4, 3, 2, 1]  # the caller's order, hits and misses merged
    assert answer == {i: profile(i) for i in [5, 4, 3, 2, 1]}
    assert all(type(value) is Profile for value in answer.values())  # hits decoded too
    assert get_profiles([1, 2, 3]) == {i: profile(i) for i in [1, 2, 3]}
    assert len(calls) == 2


async def test_async_only_missing_ids_reach_the_function(cache: Cache) -> None:
    calls: list[list[int]] = []

    @cached_many(prefix=PROFILE, cache=cache)
    async def get_profiles(user_ids: list[int]) -> dict[int, Profile]:
        calls.append(list(user_ids))
        return {user_id: profile(user_id) for user_id in user_ids}

    assert await get_profiles([2, 4]) == {2: profile(2), 4: profile(4)}
    answer = await get_profiles([5, 4, 3, 2, 1])
    assert calls == [[2, 4], [5, 3, 1]]
    assert list(answer) == [5, 4, 3, 2, 1]
    assert all(type(value) is Profile for value in answer.values())
    assert await get_profiles([1, 2, 3]) == {i: profile(i) for i in [1, 2, 3]}
    assert len(calls) == 2


def test_list_results_are_aligned_with_the_ids(cache: Cache) -> None:
    calls: list[list[int]] = []

    @cached_many(prefix="square:", cache=cache)
    def squares(numbers: Sequence[int]) -> list[int]:
        calls.append(list(numbers))
        return [n * n for n in numbers]

    assert squares([3, 1]) == [9, 1]
    assert squares([1, 2, 3, 2, 4]) == [1, 4, 9, 4, 16]
    assert calls == [[3, 1], [2, 4]]


async def test_async_list_results_are_aligned_with_the_ids(cache: Cache) -> None:
    calls: list[list[int]] = []

    @cached_many(prefix="square:", cache=cache)
    async def squares(numbers: Sequence[int]) -> list[int]:
        calls.append(list(numbers))
        return [n * n for n in numbers]

    assert await squares([3, 1]) == [9, 1]
    assert await squares([1, 2, 3, 2, 4]) == [1, 4, 9, 4, 16]
    assert calls == [[3, 1], [2, 4]]


def test_duplicate_ids_are_loaded_once(cache: Cache) -> None:
    calls: list[list[int]] = []

    @cached_many(prefix=PROFILE, cache=cache)
    def get_profiles(user_ids: list[int]) -> dict[int, Profile]:
        calls.append(list(user_ids))
        return {user_id: profile(user_id) for user_id in user_ids}

    @cached_many(prefix="names:", cache=cache)
    def names(user_ids: list[int]) -> list[str]:
        calls.append(list(user_ids))
        return [f"n{user_id}" for user_id in user_ids]

    assert list(get_profiles([3, 1, 3, 3, 1])) == [3, 1]
    assert names([7, 7, 8, 7]) == ["n7", "n7", "n8", "n7"]
    assert calls == [[3, 1], [7, 8]]


def test_the_function_gets_the_callers_kind_of_collection(cache: Cache) -> None:
    seen: list[Any] = []

    @cached_many(prefix="kind:", cache=cache)
    def load(ids: Iterable[int]) -> dict[int, int]:
        seen.append(ids)
        return {i: -i for i in ids}

    assert load((1, 2)) == {1: -1, 2: -2}
    assert load({2, 3}) == {2: -2, 3: -3}
    assert load(frozenset({3, 4})) == {3: -3, 4: -4}
    assert load(i for i in (4, 5)) == {4: -4, 5: -5}  # any other iterable: a list
    assert load({5: "a", 6: "b"}.keys()) == {5: -5, 6: -6}  # another set: a set
    assert seen == [(1, 2), {3}, frozenset({4}), [5], {6}]
    assert [type(ids) for ids in seen] == [tuple, set, frozenset, list, set]


def test_a_list_result_follows_the_order_of_a_set_it_was_given(cache: Cache) -> None:
    @cached_many(prefix="neg:", cache=cache)
    def negate(ids: set[int]) -> list[int]:
        return [-i for i in ids]  # the set's own iteration order

    ids = set(range(40, 0, -3))
    assert negate(ids) == [-i for i in ids]
    other = {1, 4, 100, 7}
    assert negate(other) == [-i for i in other]


def test_empty_ids_do_no_io_and_do_not_call(counting_cache: Cache, counted: FaultyBackend) -> None:
    calls: list[object] = []

    @cached_many(prefix=PROFILE, cache=counting_cache)
    def get_profiles(user_ids: list[int]) -> dict[int, Profile]:
        calls.append(user_ids)
        return {}

    @cached_many(prefix=PROFILE, cache=counting_cache)
    def listed(user_ids: tuple[int, ...]) -> list[Profile]:
        calls.append(user_ids)
        return []

    assert get_profiles([]) == {}
    assert listed(()) == []
    assert get_profiles.invalidate([]) == 0
    assert calls == []
    assert not counted.calls


async def test_async_empty_ids_do_no_io_and_do_not_call(
    counting_cache: Cache, counted: FaultyBackend
) -> None:
    @cached_many(prefix=PROFILE, cache=counting_cache)
    async def get_profiles(user_ids: list[int]) -> dict[int, Profile]:
        raise AssertionError

    assert await get_profiles([]) == {}
    assert await get_profiles.invalidate([]) == 0
    assert not counted.calls


# -- round trips ----------------------------------------------------------------------------


def test_one_get_many_and_one_store_pipeline_per_call(
    counting_cache: Cache, counted: FaultyBackend
) -> None:
    @cached_many(prefix=PROFILE, cache=counting_cache)
    def get_profiles(user_ids: list[int]) -> dict[int, Profile]:
        return {user_id: profile(user_id) for user_id in user_ids}

    get_profiles(list(range(50)))
    assert counted.calls == {"get_many": 1, "execute": 1}
    counted.calls.clear()
    get_profiles([*range(40, 60), 41, 42])
    assert counted.calls == {"get_many": 1, "execute": 1}
    counted.calls.clear()
    get_profiles([59, 1, 2])  # all hits: nothing to store
    assert counted.calls == {"get_many": 1}


async def test_async_one_get_many_and_one_store_pipeline_per_call(
    counting_cache: Cache, counted: FaultyBackend
) -> None:
    @cached_many(prefix=PROFILE, cache=counting_cache)
    async def get_profiles(user_ids: list[int]) -> dict[int, Profile]:
        return {user_id: profile(user_id) for user_id in user_ids}

    await get_profiles(list(range(50)))
    assert counted.calls == {"aget_many": 1, "aexecute": 1}
    counted.calls.clear()
    await get_profiles([*range(40, 60), 41, 42])
    assert counted.calls == {"aget_many": 1, "aexecute": 1}
    counted.calls.clear()
    await get_profiles([59, 1, 2])
    assert counted.calls == {"aget_many": 1}


def test_metrics_see_one_read_with_its_hits_and_misses() -> None:
    recorder = CacheRecorder()
    cache = Cache(MemoryBackend(), metrics=recorder)

    @cached_many(prefix=PROFILE, cache=cache)
    def get_profiles(user_ids: list[int]) -> dict[int, Profile]:
        return {user_id: profile(user_id) for user_id in user_ids}

    get_profiles([1, 2])
    get_profiles([1, 2, 3])
    reads = [(r.outcome, r.count) for r in recorder.records if r.operation == "get_many"]
    assert reads == [("miss", 2), ("hit", 2), ("miss", 1)]
    assert {r.namespace for r in recorder.records} == {"user:profile:"}


# -- sharing entries with @cached -------------------------------------------------------------


def test_shares_entries_with_cached_on_the_single_id_function(cache: Cache) -> None:
    calls: list[str] = []

    @cached(prefix=PROFILE, cache=cache)
    def get_profile(user_id: int, lang: str = "en") -> Profile:
        calls.append(f"one {user_id} {lang}")
        return profile(user_id)

    @cached_many(prefix=PROFILE, cache=cache)
    def get_profiles(user_ids: list[int], lang: str = "en") -> dict[int, Profile]:
        calls.append(f"many {user_ids} {lang}")
        return {user_id: profile(user_id) for user_id in user_ids}

    assert get_profiles.cache_keys([1, 2], lang="fr") == [
        get_profile.cache_key(1, lang="fr"),
        get_profile.cache_key(2, "fr"),
    ]
    get_profiles([1, 2], "fr")  # the bulk call fills ...
    assert get_profile(1, lang="fr") == profile(1)
    assert get_profile(2, "fr") == profile(2)
    assert calls == ["many [1, 2] fr"]  # ... the single calls hit
    get_profile(3)  # the single call fills ...
    assert get_profiles([1, 3]) == {1: profile(1), 3: profile(3)}
    assert calls == ["many [1, 2] fr", "one 3 en", "many [1] en"]  # ... the bulk call hits 3
    assert type(get_profile(1)) is Profile


async def test_async_shares_entries_with_cached_on_the_single_id_function(cache: Cache) -> None:
    calls: list[str] = []

    @cached(prefix=PROFILE, key="{user_id}", cache=cache)
    async def get_profile(user_id: int) -> Profile:
        calls.append(f"one {user_id}")
        return profile(user_id)

    @cached_many(prefix=PROFILE, key="{user_ids}", cache=cache)
    async def get_profiles(user_ids: list[int]) -> dict[int, Profile]:
        calls.append(f"many {user_ids}")
        return {user_id: profile(user_id) for user_id in user_ids}

    assert get_profiles.cache_keys([5]) == [get_profile.cache_key(5)] == ["user:profile:5"]
    await get_profiles([1, 2])
    assert await get_profile(2) == profile(2)
    await get_profile(3)
    assert await get_profiles([3, 2, 1]) == {3: profile(3), 2: profile(2), 1: profile(1)}
    assert calls == ["many [1, 2]", "one 3"]


def test_sync_bulk_and_async_single_share_entries(cache: Cache) -> None:
    @cached_many(prefix=PROFILE, cache=cache)
    def get_profiles(user_ids: list[int]) -> list[Profile]:
        return [profile(user_id) for user_id in user_ids]

    @cached(prefix=PROFILE, cache=cache)
    def get_profile(user_id: int) -> Profile:
        raise AssertionError

    get_profiles([7, 8])
    assert get_profile.get_cached(8) == profile(8)


def test_templates_with_attributes_and_other_arguments(cache: Cache) -> None:
    @dataclasses.dataclass(frozen=True)
    class User:
        id: int

    calls: list[list[int]] = []

    @cached(prefix="settings:", key="{user.id}:{lang}", cache=cache)
    def settings(user: User, lang: str, debug: bool = False) -> str:
        return f"{user.id}/{lang}"

    @cached_many(prefix="settings:", key="{users.id}:{lang}", cache=cache)
    def many_settings(users: list[User], lang: str, debug: bool = False) -> dict[User, str]:
        calls.append([user.id for user in users])
        return {user: f"{user.id}/{lang}" for user in users}

    assert many_settings.cache_keys([User(1)], "de") == [settings.cache_key(User(1), "de")]
    assert settings(User(2), "de") == "2/de"
    assert many_settings([User(1), User(2)], "de", debug=True) == {
        User(1): "1/de",
        User(2): "2/de",
    }
    assert calls == [[1]]
    assert cache.exists("settings:1:de")


def test_methods_key_without_self_and_share_with_cached(cache: Cache) -> None:
    calls: list[list[int]] = []

    class Repo:
        @cached(prefix="exercise:", cache=cache)
        def get(self, exercise_id: int) -> str:
            return f"e{exercise_id}"

        @cached_many(prefix="exercise:", cache=cache)
        def get_many(self, exercise_ids: list[int]) -> dict[int, str]:
            calls.append(exercise_ids)
            return {i: f"e{i}" for i in exercise_ids}

        @classmethod
        @cached_many(prefix="exercise:", cache=cache)
        def get_many_cls(cls, exercise_ids: list[int]) -> list[str]:
            calls.append(exercise_ids)
            return [f"e{i}" for i in exercise_ids]

    repo = Repo()
    repo.get(1)
    assert repo.get_many([1, 2]) == {1: "e1", 2: "e2"}
    assert Repo().get_many([2, 1]) == {2: "e2", 1: "e1"}
    assert Repo.get_many_cls([3, 2]) == ["e3", "e2"]
    assert calls == [[2], [3]]
    assert repo.get_many.cache_keys([4]) == ["exercise:4"]
    assert repo.get_many.invalidate([1, 2, 3, 9]) == 3


# -- what is stored ----------------------------------------------------------------------------


def test_ids_left_out_of_a_mapping_are_left_out_and_not_cached(cache: Cache) -> None:
    calls: list[list[int]] = []

    @cached_many(prefix=PROFILE, cache=cache)
    def get_profiles(user_ids: list[int]) -> dict[int, Profile | None]:
        calls.append(user_ids)
        return {i: profile(i) if i < 100 else None for i in user_ids if i != 404}

    assert get_profiles([1, 404, 200]) == {1: profile(1), 200: None}
    assert get_profiles([404, 1, 200]) == {1: profile(1), 200: None}
    assert calls == [[1, 404, 200], [404]]  # None was cached; the left-out id was not
    assert not cache.exists("user:profile:404")


def test_condition_decides_per_value(cache: Cache) -> None:
    calls: list[list[int]] = []

    @cached_many(prefix="n:", condition=lambda value: value is not None, cache=cache)
    def lookup(ids: list[int]) -> list[int | None]:
        calls.append(ids)
        return [i if i % 2 else None for i in ids]

    assert lookup([1, 2, 3]) == [1, None, 3]
    assert lookup([1, 2, 3]) == [1, None, 3]
    assert calls == [[1, 2, 3], [2]]


def test_ttl_and_namespace_ttl(cache: Cache) -> None:
    @cached_many(prefix=PROFILE, cache=cache)
    def by_namespace(user_ids: list[int]) -> dict[int, int]:
        return dict.fromkeys(user_ids, 0)

    @cached_many(prefix="short:", ttl=dt.timedelta(seconds=30), cache=cache)
    def short(user_ids: list[int]) -> dict[int, int]:
        return dict.fromkeys(user_ids, 0)

    by_namespace([1])
    short([1])
    assert 3000 < (cache.ttl("user:profile:1") or 0) <= 3600
    assert 0 < (cache.ttl("short:1") or 0) <= 30


@cached_many()
def doubled(ids: list[int]) -> dict[int, int]:
    return {i: 2 * i for i in ids}


def test_default_prefix_and_default_cache() -> None:
    with use_cache() as cache:
        assert doubled([1]) == {1: 2}
        (key,) = doubled.cache_keys([1])
        assert key == f"{__name__}.doubled:1"
        assert cache.get(key) == 2


async def test_async_default_cache() -> None:
    @cached_many(prefix="d:")
    async def doubled(ids: list[int]) -> dict[int, int]:
        return {i: 2 * i for i in ids}

    async with ause_cache() as cache:
        assert await doubled([1]) == {1: 2}
        assert await cache.aget("d:1") == 2


def test_helpers_invalidate_and_cache_keys(cache: Cache) -> None:
    calls: list[list[int]] = []

    @cached_many(prefix=PROFILE, cache=cache)
    def get_profiles(user_ids: list[int]) -> dict[int, Profile]:
        calls.append(user_ids)
        return {i: profile(i) for i in user_ids}

    assert get_profiles.cache_keys([2, 1, 2]) == [
        "user:profile:2",
        "user:profile:1",
        "user:profile:2",
    ]
    get_profiles([1, 2, 3])
    assert get_profiles.invalidate([1, 2, 2, 4]) == 2
    get_profiles([1, 2, 3])
    assert calls == [[1, 2, 3], [1, 2]]
    assert repr(get_profiles).startswith("<cached_many ")
    assert get_profiles.__name__ == "get_profiles"


async def test_async_helpers_invalidate_and_cache_keys(cache: Cache) -> None:
    @cached_many(prefix=PROFILE, cache=cache)
    async def get_profiles(user_ids: list[int]) -> dict[int, Profile]:
        return {i: profile(i) for i in user_ids}

    await get_profiles([1, 2, 3])
    assert await get_profiles.invalidate([1, 2, 4]) == 2
    assert get_profiles.cache_keys([3]) == ["user:profile:3"]
    assert await cache.aexists("user:profile:3")


def test_sync_and_async_wrappers_expose_the_same_names() -> None:
    def public(cls: type) -> set[str]:
        return {name for name in dir(cls) if not name.startswith("_")}

    assert public(kirocache.CachedManyFunction) == public(kirocache.AsyncCachedManyFunction)
    assert public(kirocache.CachedManyFunction) == {"cache_keys", "invalidate", "invalidate_all"}


# -- faults and errors --------------------------------------------------------------------------


def test_backend_fault_never_fails_the_call() -> None:
    backend = FaultyBackend(MemoryBackend())
    cache = Cache(backend, breaker=None)
    calls: list[list[int]] = []

    @cached_many(prefix="x:", cache=cache)
    def load(ids: list[int]) -> dict[int, int]:
        calls.append(ids)
        return {i: i + 1 for i in ids}

    load([1])
    backend.failing = True
    assert load([1, 2]) == load([1, 2]) == {1: 2, 2: 3}
    assert calls == [[1], [1, 2], [1, 2]]
    assert load.invalidate([1]) == 0  # refused by the backend: kept pending
    backend.failing = False
    # the pending invalidation is replayed before the read: the entry stored before the
    # fault is gone, so the function runs again rather than serving what was invalidated
    assert load([1]) == {1: 2}
    assert calls[-1] == [1]
    assert cache.invalidator.pending.figures()["invalidations_pending"] == 0


async def test_async_backend_fault_never_fails_the_call() -> None:
    backend = FaultyBackend(MemoryBackend())
    cache = Cache(backend, breaker=None)

    @cached_many(prefix="x:", cache=cache)
    async def load(ids: list[int]) -> list[int]:
        return [i + 1 for i in ids]

    backend.failing = True
    assert await load([1, 2, 1]) == [2, 3, 2]
    assert await load.invalidate([1]) == 0


def test_exceptions_propagate_and_nothing_is_cached(
    counting_cache: Cache, counted: FaultyBackend
) -> None:
    class Boom(Exception):
        pass

    @cached_many(prefix="boom:", cache=counting_cache)
    def boom(ids: list[int]) -> dict[int, int]:
        raise Boom(ids)

    with pytest.raises(Boom):
        boom([1, 2])
    assert counted.calls == {"get_many": 1}
    assert not counting_cache.exists("boom:1")


async def test_async_exceptions_propagate_and_nothing_is_cached(cache: Cache) -> None:
    @cached_many(prefix="boom:", cache=cache)
    async def boom(ids: list[int]) -> list[int]:
        raise KeyError(ids)

    with pytest.raises(KeyError):
        await boom([1])
    assert not await cache.aexists("boom:1")


def test_unserializable_values_name_the_function(cache: Cache) -> None:
    class Opaque:
        pass

    @cached_many(prefix="opaque:", returns="list", cache=cache, strict=True)
    def make(ids: list[int]):  # type: ignore[no-untyped-def]
        return [Opaque() for _ in ids]

    with pytest.raises(SerializationError, match=r"make"):
        make([1])
    assert not cache.exists("opaque:1")


async def test_async_unserializable_values_name_the_function(cache: Cache) -> None:
    @cached_many(prefix="opaque:", returns="dict", cache=cache, strict=True)
    async def make(ids: list[int]) -> Any:
        return {i: object() for i in ids}

    with pytest.raises(SerializationError, match=r"make"):
        await make([1])


@pytest.mark.parametrize(
    ("given", "kind"),
    [(7, "int"), ("abc", "str"), (b"ab", "bytes"), ({1: 2}, "dict"), (None, "NoneType")],
)
def test_the_ids_argument_must_be_a_collection(cache: Cache, given: object, kind: str) -> None:
    @cached_many(prefix="x:", cache=cache)
    def load(ids: list[int]) -> dict[int, int]:
        raise AssertionError

    with pytest.raises(InvalidKeyError, match=rf"argument 'ids' must be a collection .*not {kind}"):
        load(given)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError, match="collection"):
        load.cache_keys(given)  # type: ignore[arg-type]


async def test_async_the_ids_argument_must_be_a_collection(cache: Cache) -> None:
    @cached_many(prefix="x:", cache=cache)
    async def load(ids: list[int]) -> dict[int, int]:
        raise AssertionError

    with pytest.raises(InvalidKeyError, match="'ids' must be a collection"):
        await load(3)  # type: ignore[arg-type]


def test_results_of_the_wrong_shape_raise_and_are_not_cached(cache: Cache) -> None:
    @cached_many(prefix="x:", cache=cache)
    def short(ids: list[int]) -> list[int]:
        return ids[:-1]

    @cached_many(prefix="y:", cache=cache)
    def not_a_mapping(ids: list[int]) -> dict[int, int]:
        return ids  # type: ignore[return-value]

    @cached_many(prefix="z:", cache=cache)
    def not_a_list(ids: list[int]) -> list[int]:
        return "ab"  # type: ignore[return-value]

    with pytest.raises(ConfigurationError, match=r"short returned 1 values for 2 ids"):
        short([1, 2])
    with pytest.raises(ConfigurationError, match="must return a mapping of id to value, not list"):
        not_a_mapping([1])
    with pytest.raises(ConfigurationError, match="must return a list aligned with its ids"):
        not_a_list([1, 2])
    assert not cache.exists("x:1")


def test_wrong_usage_fails_at_decoration() -> None:
    with pytest.raises(ConfigurationError, match="has no parameter for the ids"):

        @cached_many(prefix="x:")
        def nothing() -> dict[int, int]:
            return {}

    with pytest.raises(ConfigurationError, match="has no parameter for the ids"):

        class Repo:
            @cached_many(prefix="x:")
            def only_self(self) -> dict[int, int]:
                return {}

    with pytest.raises(ConfigurationError, match=r"ids='user_ids' is not a parameter.*: ids"):

        @cached_many(prefix="x:", ids="user_ids")
        def wrong_name(ids: list[int]) -> dict[int, int]:
            return {}

    with pytest.raises(ConfigurationError, match=r"not \*args or \*\*kwargs"):

        @cached_many(prefix="x:")
        def star(*ids: int) -> dict[int, int]:
            return {}

    with pytest.raises(ConfigurationError, match="annotate its return"):

        @cached_many(prefix="x:")
        def untyped(ids: list[int]) -> Any:
            return {}

    with pytest.raises(ConfigurationError, match="annotate its return"):

        @cached_many(prefix="x:")
        def scalar(ids: list[int]) -> int:  # type: ignore[type-var]
            return 0

    with pytest.raises(ConfigurationError, match="returns='list', but it is annotated dict"):

        @cached_many(prefix="x:", returns="list")
        def conflicting(ids: list[int]) -> dict[int, int]:
            return {}

    with pytest.raises(ConfigurationError, match="returns must be 'dict' or 'list'"):

        @cached_many(prefix="x:", returns="tuple")  # type: ignore[arg-type]
        def bad_returns(ids: list[int]) -> Any:
            return ()

    with pytest.raises(ConfigurationError, match="user_id"):

        @cached_many(prefix="x:", key="{user_id}")
        def bad_template(user_ids: list[int]) -> dict[int, int]:
            return {}

    with pytest.raises(ConfigurationError, match="decorates functions"):
        cached_many(prefix="x:")(42)  # type: ignore[call-overload]


def test_ids_can_be_named_and_keyword_only(cache: Cache) -> None:
    @cached(prefix="member:", cache=cache)
    def member(team: str, user_id: int) -> str:
        return f"{team}/{user_id}"

    @cached_many(prefix="member:", ids="user_ids", cache=cache)
    def members(team: str, *, user_ids: list[int]) -> dict[int, str]:
        return {user_id: f"{team}/{user_id}" for user_id in user_ids}

    assert members("core", user_ids=[1, 2]) == {1: "core/1", 2: "core/2"}
    assert members.cache_keys("core", user_ids=[1]) == [member.cache_key("core", 1)]
    assert member.get_cached("core", 2) == "core/2"


def test_an_annotation_that_does_not_resolve_still_gives_the_shape(cache: Cache) -> None:
    @dataclasses.dataclass
    class Local:  # local: the string annotation below cannot be resolved
        id: int

    @cached_many(prefix="local:", cache=cache)
    def load(ids: list[int]) -> list[Local]:
        return [Local(i) for i in ids]

    assert load([1]) == [Local(1)]
    # decoded untyped, as @cached does in this case: a hit would be a dict, so the value
    # is not stored (a warning says why) and the next call computes it again
    assert load([1]) == [Local(1)]
    assert not cache.exists("local:1")


async def test_async_methods_and_condition(cache: Cache) -> None:
    calls: list[list[int]] = []

    class Repo:
        @cached_many(prefix="exercise:", condition=lambda value: value != "", cache=cache)
        async def titles(self, exercise_ids: list[int]) -> list[str]:
            calls.append(exercise_ids)
            return ["" for _ in exercise_ids]  # nothing worth storing

    assert await Repo().titles([1, 2]) == ["", ""]
    assert await Repo().titles([2]) == [""]
    assert calls == [[1, 2], [2]]
    assert Repo().titles.cache_keys([1]) == ["exercise:1"]
