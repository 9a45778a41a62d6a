"""``@cached``'s hit: the read of a key its caller resolved once (see ``Plan.route_for``).

Why twinned: the hit of a decorated function is the cost of every call, so ``reader``
and ``areader`` are a hand-written sync/async pair next to each other, each making the
steps of ``readthrough.lookup`` (their twin there) less the key's resolution, the
generations and the tags, with the memo of decoded values looked up inline. Anything but
a clean read of a healthy backend is ``readthrough``'s, with the same answers.

What a route's reads share (the cache's guard, codec and memo, the key's head, label,
type and namespace) is bound once, when the route is made, so a hit is one call of two
arguments, and a plain hit answers with the value alone (no tuples made and taken apart):
anything else answers with a ``Looked``. Each function takes the cache as its first
argument, as ``readthrough``'s do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from kirocache._cache.decoding import decode as _decode
from kirocache._cache.driver import arun, run
from kirocache._cache.guard import FAILED
from kirocache._cache.invalidator import TOMBSTONE, Seen
from kirocache._cache.readthrough import _kept, _unreadable, alookup, lookup
from kirocache._values.types import MISSING
from kirocache.exceptions import CorruptValueError
from kirocache.metrics import InMemoryMetrics

if TYPE_CHECKING:
    from kirocache._cache.cache import Cache
    from kirocache.keys import Namespace
    from kirocache.metrics import MetricsHook

__all__ = ["ARead", "Looked", "Read", "areader", "reader"]


class Looked(tuple[Any, Seen]):
    """``(value or MISSING, what was seen)``: what a read answers unless a plain hit.

    A private class, so no value read from a cache is one.
    """

    __slots__ = ()


Read: TypeAlias = "Callable[[str, float], Any]"
"""``read(body, started)``: ``lookup`` of ``head + body`` timed from ``started``: the value
of a plain hit, else a ``Looked``."""
ARead: TypeAlias = "Callable[[str, float], Awaitable[Any]]"
"""The async ``Read``."""


def reader(
    self: Cache,
    head: str,
    label: str,
    type: Any,
    namespace: Namespace | None,
    counted: bool,
    plain: bool,
) -> Read:
    """``lookup`` of the keys of one resolved namespace, as ``read(body, started)``.

    For ``@cached``, which resolves its namespace once (``Plan.route_for``): keys outside
    any bumpable namespace, read without tags; a body's full key is ``head + body`` with
    the metrics label ``label`` (what ``KeySpace.resolve`` gives for an ASCII body),
    ``started`` is when the caller started the read (the latency's start), ``counted`` as
    for ``lookup``. A hit answers with its value alone when ``plain``; every other answer
    (a miss, a hit when not ``plain``, anything ``lookup`` answered) is a ``Looked``.
    Anything but a clean read of a healthy backend (a body that is not ASCII, a pending
    invalidation, a fault, the breaker) is ``lookup``'s, from the body. What a cache's
    owner may set at any time (its backend, breaker, serializer, metrics hook, debug) is
    read on every call. Twin: ``areader``, below.
    """
    guard, pending, codec = self.guard, self.invalidator.pending, self.codec
    memo, metrics = codec.decoded, guard.metrics
    hit = _hit_recorder(metrics, label) if counted else None
    sync_ok = guard.sync_ok  # set once, by the backend the cache was made with

    def read(body: str, started: float) -> Any:
        breaker = guard.breaker
        if (
            pending.active
            or guard.failing
            or not sync_ok
            or (breaker is not None and not breaker.healthy)
            or not body.isascii()
        ):
            return Looked(lookup(self, body, type, namespace, counted=counted))
        full = head + body
        try:
            raw = self.backend.get(full)
        except Exception as exc:  # noqa: BLE001 - sorted by the guard: faults fail open
            raw = guard.failed("get", label, exc, started)
        kept = memo.get(full)  # ``decode``'s memo, looked up inline
        if kept is not None and kept[0] is raw and kept[1] is type and kept[2] is codec.serializer:
            # bytes decoded before (so neither a tombstone nor corrupt): their value or payload
            loads = kept[4]
            value = kept[3] if loads is None else loads(kept[5])
        elif raw is None or raw is FAILED or raw.startswith(TOMBSTONE):
            return _settle(self, full, label, raw, type, started, counted)
        else:
            try:
                value = _decode(self, full, raw, type)
            except CorruptValueError:
                return _settle(self, full, label, raw, type, started, counted)
        if hit is not None and guard.metrics is metrics and not guard.debug:
            hit(perf_counter() - started)
        elif counted:
            guard.observe("get", label, "hit", started, full)
        return value if plain else Looked((value, (full, raw, ())))

    return read


def areader(
    self: Cache,
    head: str,
    label: str,
    type: Any,
    namespace: Namespace | None,
    counted: bool,
    plain: bool,
) -> ARead:
    """Async ``reader`` (its twin, above).

    An async caller reading an in-process backend (``answers_inline``: a ``MemoryBackend``,
    whose async methods only call its sync ones) reads with ``reader``'s function instead.
    """
    guard, pending, codec = self.guard, self.invalidator.pending, self.codec
    memo, metrics = codec.decoded, guard.metrics
    hit = _hit_recorder(metrics, label) if counted else None
    async_ok = guard.async_ok  # set once, by the backend the cache was made with

    async def aread(body: str, started: float) -> Any:
        breaker = guard.breaker
        if (
            pending.active
            or guard.failing
            or not async_ok
            or (breaker is not None and not breaker.healthy)
            or not body.isascii()
        ):
            return Looked(await alookup(self, body, type, namespace, counted=counted))
        full = head + body
        try:
            raw = await self.backend.aget(full)
        except Exception as exc:  # noqa: BLE001 - sorted by the guard: faults fail open
            raw = guard.failed("get", label, exc, started)
        kept = memo.get(full)  # ``decode``'s memo, looked up inline
        if kept is not None and kept[0] is raw and kept[1] is type and kept[2] is codec.serializer:
            loads = kept[4]
            value = kept[3] if loads is None else loads(kept[5])
        elif raw is None or raw is FAILED or raw.startswith(TOMBSTONE):
            return await _asettle(self, full, label, raw, type, started, counted)
        else:
            try:
                value = _decode(self, full, raw, type)
            except CorruptValueError:
                return await _asettle(self, full, label, raw, type, started, counted)
        if hit is not None and guard.metrics is metrics and not guard.debug:
            hit(perf_counter() - started)
        elif counted:
            guard.observe("get", label, "hit", started, full)
        return value if plain else Looked((value, (full, raw, ())))

    return aread


def _hit_recorder(metrics: MetricsHook | None, label: str) -> Callable[[float], None] | None:
    """``guard.observe`` of a hit, inlined for ``metrics``: its ``record``, bound once.

    ``InMemoryMetrics`` (not a subclass with its own ``record``) records through its hit
    recorder. The read uses it while ``metrics`` is still the guard's hook and the guard
    does not log every operation (``cache.metrics`` and ``cache.debug`` may be set at any
    time); otherwise the guard observes.
    """
    if metrics is None:
        return None
    if getattr(type(metrics), "record", None) is InMemoryMetrics.record:
        return cast(InMemoryMetrics, metrics)._hit_recorder("get", label)
    return partial(metrics.record, "get", label, "hit")


def _settle(
    self: Cache, full: str, label: str, raw: Any, type: Any, started: float, counted: bool
) -> Looked:
    """What ``reader``'s read got, when it is not a plain hit: as ``lookup`` ends. Twin below."""
    guard = self.guard
    if raw is FAILED:
        return Looked(_kept(self, full, type, label, started, ()))
    if raw is not None and not raw.startswith(TOMBSTONE):
        # bytes the codec refused: a tagged entry (checked against its stamps), else corrupt
        value, raw = run(guard, _unreadable(self, full, raw, (), type, label, started))
        if value is not MISSING:
            if counted:
                guard.observe("get", label, "hit", started, full)
            return Looked((value, (full, raw, ())))
    guard.observe("get", label, "miss", started, full)
    return Looked((MISSING, (full, raw, ())))


async def _asettle(
    self: Cache, full: str, label: str, raw: Any, type: Any, started: float, counted: bool
) -> Looked:
    """Async ``_settle`` (its twin, above)."""
    guard = self.guard
    if raw is FAILED:
        return Looked(_kept(self, full, type, label, started, ()))
    if raw is not None and not raw.startswith(TOMBSTONE):
        flow = _unreadable(self, full, raw, (), type, label, started)
        value, raw = await arun(guard, flow)
        if value is not MISSING:
            if counted:
                guard.observe("get", label, "hit", started, full)
            return Looked((value, (full, raw, ())))
    guard.observe("get", label, "miss", started, full)
    return Looked((MISSING, (full, raw, ())))
