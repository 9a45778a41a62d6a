"""Type-checked only (mypy --strict), never run: decorated functions keep their types.

Each ``# type: ignore[...]`` below is a call mypy must reject; with ``warn_unused_ignores``
(part of --strict) an accepted call would fail the check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from typing_extensions import assert_type

from kirocache import (
    MISSING,
    AsyncCachedFunction,
    CachedFunction,
    Missing,
    awarm,
    cached,
    invalidates,
    warm,
)
from kirocache._decorators.options import Options, StampedeGuard
from kirocache._decorators.plan import Plan
from kirocache.presets import USER_PROFILE


@dataclasses.dataclass
class Profile:
    id: int
    name: str


@cached(prefix=USER_PROFILE)
def get_profile(user_id: int, lang: str = "en") -> Profile:
    return Profile(user_id, lang)


@cached(prefix=USER_PROFILE, key="{user_id}")
async def aget_profile(user_id: int) -> Profile:
    return Profile(user_id, "async")


@invalidates(prefix=USER_PROFILE, key="{user_id}")
def update_profile(user_id: int, name: str) -> bool:
    return True


@invalidates(prefix=USER_PROFILE, key="{user_id}")
async def aupdate_profile(user_id: int, name: str) -> bool:
    return True


def takes_cached(func: CachedFunction[[int, str], Profile]) -> None:
    func(1, "en")


def takes_async(func: AsyncCachedFunction[[int], Profile]) -> None:
    func.cache_key(1)


class Repo:
    @cached(prefix="repo:")
    def find(self, item_id: int) -> list[str]:
        return []

    @cached(prefix="repo:")
    async def afind(self, item_id: int) -> list[str]:
        return []


def check_sync() -> None:
    takes_cached(get_profile)
    assert_type(get_profile(1), Profile)
    assert_type(get_profile(1, lang="fr"), Profile)
    assert_type(get_profile.invalidate(1), bool)
    assert_type(get_profile.refresh(1), Profile)
    assert_type(get_profile.cache_key(1), str)
    assert_type(get_profile.get_cached(1), Profile | Missing)
    assert_type(update_profile(1, "Ada"), bool)
    assert_type(Repo().find(3), list[str])
    assert_type(warm(get_profile, [1, 2]), int)
    cached_or_not = get_profile.get_cached(1)
    if cached_or_not is not MISSING:
        assert_type(cached_or_not, Profile)
    get_profile("1")  # type: ignore[arg-type]
    get_profile(1, 2)  # type: ignore[arg-type]
    get_profile.invalidate(user="x")  # type: ignore[call-arg]
    update_profile(1)  # type: ignore[call-arg]
    Repo().find("x")  # type: ignore[arg-type]


async def check_async() -> None:
    takes_async(aget_profile)
    takes_cached(aget_profile)  # type: ignore[arg-type]
    assert_type(await aget_profile(1), Profile)
    assert_type(await aget_profile.invalidate(1), bool)
    assert_type(await aget_profile.refresh(1), Profile)
    assert_type(await aget_profile.get_cached(1), Profile | Missing)
    assert_type(aget_profile.cache_key(1), str)
    assert_type(await aupdate_profile(1, "Ada"), bool)
    assert_type(await Repo().afind(3), list[str])
    assert_type(await awarm(aget_profile, [1]), int)
    await aget_profile("1")  # type: ignore[arg-type]


def check_options() -> None:
    # What a decorator is given reaches the plan typed: mypy follows it end to end.
    options = Options.checked(
        prefix=USER_PROFILE, key="{user_id}", ttl=60, cache=None, condition=None, lock=True
    )
    assert_type(options.key, str | None)
    assert_type(options.ttl, float | None)
    assert_type(options.tags, tuple[str, ...])
    assert_type(options.lock, StampedeGuard)
    assert_type(options.stale_ttl, float)
    plan = Plan(get_profile.__wrapped__, options)
    assert_type(plan.options, Options)
    assert_type(plan.ttl, float | None)
    assert_type(plan.keys((1,), {}), tuple[str, Sequence[str]])
    options.ttl = 5  # type: ignore[misc]
