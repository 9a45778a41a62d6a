"""``@invalidates``: remove cached entries after the decorated function returns."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from kirocache._decorators.plan import resolve_cache
from kirocache.exceptions import ConfigurationError
from kirocache.keys import ArgumentKey, KeyTemplate, Namespace

if TYPE_CHECKING:
    from kirocache._cache import Cache

__all__ = ["invalidates"]

F = TypeVar("F", bound=Callable[..., Any])


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

    Examples:
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
