"""Type-checked only (mypy --strict), never run: ``@cached_many`` keeps the bulk function's types.

Each ``# type: ignore[...]`` below is a call mypy must reject; with ``warn_unused_ignores``
(part of --strict) an accepted call would fail the check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from typing_extensions import assert_type

from kirocache import AsyncCachedManyFunction, CachedManyFunction, cached_many
from kirocache.presets import USER_PROFILE


@dataclasses.dataclass
class Profile:
    id: int
    name: str


@cached_many(prefix=USER_PROFILE)
def get_profiles(user_ids: list[int], lang: str = "en") -> dict[int, Profile]:
    return {user_id: Profile(user_id, lang) for user_id in user_ids}


@cached_many(prefix=USER_PROFILE, key="{user_ids}")
async def aget_profiles(user_ids: Sequence[int]) -> list[Profile]:
    return [Profile(user_id, "async") for user_id in user_ids]


@cached_many(prefix="names:", ids="user_ids")
def get_names(tenant: str, user_ids: frozenset[int]) -> Mapping[int, str]:
    return {}


def takes_cached_many(func: CachedManyFunction[[list[int], str], dict[int, Profile]]) -> None:
    func([1], "en")


def takes_async(func: AsyncCachedManyFunction[[Sequence[int]], list[Profile]]) -> None:
    func.cache_keys([1])


class Repo:
    @cached_many(prefix="repo:")
    def find(self, item_ids: list[int]) -> dict[int, str]:
        return {}

    @cached_many(prefix="repo:")
    async def afind(self, item_ids: list[int]) -> list[str]:
        return []


def check_sync() -> None:
    takes_cached_many(get_profiles)
    assert_type(get_profiles([1, 2]), dict[int, Profile])
    assert_type(get_profiles([1], lang="fr"), dict[int, Profile])
    assert_type(get_profiles.invalidate([1, 2]), int)
    assert_type(get_profiles.cache_keys([1, 2]), list[str])
    assert_type(get_names("acme", frozenset({1})), Mapping[int, str])
    assert_type(Repo().find([3]), dict[int, str])
    get_profiles(1)  # type: ignore[arg-type]
    get_profiles(["1"])  # type: ignore[list-item]
    get_profiles([1], 2)  # type: ignore[arg-type]
    get_profiles.invalidate(user="x")  # type: ignore[call-arg]
    Repo().find(["x"])  # type: ignore[list-item]


async def check_async() -> None:
    takes_async(aget_profiles)
    takes_cached_many(aget_profiles)  # type: ignore[arg-type]
    assert_type(await aget_profiles([1]), list[Profile])
    assert_type(await aget_profiles((1, 2)), list[Profile])
    assert_type(await aget_profiles.invalidate([1]), int)
    assert_type(aget_profiles.cache_keys([1]), list[str])
    assert_type(await Repo().afind([3]), list[str])
    await aget_profiles(1)  # type: ignore[arg-type]


@cached_many(prefix="x:")  # type: ignore[arg-type]
def not_a_bulk_function(user_ids: list[int]) -> int:
    return 0
