"""``CachedFunction``, the sync shell ``@cached`` returns, and ``warm``.

Its twin for ``async def`` functions is ``AsyncCachedFunction`` in ``_cached_async.py``: the
same public names, the same steps in the same order, over the pure ``Plan`` in ``_plan.py``.
A change to one belongs in the other too.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, TypeVar, cast, overload

from typing_extensions import ParamSpec, Self

from kirocache._cache import Cache
from kirocache._cached_base import _Base, _calls, _Read
from kirocache._core import Seen
from kirocache._plan import Plan
from kirocache._types import MISSING, Missing
from kirocache.exceptions import BackendError, SerializationError

__all__ = ["CachedFunction", "warm"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
S = TypeVar("S")


class _Flight:
    """One in-process computation that concurrent callers of the same key wait for."""

    __slots__ = ("event", "ok", "value")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.ok = False
        self.value: Any = None


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
