"""``@cached`` and ``@invalidates`` for ``def`` and ``async def`` functions.

``@cached`` returns a ``CachedFunction`` (sync, ``_cached_sync.py``) or an
``AsyncCachedFunction`` (async, ``_cached_async.py``), twins: the same public names, the same
steps in the same order, over the pure ``Plan`` in ``_plan.py``. Both, with ``warm`` and
``awarm``, are importable from here as before.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar, cast, overload

from typing_extensions import ParamSpec

from kirocache._cache import Cache
from kirocache._cached_async import AsyncCachedFunction, awarm
from kirocache._cached_sync import CachedFunction, warm
from kirocache._plan import LockMode, Plan, resolve_cache
from kirocache._types import Duration
from kirocache.exceptions import ConfigurationError
from kirocache.keys import KeyTemplate, Namespace

__all__ = ["AsyncCachedFunction", "CachedFunction", "awarm", "cached", "invalidates", "warm"]

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


class _Cached:
    """The decorator ``cached(...)`` returns; picks the sync or async wrapper once."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncCachedFunction[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R]) -> CachedFunction[P, R]: ...
    def __call__(self, func: Callable[P, Any]) -> Any:
        target = getattr(func, "__func__", func)
        if not callable(target):
            msg = f"@cached decorates functions, not {type(func).__name__}"
            raise ConfigurationError(msg)
        plan = Plan(func, **self._options)
        if inspect.iscoroutinefunction(target):
            return AsyncCachedFunction(func, plan)
        return CachedFunction(func, plan)


def cached(
    prefix: Namespace | str | None = None,
    *,
    key: str | None = None,
    ttl: Duration | None = None,
    cache: Cache | None = None,
    condition: Callable[[Any], bool] | None = None,
    tags: Sequence[str] = (),
    lock: LockMode = True,
    lock_timeout: Duration = 10.0,
    stale_ttl: Duration | None = None,
    early_refresh: float | bool = False,
) -> _Cached:
    """Cache a function's results under keys built from its arguments; sync or async.

    Args:
        prefix: A ``Namespace`` (its TTL is the default) or a prefix string; without one the
            function's module and qualified name form the prefix.
        key: A template over the parameters (``"{user_id}"``, ``"{user.id}:{lang}"``);
            without one the key comes from all bound arguments.
        ttl: Seconds (or a timedelta) to keep a result; overrides the namespace's TTL.
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

    Returns:
        A decorator turning ``def`` into a ``CachedFunction`` and ``async def`` into an
        ``AsyncCachedFunction``, with the same parameters and return type.

    Raises:
        ConfigurationError: A template names an unknown parameter, or an option is invalid.

    Example:
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
    return _Cached(
        {
            "prefix": prefix,
            "key": key,
            "ttl": ttl,
            "cache": cache,
            "condition": condition,
            "tags": tags,
            "lock": lock,
            "lock_timeout": lock_timeout,
            "stale_ttl": stale_ttl,
            "early_refresh": early_refresh,
        }
    )


class _Invalidation:
    """What ``@invalidates`` removes after a call, rendered from the call's arguments."""

    def __init__(
        self,
        func: Callable[..., Any],
        prefix: Namespace | str | None,
        key: str | None,
        keys: Sequence[str],
        patterns: Sequence[str],
        tags: Sequence[str],
        cache: Cache | None,
    ) -> None:
        from kirocache.keys import ArgumentKey

        if (prefix is None) != (key is None):
            msg = "@invalidates needs prefix= and key= together (the entry's namespace and key)"
            raise ConfigurationError(msg)
        if prefix is None and not (keys or patterns or tags):
            msg = "@invalidates needs something to remove: prefix+key, keys, patterns or tags"
            raise ConfigurationError(msg)
        self.namespace = (
            prefix if isinstance(prefix, Namespace) or prefix is None else Namespace(prefix)
        )
        self.arguments = ArgumentKey(func, skip_first=False)
        self.key = KeyTemplate(key, func) if key is not None else None
        self.keys = [KeyTemplate(item, func) for item in keys]
        self.patterns = [KeyTemplate(item, func) for item in patterns]
        self.tags = [KeyTemplate(item, func) for item in tags]
        self.cache = cache

    def targets(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[list[str], list[str], list[str]]:
        """The keys, patterns and tags one call removes."""
        bound = self.arguments.bind(args, kwargs)
        keys = [template.render(bound) for template in self.keys]
        if self.key is not None and self.namespace is not None:
            keys.append(self.namespace.full_key(self.key.render(bound)))
        patterns = [template.render(bound) for template in self.patterns]
        return keys, patterns, [template.render(bound) for template in self.tags]

    def target(self) -> Cache:
        """The cache to use: the one given, else the default looked up now."""
        return resolve_cache(self.cache)


def invalidates(
    prefix: Namespace | str | None = None,
    *,
    key: str | None = None,
    keys: Sequence[str] = (),
    patterns: Sequence[str] = (),
    tags: Sequence[str] = (),
    cache: Cache | None = None,
) -> Callable[[F], F]:
    """Remove cached entries after the decorated function returns (not when it raises).

    Templates read the call's bound arguments, like ``@cached``'s ``key``.

    Args:
        prefix: The namespace of the entry named by ``key``.
        key: A key template inside ``prefix`` (``"{user_id}"``).
        keys: Full key templates (``"user:profile:{user_id}"``).
        patterns: Glob templates (``"search:{user_id}:*"``), deleted with SCAN + UNLINK.
        tags: Tag templates whose entries are all removed.
        cache: The cache; without one the default cache at call time.

    Returns:
        A decorator that keeps the function's signature and type exactly.

    Raises:
        ConfigurationError: Nothing to remove, ``prefix`` without ``key`` or the reverse,
            or a template names an unknown parameter.

    Example:
        >>> from kirocache import Cache, cached, invalidates
        >>> memory = Cache.from_url("memory://")
        >>> @cached(prefix="user:profile:", key="{user_id}", cache=memory)
        ... def get_profile(user_id: int) -> dict[str, int]:
        ...     return {"id": user_id}
        >>> @invalidates(prefix="user:profile:", key="{user_id}", cache=memory)
        ... def rename(user_id: int, name: str) -> None: ...
        >>> _ = get_profile(1)
        >>> rename(1, "Ada")
        >>> memory.exists("user:profile:1")
        False
    """

    def decorate(func: F) -> F:
        plan = _Invalidation(func, prefix, key, keys, patterns, tags, cache)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                result = await func(*args, **kwargs)
                removed_keys, removed_patterns, removed_tags = plan.targets(args, kwargs)
                target = plan.target()
                if removed_keys:
                    await target.adelete_many(removed_keys)
                for pattern in removed_patterns:
                    await target.adelete_pattern(pattern)
                if removed_tags:
                    await target.ainvalidate_tags(*removed_tags)
                return result

            return cast("F", run_async)

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            result = func(*args, **kwargs)
            removed_keys, removed_patterns, removed_tags = plan.targets(args, kwargs)
            target = plan.target()
            if removed_keys:
                target.delete_many(removed_keys)
            for pattern in removed_patterns:
                target.delete_pattern(pattern)
            if removed_tags:
                target.invalidate_tags(*removed_tags)
            return result

        return cast("F", run)

    return decorate
