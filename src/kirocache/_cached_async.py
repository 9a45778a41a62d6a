"""``AsyncCachedFunction``, the async shell ``@cached`` returns, and ``awarm``.

Its twin for plain functions is ``CachedFunction`` in ``_cached_sync.py``: the same public
names, the same steps in the same order, over the pure ``Plan`` in ``_plan.py``. A change to
one belongs in the other too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Concatenate, TypeVar, cast, overload

from typing_extensions import ParamSpec, Self

from kirocache._cache import Cache
from kirocache._cached_base import _Base, _calls, _Read
from kirocache._core import Seen
from kirocache._plan import Plan
from kirocache._types import MISSING, Missing
from kirocache.exceptions import BackendError, SerializationError

__all__ = ["AsyncCachedFunction", "awarm"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
S = TypeVar("S")


class AsyncCachedFunction(_Base[P, R]):
    """An ``async def`` function whose results are cached; await it as the function itself.

    Its twin for plain functions is :class:`CachedFunction`; the helpers have the same names
    and are awaitable here (``cache_key`` does no I/O and stays a plain method).
    """

    _flights: dict[tuple[int, int, str], asyncio.Future[Any]]

    def __init__(self, func: Callable[P, Awaitable[R]], plan: Plan) -> None:
        super().__init__(func, plan)
        self._flights = {}
        self._refreshing: set[tuple[int, int, str]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(
        self: AsyncCachedFunction[Concatenate[S, P2], R], instance: S, owner: type | None = None
    ) -> AsyncCachedFunction[P2, R]: ...
    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return self if instance is None else self._bind_to(instance)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        # The hot path of every call: kept to a few attribute reads and two calls.
        plan = self._plan
        full = args if self._instance is MISSING else (self._instance, *args)
        cache = plan.cache if plan.cache is not None else plan.target()
        body = plan.build(full, kwargs)
        tags = plan.tag_names(full, kwargs) if plan.tags else ()
        read_at = time.perf_counter()  # before the read: the conservative end of a window
        entry, seen = await cache._alookup(body, plan.stored_type, plan.namespace, tags)
        if entry is MISSING:
            return await self._compute(cache, body, full, kwargs, (seen, read_at))
        if not plan.enveloped:
            return cast("R", entry)
        state = plan.freshness(entry)
        if state != "fresh":
            if state == "stale" and cache.metrics is not None:
                cache.metrics.record("get", plan.namespace.prefix, "stale", 0.0)
            self._refresh_later(cache, body, full, kwargs, (seen, read_at))
        return cast("R", entry[2])

    async def _compute(
        self, cache: Cache, body: str, args: tuple[Any, ...], kwargs: dict[str, Any], read: _Read
    ) -> R:
        if not self._plan.lock:
            return await self._run(cache, body, args, kwargs, read)
        loop = asyncio.get_running_loop()
        slot = (id(loop), id(cache), body)
        flight = self._flights.get(slot)
        if flight is not None:
            # Wait for the task already computing this key; if it failed or is too slow,
            # compute ourselves rather than fail or block for ever.
            try:
                return cast(
                    "R", await asyncio.wait_for(asyncio.shield(flight), self._plan.lock_timeout)
                )
            except Exception:  # noqa: BLE001 - the leader's failure is not ours
                return await self._run(cache, body, args, kwargs, read)
        flight = self._flights[slot] = loop.create_future()
        try:
            value: Any = MISSING
            if self._landed_after(slot, read[1]):
                reread_at = time.perf_counter()
                value, seen = await self._reread(cache, body, args, kwargs)
                read = (seen, reread_at)
            if value is not MISSING:
                pass
            elif self._plan.lock == "distributed":
                value = await self._run_locked(cache, body, args, kwargs)
            else:
                value = await self._run(cache, body, args, kwargs, read)
            flight.set_result(value)
            return cast("R", value)
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()  # retrieved here, so an unawaited failure is not logged
            raise
        finally:
            del self._flights[slot]
            self._land(slot)

    async def _reread(
        self, cache: Cache, body: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, Seen]:
        """Read the key again: ``(value or MISSING, what was seen)``."""
        plan = self._plan
        tags = plan.tag_names(args, kwargs) if plan.tags else ()
        entry, seen = await cache._alookup(body, plan.stored_type, plan.namespace, tags)
        if entry is not MISSING and plan.enveloped:
            entry = entry[2]
        return entry, seen

    async def _run_locked(
        self, cache: Cache, body: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> R:
        from kirocache._lock import DistributedLock

        plan = self._plan
        lock = DistributedLock(
            cache.backend, cache.full_key(body, plan.namespace) + ":lock", wait=plan.lock_timeout
        )
        try:
            held = await lock.aacquire()
        except BackendError:
            held = False
        try:
            tags = plan.tag_names(args, kwargs) if plan.tags else ()
            read_at = time.perf_counter()
            entry, seen = await cache._alookup(body, plan.stored_type, plan.namespace, tags)
            if entry is not MISSING:
                return cast("R", entry[2] if plan.enveloped else entry)
            return await self._run(cache, body, args, kwargs, (seen, read_at))
        finally:
            if held:
                with contextlib.suppress(BackendError):  # the lock expires by itself
                    await lock.arelease()

    async def _run(
        self,
        cache: Cache,
        body: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        read: _Read | None,
    ) -> R:
        plan = self._plan
        tags = plan.tag_names(args, kwargs)
        started = time.perf_counter()
        value: R = await self._func(*args, **kwargs)
        if plan.should_store(value):
            try:
                stored = plan.wrap(value, time.perf_counter() - started)
                if read is None:
                    await cache.aset(
                        body, stored, plan.stored_ttl, namespace=plan.namespace, tags=tags
                    )
                else:
                    await cache._astore(
                        body,
                        stored,
                        plan.stored_ttl,
                        namespace=plan.namespace,
                        seen=read[0],
                        read_at=read[1],
                        tags=tags,
                    )
            except SerializationError as exc:
                raise plan.unserializable(exc) from exc
        return value

    def _refresh_later(
        self, cache: Cache, body: str, args: tuple[Any, ...], kwargs: dict[str, Any], read: _Read
    ) -> None:
        slot = (id(asyncio.get_running_loop()), id(cache), body)
        if slot in self._refreshing:
            return
        self._refreshing.add(slot)

        async def refresh() -> None:
            try:
                await self._run(cache, body, args, kwargs, read)
            except Exception:  # noqa: BLE001, S110 - a failed refresh keeps serving the stale copy
                pass
            finally:
                self._refreshing.discard(slot)

        task = asyncio.create_task(refresh(), name=f"kirocache-refresh {body}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Remove the cached result of this call; returns whether there was one."""
        plan, full = self._plan, self._args(args)
        return await plan.target().adelete(plan.body(full, kwargs), namespace=plan.namespace)

    async def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function now and store its result, whatever is cached."""
        plan, full = self._plan, self._args(args)
        cache = plan.target()
        return await self._run(cache, plan.body(full, kwargs), full, kwargs, None)

    async def get_cached(self, *args: P.args, **kwargs: P.kwargs) -> R | Missing:
        """The cached result of this call without calling the function, or ``MISSING``."""
        plan, full = self._plan, self._args(args)
        cache = plan.target()
        entry = await cache.aget(
            plan.body(full, kwargs), MISSING, type=plan.stored_type, namespace=plan.namespace
        )
        if entry is MISSING or not plan.enveloped:
            return cast("R | Missing", entry)
        return cast("R", entry[2])


async def awarm(func: AsyncCachedFunction[..., Any], arguments: Sequence[Any]) -> int:
    """Async ``warm``: the function runs concurrently for every argument set."""
    plan = func._plan
    cache = plan.target()
    calls = [(func._args(args), kwargs) for args, kwargs in _calls(arguments)]

    async def one(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any, float]:
        started = time.perf_counter()
        value = await func._func(*args, **kwargs)
        return plan.body(args, kwargs), value, time.perf_counter() - started

    results = await asyncio.gather(*(one(args, kwargs) for args, kwargs in calls))
    entries = {
        body: plan.wrap(value, took) for body, value, took in results if plan.should_store(value)
    }
    if entries:
        await cache.aset_many(entries, plan.stored_ttl, namespace=plan.namespace)
    return len(entries)
