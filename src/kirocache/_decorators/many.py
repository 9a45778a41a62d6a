"""``CachedManyFunction`` and ``AsyncCachedManyFunction``: what ``@cached_many`` makes.

Hand-written twins side by side: the same public names, the same steps in the same order
(one ``get_many`` for every id, the function for the ids that missed, at most one pipeline
of conditional writes), over the ``Plan`` and the ``Bulk`` (``bulk.py``) that decide
everything. A change to one belongs in the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Concatenate, TypeVar, cast, overload

from typing_extensions import ParamSpec, Self

from kirocache._decorators.bulk import Bulk, BulkCall
from kirocache._decorators.bypass import bypassed
from kirocache._decorators.wrapper import Wrapper
from kirocache.exceptions import SerializationError, ValueTooLargeError

__all__ = ["AsyncCachedManyFunction", "CachedManyFunction"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R", bound="Mapping[Any, Any] | Sequence[Any]")
S = TypeVar("S")


class _Many(Wrapper[P, R]):
    """What the two bulk wrappers share beyond ``Wrapper``: the ``Bulk`` and ``cache_keys``."""

    _kind = "cached_many"

    def __init__(self, func: Callable[P, Any], bulk: Bulk) -> None:
        super().__init__(func, bulk.plan)
        self._bulk = bulk

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> BulkCall:
        return self._bulk.call(self._args(args), kwargs)

    def cache_keys(self, *args: P.args, **kwargs: P.kwargs) -> list[str]:
        """The key of each id of this call, aligned with the ids (namespace prefix included)."""
        namespace = self._plan.namespace
        return [namespace.full_key(body) for body in self._call(args, kwargs).bodies]


class CachedManyFunction(_Many[P, R]):
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
        if bypassed():
            return cast("R", self._func(*self._args(args), **kwargs))
        plan, call = self._plan, self._call(args, kwargs)
        if not call.ids:
            return cast("R", self._bulk.empty())
        cache = plan.target()
        read_at = time.perf_counter()  # before the read: the conservative end of a window
        values, seen = cache._lookup_many(call.unique(), self._bulk.value_type, plan.namespace)
        missing = call.missing(values)
        if missing:
            passed, call_args, call_kwargs = call.call_for(missing)
            computed = call.computed(missing, passed, self._func(*call_args, **call_kwargs))
            entries = call.storable(computed, cache)
            if entries:
                # one pipeline of conditional writes: an id invalidated while the function
                # ran keeps its tombstone (see Cache._store)
                try:
                    cache._store_many(
                        entries,
                        plan.ttls(entries),
                        namespace=plan.namespace,
                        seen=seen,
                        read_at=read_at,
                    )
                except (SerializationError, ValueTooLargeError) as exc:
                    plan.refused(cache, exc)  # returned uncached, unless strict
            values.update(computed)
        return cast("R", call.answer(values))

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> int:
        """Remove the cached entry of every id of this call; returns how many there were."""
        plan, call = self._plan, self._call(args, kwargs)
        return plan.target().delete_many(call.unique(), namespace=plan.namespace)

    def invalidate_all(self) -> int:
        """Remove every cached result of this function: every entry under its prefix.

        O(1) when its namespace is bumpable (a bump: the old entries are never read again
        and expire by their TTL); otherwise a pattern delete bounded by the prefix (SCAN
        and UNLINK in batches, never outside it). Functions sharing the prefix lose their
        entries too. As any pattern delete, it leaves no tombstones: a value computed
        while it runs may still be stored.

        Returns:
            How many entries were deleted (0 after a bump).
        """
        return self._plan.invalidate_all(self._plan.target())


class AsyncCachedManyFunction(_Many[P, R]):
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
        if bypassed():
            return cast("R", await self._func(*self._args(args), **kwargs))
        plan, call = self._plan, self._call(args, kwargs)
        if not call.ids:
            return cast("R", self._bulk.empty())
        cache = plan.target()
        read_at = time.perf_counter()  # before the read: the conservative end of a window
        values, seen = await cache._alookup_many(
            call.unique(), self._bulk.value_type, plan.namespace
        )
        missing = call.missing(values)
        if missing:
            passed, call_args, call_kwargs = call.call_for(missing)
            result = await self._func(*call_args, **call_kwargs)
            computed = call.computed(missing, passed, result)
            entries = call.storable(computed, cache)
            if entries:
                # one pipeline of conditional writes: an id invalidated while the function
                # ran keeps its tombstone (see Cache._store)
                try:
                    await cache._astore_many(
                        entries,
                        plan.ttls(entries),
                        namespace=plan.namespace,
                        seen=seen,
                        read_at=read_at,
                    )
                except (SerializationError, ValueTooLargeError) as exc:
                    plan.refused(cache, exc)  # returned uncached, unless strict
            values.update(computed)
        return cast("R", call.answer(values))

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> int:
        """Remove the cached entry of every id of this call; returns how many there were."""
        plan, call = self._plan, self._call(args, kwargs)
        return await plan.target().adelete_many(call.unique(), namespace=plan.namespace)

    async def invalidate_all(self) -> int:
        """Remove every cached result of this function: every entry under its prefix.

        O(1) when its namespace is bumpable (a bump: the old entries are never read again
        and expire by their TTL); otherwise a pattern delete bounded by the prefix (SCAN
        and UNLINK in batches, never outside it). Functions sharing the prefix lose their
        entries too. As any pattern delete, it leaves no tombstones: a value computed
        while it runs may still be stored.

        Returns:
            How many entries were deleted (0 after a bump).
        """
        return await self._plan.ainvalidate_all(self._plan.target())
