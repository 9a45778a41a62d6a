"""``@cached``'s hit: the read of a key its caller resolved once (see ``Plan.route_for``).

Why twinned: the hit of a decorated function is the cost of every call, so ``lookup_at``
and ``alookup_at`` are a hand-written sync/async pair next to each other, each the steps
of ``readthrough.lookup`` (their twin there) less the key's resolution, the generations
and the tags, with the memo of decoded values looked up inline. Anything but a clean read
of a healthy backend is ``readthrough``'s, with the same answers.

These functions take the cache as their first argument, as ``readthrough``'s do.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any

from kirocache._cache.decoding import decode as _decode
from kirocache._cache.driver import arun, run
from kirocache._cache.guard import FAILED
from kirocache._cache.invalidator import TOMBSTONE, Seen
from kirocache._cache.readthrough import _kept, _unreadable, alookup, lookup
from kirocache._values.types import MISSING
from kirocache.exceptions import CorruptValueError

if TYPE_CHECKING:
    from kirocache._cache.cache import Cache
    from kirocache.keys import Namespace

__all__ = ["alookup_at", "lookup_at"]


def lookup_at(
    self: Cache,
    full: str,
    label: str,
    type: Any,
    key: str,
    namespace: Namespace | None,
    started: float,
    counted: bool = True,
) -> tuple[Any, Seen]:
    """``lookup`` of a key its caller resolved: ``full`` and ``label`` from ``resolve``.

    For ``@cached``, which resolves its namespace once (``Plan.route_for``): a key outside
    any bumpable namespace, read without tags; ``key`` and ``namespace`` are what it was
    resolved from, ``started`` when the caller started the read (the latency's start),
    ``counted`` as for ``lookup``.
    Anything but a clean read of a healthy backend (a pending invalidation, a fault, the
    breaker) is ``lookup``'s, from ``key``. Twin: ``alookup_at``, below.
    """
    guard = self.guard
    breaker = guard.breaker
    if (
        self.invalidator.pending.active
        or guard.failing
        or not guard.sync_ok
        or (breaker is not None and not breaker.healthy)
    ):
        return lookup(self, key, type, namespace, counted=counted)
    try:
        raw = self.backend.get(full)
    except Exception as exc:  # noqa: BLE001 - sorted by the guard: faults fail open
        raw = guard.failed("get", label, exc, started)
    codec = self.codec
    kept = codec.decoded.get(full)  # ``decode``'s memo, looked up inline
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
    metrics = guard.metrics
    if not counted:
        pass
    elif metrics is not None and not guard.debug:  # ``observe``, inlined for the hit
        metrics.record("get", label, "hit", perf_counter() - started)
    else:
        guard.observe("get", label, "hit", started, full)
    return value, (full, raw, ())


async def alookup_at(
    self: Cache,
    full: str,
    label: str,
    type: Any,
    key: str,
    namespace: Namespace | None,
    started: float,
    counted: bool = True,
) -> tuple[Any, Seen]:
    """Async ``lookup_at`` (its twin, above).

    An async caller reading an in-process backend (``answers_inline``: a ``MemoryBackend``,
    whose async methods only call its sync ones) calls ``lookup_at`` itself instead.
    """
    guard = self.guard
    breaker = guard.breaker
    if (
        self.invalidator.pending.active
        or guard.failing
        or not guard.async_ok
        or (breaker is not None and not breaker.healthy)
    ):
        return await alookup(self, key, type, namespace, counted=counted)
    try:
        raw = await self.backend.aget(full)
    except Exception as exc:  # noqa: BLE001 - sorted by the guard: faults fail open
        raw = guard.failed("get", label, exc, started)
    codec = self.codec
    kept = codec.decoded.get(full)  # ``decode``'s memo, looked up inline
    if kept is not None and kept[0] is raw and kept[1] is type and kept[2] is codec.serializer:
        # bytes decoded before (so neither a tombstone nor corrupt): their value or payload
        loads = kept[4]
        value = kept[3] if loads is None else loads(kept[5])
    elif raw is None or raw is FAILED or raw.startswith(TOMBSTONE):
        return await _asettle(self, full, label, raw, type, started, counted)
    else:
        try:
            value = _decode(self, full, raw, type)
        except CorruptValueError:
            return await _asettle(self, full, label, raw, type, started, counted)
    metrics = guard.metrics
    if not counted:
        pass
    elif metrics is not None and not guard.debug:  # ``observe``, inlined for the hit
        metrics.record("get", label, "hit", perf_counter() - started)
    else:
        guard.observe("get", label, "hit", started, full)
    return value, (full, raw, ())


def _settle(
    self: Cache, full: str, label: str, raw: Any, type: Any, started: float, counted: bool
) -> tuple[Any, Seen]:
    """What ``lookup_at`` read, when it is not a plain hit: as ``lookup`` ends. Twin below."""
    guard = self.guard
    if raw is FAILED:
        return _kept(self, full, type, label, started, ())
    if raw is not None and not raw.startswith(TOMBSTONE):
        # bytes the codec refused: a tagged entry (checked against its stamps), else corrupt
        value, raw = run(guard, _unreadable(self, full, raw, (), type, label, started))
        if value is not MISSING:
            if counted:
                guard.observe("get", label, "hit", started, full)
            return value, (full, raw, ())
    guard.observe("get", label, "miss", started, full)
    return MISSING, (full, raw, ())


async def _asettle(
    self: Cache, full: str, label: str, raw: Any, type: Any, started: float, counted: bool
) -> tuple[Any, Seen]:
    """Async ``_settle`` (its twin, above)."""
    guard = self.guard
    if raw is FAILED:
        return _kept(self, full, type, label, started, ())
    if raw is not None and not raw.startswith(TOMBSTONE):
        flow = _unreadable(self, full, raw, (), type, label, started)
        value, raw = await arun(guard, flow)
        if value is not MISSING:
            if counted:
                guard.observe("get", label, "hit", started, full)
            return value, (full, raw, ())
    guard.observe("get", label, "miss", started, full)
    return MISSING, (full, raw, ())
