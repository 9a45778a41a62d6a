"""``@cached`` and ``@cached_many``: check the options once, pick the wrapper once."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from typing_extensions import ParamSpec

from kirocache._decorators.bulk import Bulk
from kirocache._decorators.cached_async import AsyncCachedFunction
from kirocache._decorators.cached_sync import CachedFunction
from kirocache._decorators.many import AsyncCachedManyFunction, CachedManyFunction
from kirocache._decorators.options import LockMode, Options, Shape, default_prefix
from kirocache._decorators.plan import Plan
from kirocache._values.expiry import TtlOption
from kirocache._values.types import Duration
from kirocache.exceptions import ConfigurationError
from kirocache.keys import Namespace

if TYPE_CHECKING:
    from kirocache._cache import Cache

__all__ = ["cached", "cached_many"]

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound="Mapping[Any, Any] | Sequence[Any]")


def _is_async(func: Callable[..., Any], decorator: str, options: Options) -> bool:
    """Whether ``func`` is an ``async def``, told once at decoration.

    Raises:
        ConfigurationError: ``func`` is not a function, or it has no ``prefix`` and its
            name cannot be one (a lambda, a closure: see ``default_prefix``).
    """
    target = getattr(func, "__func__", func)
    if not callable(target):
        msg = f"{decorator} decorates functions, not {type(func).__name__}"
        raise ConfigurationError(msg)
    if options.prefix is None:
        default_prefix(target, decorator)
    return inspect.iscoroutinefunction(target)


class _Cached:
    """The decorator ``cached(...)`` returns; picks the sync or async wrapper once."""

    def __init__(self, options: Options) -> None:
        self._options = options

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncCachedFunction[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R]) -> CachedFunction[P, R]: ...
    def __call__(self, func: Callable[P, Any]) -> Any:
        is_async = _is_async(func, "@cached", self._options)
        plan = Plan(func, self._options)
        return AsyncCachedFunction(func, plan) if is_async else CachedFunction(func, plan)


class _CachedMany:
    """The decorator ``cached_many(...)`` returns; picks the sync or async wrapper once."""

    def __init__(self, options: Options) -> None:
        self._options = options

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, M]]
    ) -> AsyncCachedManyFunction[P, M]: ...
    @overload
    def __call__(self, func: Callable[P, M]) -> CachedManyFunction[P, M]: ...
    def __call__(self, func: Callable[P, Any]) -> Any:
        is_async = _is_async(func, "@cached_many", self._options)
        bulk = Bulk(func, Plan(func, self._options))
        return AsyncCachedManyFunction(func, bulk) if is_async else CachedManyFunction(func, bulk)


def cached(
    prefix: Namespace | str | None = None,
    *,
    key: str | None = None,
    ttl: TtlOption = None,
    none_ttl: Duration | None = None,
    jitter: Duration | None = None,
    cache: Cache | None = None,
    condition: Callable[[Any], bool] | None = None,
    tags: Sequence[str] = (),
    lock: LockMode = True,
    lock_timeout: Duration = 10.0,
    stale_ttl: Duration | None = None,
    early_refresh: float | bool = False,
    strict: bool = False,
) -> _Cached:
    """Cache a function's results under keys built from its arguments; sync or async.

    Args:
        prefix: A ``Namespace`` (its TTL is the default) or a prefix string; without one the
            function's module and qualified name form the prefix (refused for a lambda or a
            function defined inside another, whose names are not unique).
        key: A template over the parameters (``"{user_id}"``, ``"{user.id}:{lang}"``);
            without one the key comes from all bound arguments.
        ttl: Seconds (or a timedelta) to keep a result; overrides the namespace's TTL.
            Or a function of the result returning its TTL (``ttl=lambda profile: 3600 if
            profile.active else 300``; ``NEVER`` or ``None`` from it: no expiry).
        none_ttl: How long to keep a ``None`` result ("not found"), usually shorter, so
            negative caching does not pin a missing row for the whole TTL.
        jitter: Add up to this many seconds at random to each result's TTL, so entries
            written together do not expire together; overrides the namespace's.
        cache: The ``Cache`` to use; without one the default cache is looked up at call
            time, so ``configure()`` or ``use_cache()`` later take effect.
        condition: ``condition(result) -> bool`` decides whether a result is stored.
        tags: Tag templates (``"user:{user_id}"``); ``cache.invalidate_tags("user:42")``
            removes every entry carrying the tag.
        lock: Stampede protection. ``True``/``"local"``: concurrent callers of one missing
            key in this process (threads or tasks) wait for a single call.
            ``"distributed"``: the same across processes through a lock in the backend.
            ``False``: none.
        lock_timeout: How long a waiter waits before it calls the function itself.
        stale_ttl: Keep a result this long past its TTL and serve it while one caller
            refreshes it in the background (and while refreshing fails).
        early_refresh: Refresh hot keys shortly before they expire, with a probability that
            grows near expiry (``True``, or a factor: larger refreshes earlier).
        strict: Raise ``SerializationError`` (or ``ValueTooLargeError``) when a result
            cannot be stored. By default such a result is returned uncached, counted in
            the metrics and warned about once per function: a value JSON cannot give back
            as it is (``None`` from ``-> Profile``, a tuple or ``inf`` where the annotation
            does not say so), one that cannot be serialized, or one over ``max_value_size``.

    Returns:
        A decorator turning ``def`` into a ``CachedFunction`` and ``async def`` into an
        ``AsyncCachedFunction``, with the same parameters and return type.

    Raises:
        ConfigurationError: A template names an unknown parameter, an option is invalid, or
            no ``prefix`` is given for a lambda or a nested function (pass ``prefix=``).

    Examples:
        >>> from kirocache import Cache, cached
        >>> from kirocache.presets import USER_PROFILE
        >>> memory = Cache.from_url("memory://")
        >>> @cached(prefix=USER_PROFILE, cache=memory)
        ... def get_profile(user_id: int) -> dict[str, object]:
        ...     return {"id": user_id, "name": "Ada"}
        >>> get_profile(42)
        {'id': 42, 'name': 'Ada'}
        >>> get_profile.cache_key(42)
        'user:profile:42'
    """
    options = Options.checked(
        prefix=prefix,
        key=key,
        ttl=ttl,
        cache=cache,
        condition=condition,
        tags=tags,
        lock=lock,
        lock_timeout=lock_timeout,
        stale_ttl=stale_ttl,
        early_refresh=early_refresh,
        strict=strict,
        none_ttl=none_ttl,
        jitter=jitter,
    )
    return _Cached(options)


def cached_many(
    prefix: Namespace | str | None = None,
    *,
    key: str | None = None,
    ids: str | None = None,
    returns: Shape | None = None,
    ttl: TtlOption = None,
    none_ttl: Duration | None = None,
    jitter: Duration | None = None,
    cache: Cache | None = None,
    condition: Callable[[Any], bool] | None = None,
    strict: bool = False,
) -> _CachedMany:
    """Cache a bulk function's results one entry per id; sync or async.

    The function takes a collection of ids and returns a mapping of id to value, or a list
    aligned with the ids. A call reads every id's entry in one ``get_many``, calls the
    function only with the ids that missed (each once, in a collection of the kind the
    caller passed: list, tuple or set), stores what it returned in one ``set_many``, and
    returns the hits and the new values merged in the caller's order of ids: a dict by id,
    or a list with one value per id (duplicates included). A call without ids does no I/O
    and does not call the function.

    An id's key is exactly the key ``@cached(prefix=...)`` gives the single-id function
    (the same parameters with one id in place of the collection), so a bulk loader and a
    single loader share their entries. Other arguments take part in the key as they do for
    ``@cached``. In a ``key`` template, the ids parameter stands for one id:
    ``key="{user_ids}"`` keys each id as ``key="{user_id}"`` does on ``get_profile(user_id)``.

    An id a mapping result leaves out is left out of the answer too, and not cached, so it
    is asked for again next time; to cache "not found", return ``None`` for it. Backend
    faults fail open (every id is a miss, nothing is stored); exceptions of the function
    propagate and nothing is cached.

    Args:
        prefix: A ``Namespace`` (its TTL is the default) or a prefix string; without one the
            function's module and qualified name form the prefix (refused for a lambda or a
            function defined inside another, whose names are not unique).
        key: A template over the parameters, as for ``@cached``; without one the key comes
            from all bound arguments, one id in place of the collection.
        ids: The parameter holding the ids; without one, the first parameter after
            ``self``/``cls``.
        returns: ``"dict"`` or ``"list"``; without it the return annotation decides
            (``dict``/``Mapping`` or ``list``/``Sequence``), and its value type is the type
            hits are decoded into (``dict[int, Profile]`` gives ``Profile``).
        ttl: Seconds (or a timedelta) to keep each value; overrides the namespace's TTL.
            Or a function of one value returning its TTL.
        none_ttl: How long to keep an id whose value is ``None`` ("not found").
        jitter: Add up to this many seconds at random to each value's TTL.
        cache: The ``Cache`` to use; without one the default cache is looked up at call time.
        condition: ``condition(value) -> bool`` decides, per id, whether a value is stored.
        strict: Raise when a value cannot be stored, as for ``@cached``; by default such
            values are returned uncached, counted and warned about once.

    Returns:
        A decorator turning ``def`` into a ``CachedManyFunction`` and ``async def`` into an
        ``AsyncCachedManyFunction``, with the same parameters and return type.

    Raises:
        ConfigurationError: No ids parameter, an unknown ``ids`` or template field, the
            shape cannot be told (no usable annotation and no ``returns``), or no
            ``prefix`` is given for a lambda or a nested function (pass ``prefix=``). At call time:
            the function returned something that is not of its shape (a list of the wrong
            length, say). ``InvalidKeyError`` at call time: the ids argument is not a
            collection (a str, a mapping, a number).

    Examples:
        >>> from kirocache import Cache, cached, cached_many
        >>> memory = Cache.from_url("memory://")
        >>> @cached(prefix="user:name:", cache=memory)
        ... def get_name(user_id: int) -> str:
        ...     return f"user {user_id}"
        >>> @cached_many(prefix="user:name:", cache=memory)
        ... def get_names(user_ids: list[int]) -> dict[int, str]:
        ...     print("loading", user_ids)
        ...     return {user_id: f"user {user_id}" for user_id in user_ids}
        >>> get_name(2)
        'user 2'
        >>> get_names([3, 2, 1])
        loading [3, 1]
        {3: 'user 3', 2: 'user 2', 1: 'user 1'}
        >>> get_names.cache_keys([1])
        ['user:name:1']
    """
    options = Options.checked(
        prefix=prefix,
        key=key,
        ttl=ttl,
        cache=cache,
        condition=condition,
        ids=ids,
        returns=returns,
        strict=strict,
        none_ttl=none_ttl,
        jitter=jitter,
    )
    return _CachedMany(options)
