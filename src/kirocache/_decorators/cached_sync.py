"""``CachedFunction``, what ``@cached`` makes of a ``def``, and ``warm``.

Hand-written twin of ``cached_async.py`` (``AsyncCachedFunction``, ``awarm``): a hit is the
cost of every call, so it stays a few plain lines in each world rather than going through a
step driver. The twins share their decisions (``Plan``), their base (``Wrapper``) and their
waiting (``flight.py``); what is left is the same steps in the same order, with or without
``await``. A change to one belongs in the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from time import perf_counter
from typing import Any, Concatenate, TypeVar, cast, overload

from typing_extensions import ParamSpec, Self

from kirocache._cache.resolved import Looked
from kirocache._decorators.bypass import bypassed
from kirocache._decorators.flight import Flights, Refreshes, coalesced, holding
from kirocache._decorators.plan import NOT_READ, Job, Plan, resolve_cache
from kirocache._decorators.wrapper import Wrapper, argument_sets
from kirocache._values.types import MISSING, Missing
from kirocache.exceptions import SerializationError, ValueTooLargeError

__all__ = ["CachedFunction", "warm"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
S = TypeVar("S")


class CachedFunction(Wrapper[P, R]):
    """A sync function whose results are cached; call it as the function itself.

    Its twin for ``async def`` functions is :class:`AsyncCachedFunction`.
    """

    def __init__(self, func: Callable[P, R], plan: Plan) -> None:
        super().__init__(func, plan)
        self._flights = Flights()
        self._refreshes = Refreshes()

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(
        self: CachedFunction[Concatenate[S, P2], R], instance: S, owner: type | None = None
    ) -> CachedFunction[P2, R]: ...
    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return self if instance is None else self._bind_to(instance)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        plan = self._plan
        full = args if self._instance is MISSING else (self._instance, *args)
        if bypassed():
            return cast("R", self._func(*full, **kwargs))
        cache = plan.cache
        if cache is None:
            cache = resolve_cache(None)
        if plan.tags:  # the arguments bound once, for the key and the tags
            body, tags = plan.keys(full, kwargs)
        else:
            body, tags = plan.build(full, kwargs), ()
        read_at = perf_counter()  # before the read: the conservative end of a window
        found: R
        route = plan.route
        if (
            route is None
            or route.cache is not cache
            or route.key_prefix is not cache.keyspace.key_prefix
        ):
            route = plan.route_for(cache)  # None when the plan's keys cannot take one
        if route is not None:
            # the namespace resolved once (see ``Route``); the read is timed from read_at
            read: R = route.read(body, read_at)
            if read.__class__ is not Looked:
                return read  # a plain hit: its value alone (no ``cast``: a call at run time)
            found, seen = cast("Looked", read)
        else:
            found, seen = cache._lookup(
                body, plan.stored_type, plan.namespace, tags, counted=plan.counts_hits
            )
        if found is MISSING:
            return self._fill(Job(cache, body, tags, full, kwargs, seen, read_at))
        if plan.enveloped:  # stale-while-revalidate or early refresh
            return self._serve(found, Job(cache, body, tags, full, kwargs, seen, read_at))
        return found

    def _serve(self, envelope: Any, job: Job) -> R:
        """A hit in its freshness envelope: its value, refreshed behind the caller if due."""
        if self._plan.due(job.cache, envelope, job.read_at, job.seen):
            name = f"kirocache-refresh {job.body}"
            self._refreshes.start((id(job.cache), job.body), name, lambda: self._compute(job))
        return cast("R", envelope[2])

    def _fill(self, job: Job) -> R:
        """A miss: one caller per key computes and stores, the others wait for its value."""
        plan = self._plan
        if not plan.options.lock:
            return self._compute(job)
        return self._flights.run(
            (id(job.cache), job.body),
            job.read_at,
            plan.options.lock_timeout,
            partial(self._lead, job),
            partial(self._compute, job),
            partial(coalesced, job.cache, plan.namespace),
        )

    def _lead(self, job: Job, reread: bool) -> R:
        # ``reread``: another flight stored the key after this caller's read
        if reread and (found := self._read(job)) is not MISSING:
            return found
        if self._plan.options.lock != "distributed":
            return self._compute(job)
        lock, lease = self._plan.lock_for(job.cache, job.body), self._plan.options.lock_timeout
        with holding(lock, lease):
            found = self._read(job)  # another process may have stored it meanwhile
            return found if found is not MISSING else self._compute(job)

    def _read(self, job: Job) -> R | Missing:
        """Read the key again; the job's read becomes this one."""
        plan = self._plan
        job.read_at = perf_counter()
        entry, job.seen = job.cache._lookup(job.body, plan.stored_type, plan.namespace, job.tags)
        if entry is MISSING or not plan.enveloped:
            return cast("R | Missing", entry)
        return cast("R", entry[2])

    def _compute(self, job: Job) -> R:
        """Call the function and store its result (conditionally on the job's read)."""
        plan, cache = self._plan, job.cache
        started = perf_counter()
        value: R = self._func(*job.args, **job.kwargs)
        if not plan.should_store(value):
            return value
        admitted = plan.storable(cache, value)
        if not admitted:
            return value
        stored, ttl = plan.stored(value, perf_counter() - started, cache.clock)
        try:
            cache._store(
                job.body,
                stored,
                ttl,
                namespace=plan.namespace,
                seen=job.seen,
                read_at=job.read_at,
                tags=job.tags,
                # the check's encoding of the value, not made twice (not for an envelope)
                payload=admitted if isinstance(admitted, bytes) and stored is value else None,
            )
        except (SerializationError, ValueTooLargeError) as exc:
            plan.refused(cache, exc)  # returned uncached, unless the function is strict
        return value

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key a call with these arguments is cached under (namespace prefix included)."""
        plan = self._plan
        return plan.namespace.full_key(plan.body(self._args(args), kwargs))

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Remove the cached result of this call; returns whether there was one."""
        plan = self._plan
        body = plan.body(self._args(args), kwargs)
        return plan.target().delete(body, namespace=plan.namespace)

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

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function now and store its result, whatever is cached."""
        plan, full = self._plan, self._args(args)
        body, tags = plan.keys(full, kwargs)
        job = Job(plan.target(), body, tags, full, kwargs, NOT_READ, 0.0)
        # Read first, so the write below is guarded like a miss's: a value computed before
        # an invalidation that lands meanwhile is not stored after it.
        self._read(job)
        return self._compute(job)

    def get_cached(self, *args: P.args, **kwargs: P.kwargs) -> R | Missing:
        """The cached result of this call without calling the function, or ``MISSING``."""
        plan = self._plan
        body = plan.body(self._args(args), kwargs)
        entry = plan.target().get(body, MISSING, type=plan.stored_type, namespace=plan.namespace)
        if entry is MISSING or not plan.enveloped:
            return cast("R | Missing", entry)
        return cast("R", entry[2])


def warm(func: CachedFunction[..., Any], arguments: Sequence[Any]) -> int:
    """Compute ``func`` for every argument set and store all results: one read, one write.

    The write is guarded as a miss's is: a result computed before an invalidation that
    lands while ``warm`` runs is not stored after it.

    Args:
        func: A ``@cached`` function.
        arguments: Argument sets: a tuple (positional), a dict (keywords) or a single value.

    Returns:
        How many results were stored.
    """
    plan = func._plan
    cache = plan.target()
    calls = [(func._args(args), kwargs) for args, kwargs in argument_sets(arguments)]
    bodies = [plan.body(args, kwargs) for args, kwargs in calls]
    # One read first, so the one write is guarded as a miss's is: a value computed before
    # an invalidation that lands meanwhile is not stored after it.
    read_at = perf_counter()
    _, seen = cache._lookup_many(bodies, plan.stored_type, plan.namespace)
    entries: dict[str, object] = {}
    ttls: dict[str, float] = {}
    for body, (args, kwargs) in zip(bodies, calls, strict=True):
        started = perf_counter()
        value = func._func(*args, **kwargs)
        if plan.should_store(value) and plan.storable(cache, value):
            entries[body], ttls[body] = plan.stored(value, perf_counter() - started, cache.clock)
    if not entries:
        return 0
    try:
        return cache._store_many(
            entries, ttls, namespace=plan.namespace, seen=seen, read_at=read_at
        )
    except (SerializationError, ValueTooLargeError) as exc:
        plan.refused(cache, exc)
        return 0
