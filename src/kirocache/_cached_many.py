"""``@cached_many``: bulk loaders whose results are cached one entry per id.

``CachedManyFunction`` (sync) and ``AsyncCachedManyFunction`` (async) are twins: the same
public names, the same steps in the same order, over the pure ``ManyPlan`` and ``Call`` in
``_many_plan.py``. Each call does one ``get_many`` for all its ids and at most one
``set_many`` for the ids that missed.
"""

from __future__ import annotations

import functools
import inspect
import time
import typing
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Concatenate, Generic, TypeVar, cast, overload

from typing_extensions import ParamSpec, Self

from kirocache._core import Seen
from kirocache._many_plan import Call, ManyPlan, Shape
from kirocache._types import MISSING
from kirocache.exceptions import ConfigurationError, SerializationError

if typing.TYPE_CHECKING:
    from kirocache._cache import Cache
    from kirocache._types import Duration
    from kirocache.keys import Namespace

__all__ = ["AsyncCachedManyFunction", "CachedManyFunction", "cached_many"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R", bound="Mapping[Any, Any] | Sequence[Any]")
S = TypeVar("S")


class _ManyBase(Generic[P, R]):
    """What both wrappers share: the plan, binding to instances, ``cache_keys``.

    Close to ``_cached_base._Base`` by design: that one also carries ``cache_key``, one key
    per call, which means nothing for a bulk function.
    """

    def __init__(self, func: Callable[P, Any], plan: ManyPlan) -> None:
        self.__wrapped__ = func
        self._func: Callable[..., Any] = getattr(func, "__func__", func)
        self._plan = plan
        self._instance: Any = MISSING
        functools.update_wrapper(cast("Callable[..., Any]", self), self._func)

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        full = args if self._instance is MISSING else (self._instance, *args)
        return Call(self._plan, full, kwargs)

    def _bind_to(self, instance: object) -> Self:
        bound = object.__new__(type(self))
        bound.__dict__.update(self.__dict__)
        bound._instance = instance
        return bound

    def cache_keys(self, *args: P.args, **kwargs: P.kwargs) -> list[str]:
        """The key of each id of this call, aligned with the ids (namespace prefix included)."""
        call = self._call(args, kwargs)
        return [self._plan.namespace.full_key(body) for body in call.bodies]

    def __repr__(self) -> str:
        return f"<cached_many {self._plan.name} prefix={self._plan.namespace.prefix!r}>"


class CachedManyFunction(_ManyBase[P, R]):
    """A sync bulk function whose results are cached per id; call it as the function itself.

    Its twin for ``async def`` functions is :class:`AsyncCachedManyFunction`.
    """

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(
        self: CachedManyFunction[Concatenate[S, P2], R], instance: S, owner: type | None = None
    ) -> CachedManyFunction[P2, R]: ...
    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return self if instance is None else self._bind_to(instance)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        plan, call = self._plan, self._call(args, kwargs)
        if not call.ids:
            return cast("R", plan.empty())
        cache = plan.target()
        read_at = time.perf_counter()  # before the read: the conservative end of a window
        values, seen = cache._lookup_many(call.unique(), plan.value_type, plan.namespace)
        missing = call.missing(values)
        if missing:
            passed, call_args, call_kwargs = call.call_for(missing)
            computed = call.computed(missing, passed, self._func(*call_args, **call_kwargs))
            self._store(cache, call.storable(computed), seen, read_at)
            values.update(computed)
        return cast("R", call.answer(values))

    def _store(
        self,
        cache: Cache,
        entries: dict[str, object],
        seen: dict[str, Seen],
        read_at: float,
    ) -> None:
        # One pipeline of conditional writes: an id invalidated while the function ran
        # keeps its tombstone (see Cache._store).
        if not entries:
            return
        plan = self._plan
        try:
            cache._store_many(
                entries, plan.stored_ttl, namespace=plan.namespace, seen=seen, read_at=read_at
            )
        except SerializationError as exc:
            raise plan.unserializable(exc) from exc

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> int:
        """Remove the cached entry of every id of this call; returns how many there were."""
        plan, call = self._plan, self._call(args, kwargs)
        return plan.target().delete_many(call.unique(), namespace=plan.namespace)


class AsyncCachedManyFunction(_ManyBase[P, R]):
    """An ``async def`` bulk function whose results are cached per id; await it as the function.

    Its twin for plain functions is :class:`CachedManyFunction`; ``invalidate`` is awaitable
    here (``cache_keys`` does no I/O and stays a plain method).
    """

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(
        self: AsyncCachedManyFunction[Concatenate[S, P2], R], instance: S, owner: type | None = None
    ) -> AsyncCachedManyFunction[P2, R]: ...
    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return self if instance is None else self._bind_to(instance)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        plan, call = self._plan, self._call(args, kwargs)
        if not call.ids:
            return cast("R", plan.empty())
        cache = plan.target()
        read_at = time.perf_counter()  # before the read: the conservative end of a window
        values, seen = await cache._alookup_many(call.unique(), plan.value_type, plan.namespace)
        missing = call.missing(values)
        if missing:
            passed, call_args, call_kwargs = call.call_for(missing)
            computed = call.computed(missing, passed, await self._func(*call_args, **call_kwargs))
            await self._store(cache, call.storable(computed), seen, read_at)
            values.update(computed)
        return cast("R", call.answer(values))

    async def _store(
        self,
        cache: Cache,
        entries: dict[str, object],
        seen: dict[str, Seen],
        read_at: float,
    ) -> None:
        # One pipeline of conditional writes: an id invalidated while the function ran
        # keeps its tombstone (see Cache._store).
        if not entries:
            return
        plan = self._plan
        try:
            await cache._astore_many(
                entries, plan.stored_ttl, namespace=plan.namespace, seen=seen, read_at=read_at
            )
        except SerializationError as exc:
            raise plan.unserializable(exc) from exc

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> int:
        """Remove the cached entry of every id of this call; returns how many there were."""
        plan, call = self._plan, self._call(args, kwargs)
        return await plan.target().adelete_many(call.unique(), namespace=plan.namespace)


class _CachedMany:
    """The decorator ``cached_many(...)`` returns; picks the sync or async wrapper once."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncCachedManyFunction[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R]) -> CachedManyFunction[P, R]: ...
    def __call__(self, func: Callable[P, Any]) -> Any:
        target = getattr(func, "__func__", func)
        if not callable(target):
            msg = f"@cached_many decorates functions, not {type(func).__name__}"
            raise ConfigurationError(msg)
        plan = ManyPlan(func, **self._options)
        if inspect.iscoroutinefunction(target):
            return AsyncCachedManyFunction(func, plan)
        return CachedManyFunction(func, plan)


def cached_many(
    prefix: Namespace | str | None = None,
    *,
    key: str | None = None,
    ids: str | None = None,
    returns: Shape | None = None,
    ttl: Duration | None = None,
    cache: Cache | None = None,
    condition: Callable[[Any], bool] | None = None,
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
            function's module and qualified name form the prefix.
        key: A template over the parameters, as for ``@cached``; without one the key comes
            from all bound arguments, one id in place of the collection.
        ids: The parameter holding the ids; without one, the first parameter after
            ``self``/``cls``.
        returns: ``"dict"`` or ``"list"``; without it the return annotation decides
            (``dict``/``Mapping`` or ``list``/``Sequence``), and its value type is the type
            hits are decoded into (``dict[int, Profile]`` gives ``Profile``).
        ttl: Seconds (or a timedelta) to keep each value; overrides the namespace's TTL.
        cache: The ``Cache`` to use; without one the default cache is looked up at call time.
        condition: ``condition(value) -> bool`` decides, per id, whether a value is stored.

    Returns:
        A decorator turning ``def`` into a ``CachedManyFunction`` and ``async def`` into an
        ``AsyncCachedManyFunction``, with the same parameters and return type.

    Raises:
        ConfigurationError: No ids parameter, an unknown ``ids`` or template field, or the
            shape cannot be told (no usable annotation and no ``returns``). At call time:
            the function returned something that is not of its shape (a list of the wrong
            length, say). ``InvalidKeyError`` at call time: the ids argument is not a
            collection (a str, a mapping, a number).

    Example:
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
    return _CachedMany(
        {
            "prefix": prefix,
            "key": key,
            "ids": ids,
            "returns": returns,
            "ttl": ttl,
            "cache": cache,
            "condition": condition,
        }
    )
