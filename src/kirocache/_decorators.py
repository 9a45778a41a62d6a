"""``@cached`` and ``@invalidates`` for ``def`` and ``async def`` functions.

``CachedFunction`` (sync) and ``AsyncCachedFunction`` (async) are twins: the same public
names, the same steps in the same order, over the pure ``Plan`` in ``_plan.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Concatenate, Generic, TypeVar, cast, overload

from typing_extensions import ParamSpec, Self

from kirocache._cache import Cache
from kirocache._core import Seen
from kirocache._plan import LockMode, Plan, resolve_cache
from kirocache._types import MISSING, Duration, Missing
from kirocache.exceptions import BackendError, ConfigurationError, SerializationError
from kirocache.keys import KeyTemplate, Namespace

__all__ = ["AsyncCachedFunction", "CachedFunction", "awarm", "cached", "invalidates", "warm"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])


# What the read before a computation saw, and when: the bytes a conditional write of the
# result compares with (see Cache._store). ``None`` in their place writes unconditionally.
_Read = tuple[Seen, float]
# How long a finished computation is remembered for callers whose read came before it.
_LANDED_FOR = 5.0


class _Flight:
    """One in-process computation that concurrent callers of the same key wait for."""

    __slots__ = ("event", "ok", "value")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.ok = False
        self.value: Any = None


class _Base(Generic[P, R]):
    """What both wrappers share: the plan, binding to instances, ``cache_key``."""

    def __init__(self, func: Callable[P, Any], plan: Plan) -> None:
        self.__wrapped__ = func
        self._func: Callable[..., Any] = getattr(func, "__func__", func)
        self._plan = plan
        self._instance: Any = MISSING
        # When each key's last computation finished, for a few seconds (see _land).
        self._landed: OrderedDict[tuple[object, ...], float] = OrderedDict()
        self._landed_lock = threading.Lock()
        functools.update_wrapper(cast("Callable[..., Any]", self), self._func)

    def _land(self, slot: tuple[object, ...]) -> None:
        """Note that a computation of ``slot`` just finished (see ``_landed_after``)."""
        now = time.perf_counter()
        with self._landed_lock:
            landed = self._landed
            landed.pop(slot, None)
            landed[slot] = now
            while landed and next(iter(landed.values())) < now - _LANDED_FOR:
                del landed[next(iter(landed))]

    def _landed_after(self, slot: tuple[object, ...], read_at: float) -> bool:
        """Whether a computation of ``slot`` finished after a read at ``read_at``.

        A caller whose miss was read just before another caller stored the value, and who
        arrives once that flight has ended, would otherwise call the function again.
        """
        landed = self._landed.get(slot)
        return landed is not None and landed >= read_at

    def _args(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return args if self._instance is MISSING else (self._instance, *args)

    def _bind_to(self, instance: object) -> Self:
        bound = object.__new__(type(self))
        bound.__dict__.update(self.__dict__)
        bound._instance = instance
        return bound

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key a call with these arguments is cached under (namespace prefix included)."""
        return self._plan.namespace.full_key(self._plan.body(self._args(args), kwargs))

    def __repr__(self) -> str:
        return f"<cached {self._plan.name} prefix={self._plan.namespace.prefix!r}>"


class CachedFunction(_Base[P, R]):
    """A sync function whose results are cached; call it as the function itself.

    Its twin for ``async def`` functions is :class:`AsyncCachedFunction`.
    """

    _flights: dict[tuple[int, str], _Flight]

    def __init__(self, func: Callable[P, R], plan: Plan) -> None:
        super().__init__(func, plan)
        self._flights = {}
        self._guard = threading.Lock()
        self._refreshing: set[tuple[int, str]] = set()

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(
        self: CachedFunction[Concatenate[S, P2], R], instance: S, owner: type | None = None
    ) -> CachedFunction[P2, R]: ...
    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return self if instance is None else self._bind_to(instance)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        # The hot path of every call: kept to a few attribute reads and two calls.
        plan = self._plan
        full = args if self._instance is MISSING else (self._instance, *args)
        cache = plan.cache if plan.cache is not None else plan.target()
        body = plan.build(full, kwargs)
        tags = plan.tag_names(full, kwargs) if plan.tags else ()
        read_at = time.perf_counter()  # before the read: the conservative end of a window
        entry, seen = cache._lookup(body, plan.stored_type, plan.namespace, tags)
        if entry is MISSING:
            return self._compute(cache, body, full, kwargs, (seen, read_at))
        if not plan.enveloped:
            return cast("R", entry)
        state = plan.freshness(entry)
        if state != "fresh":
            if state == "stale" and cache.metrics is not None:
                cache.metrics.record("get", plan.namespace.prefix, "stale", 0.0)
            self._refresh_later(cache, body, full, kwargs, (seen, read_at))
        return cast("R", entry[2])

    def _compute(
        self, cache: Cache, body: str, args: tuple[Any, ...], kwargs: dict[str, Any], read: _Read
    ) -> R:
        if not self._plan.lock:
            return self._run(cache, body, args, kwargs, read)
        slot = (id(cache), body)
        with self._guard:
            flight = self._flights.get(slot)
            leader = flight is None
            if flight is None:
                flight = self._flights[slot] = _Flight()
        if not leader:
            # Wait for the caller already computing this key; if it failed or is too slow,
            # compute ourselves rather than fail or block for ever.
            if flight.event.wait(self._plan.lock_timeout) and flight.ok:
                return cast("R", flight.value)
            return self._run(cache, body, args, kwargs, read)
        try:
            if self._landed_after(slot, read[1]):
                reread_at = time.perf_counter()
                entry, seen = self._reread(cache, body, args, kwargs)
                if entry is not MISSING:
                    flight.value, flight.ok = entry, True
                    return cast("R", entry)
                read = (seen, reread_at)
            if self._plan.lock == "distributed":
                flight.value = self._run_locked(cache, body, args, kwargs)
            else:
                flight.value = self._run(cache, body, args, kwargs, read)
            flight.ok = True
            return cast("R", flight.value)
        finally:
            with self._guard:
                del self._flights[slot]
            self._land(slot)
            flight.event.set()

    def _reread(
        self, cache: Cache, body: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, Seen]:
        """Read the key again: ``(value or MISSING, what was seen)``."""
        plan = self._plan
        tags = plan.tag_names(args, kwargs) if plan.tags else ()
        entry, seen = cache._lookup(body, plan.stored_type, plan.namespace, tags)
        if entry is not MISSING and plan.enveloped:
            entry = entry[2]
        return entry, seen

    def _run_locked(
        self, cache: Cache, body: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> R:
        from kirocache._lock import DistributedLock

        plan = self._plan
        lock = DistributedLock(
            cache.backend, cache.full_key(body, plan.namespace) + ":lock", wait=plan.lock_timeout
        )
        try:
            held = lock.acquire()
        except BackendError:
            held = False
        try:
            tags = plan.tag_names(args, kwargs) if plan.tags else ()
            read_at = time.perf_counter()
            entry, seen = cache._lookup(body, plan.stored_type, plan.namespace, tags)
            if entry is not MISSING:
                return cast("R", entry[2] if plan.enveloped else entry)
            return self._run(cache, body, args, kwargs, (seen, read_at))
        finally:
            if held:
                with contextlib.suppress(BackendError):  # the lock expires by itself
                    lock.release()

    def _run(
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
        value: R = self._func(*args, **kwargs)
        if plan.should_store(value):
            try:
                stored = plan.wrap(value, time.perf_counter() - started)
                if read is None:
                    cache.set(body, stored, plan.stored_ttl, namespace=plan.namespace, tags=tags)
                else:
                    cache._store(
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
        slot = (id(cache), body)
        with self._guard:
            if slot in self._refreshing:
                return
            self._refreshing.add(slot)

        def refresh() -> None:
            try:
                self._run(cache, body, args, kwargs, read)
            except Exception:  # noqa: BLE001, S110 - a failed refresh keeps serving the stale copy
                pass
            finally:
                with self._guard:
                    self._refreshing.discard(slot)

        threading.Thread(target=refresh, name=f"kirocache-refresh {body}", daemon=True).start()

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Remove the cached result of this call; returns whether there was one."""
        plan, full = self._plan, self._args(args)
        return plan.target().delete(plan.body(full, kwargs), namespace=plan.namespace)

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function now and store its result, whatever is cached."""
        plan, full = self._plan, self._args(args)
        cache = plan.target()
        return self._run(cache, plan.body(full, kwargs), full, kwargs, None)

    def get_cached(self, *args: P.args, **kwargs: P.kwargs) -> R | Missing:
        """The cached result of this call without calling the function, or ``MISSING``."""
        plan, full = self._plan, self._args(args)
        cache = plan.target()
        entry = cache.get(
            plan.body(full, kwargs), MISSING, type=plan.stored_type, namespace=plan.namespace
        )
        if entry is MISSING or not plan.enveloped:
            return cast("R | Missing", entry)
        return cast("R", entry[2])


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


def _calls(
    arguments: Sequence[tuple[Any, ...] | dict[str, Any]],
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Normalise ``warm``'s argument sets: a tuple is positional, a dict is keywords."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    for item in arguments:
        if isinstance(item, dict):
            calls.append(((), item))
        elif isinstance(item, tuple):
            calls.append((item, {}))
        else:
            calls.append(((item,), {}))  # type: ignore[unreachable]
    return calls


def warm(func: CachedFunction[..., Any], arguments: Sequence[Any]) -> int:
    """Compute ``func`` for every argument set and store all results in one round trip.

    Args:
        func: A ``@cached`` function.
        arguments: Argument sets: a tuple (positional), a dict (keywords) or a single value.

    Returns:
        How many results were stored.
    """
    plan = func._plan
    cache = plan.target()
    entries: dict[str, object] = {}
    for args, kwargs in _calls(arguments):
        full = func._args(args)
        started = time.perf_counter()
        value = func._func(*full, **kwargs)
        if plan.should_store(value):
            entries[plan.body(full, kwargs)] = plan.wrap(value, time.perf_counter() - started)
    if entries:
        cache.set_many(entries, plan.stored_ttl, namespace=plan.namespace)
    return len(entries)


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
