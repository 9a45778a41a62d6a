"""Metrics: the hook every cache operation reports to, and an in-memory implementation.

The cache calls :meth:`MetricsHook.record` once per operation with the namespace, the
outcome and the latency. :class:`InMemoryMetrics` (on by default) keeps counters and a
window of recent latencies per namespace and operation, and answers hit rates and
percentiles; exporters (Prometheus, OpenTelemetry) are other hooks, and
:class:`MultiMetrics` feeds several at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal, Protocol, TypeAlias, runtime_checkable

__all__ = [
    "PENDING",
    "InMemoryMetrics",
    "MetricsHook",
    "MultiMetrics",
    "OperationStats",
    "Outcome",
    "percentile",
]

Outcome: TypeAlias = Literal["hit", "miss", "set", "delete", "error", "stale", "skip", "coalesced"]
"""What an operation came to. ``stale``: a stale copy was served; ``skip``: a write was
not made (for instance a ``condition`` said no, or ``nx`` found the key present);
``coalesced``: a read that missed was then served the value another caller of the same key
was computing (a stampede waiter of ``@cached``). A ``coalesced`` record follows that read's
``miss`` (recorded when the read came back) and says how it ended: served from the cache's
work, not by calling the function again. So ``coalesced`` counts a part of ``miss``, and
hit rates count it as served: ``(hit + stale + coalesced) / (hit + stale + miss)``. It
carries no latency of its own (0): the read's record had it."""


PENDING = "pending"
"""The namespace label of pending invalidations. An invalidation the backend could not
apply is recorded as operation ``"invalidate_pending"`` (outcome ``"delete"``, ``count``
the entries kept: keys, tags, patterns, namespace bumps) and its replay as
``"invalidate_replay"`` (``count`` the entries applied), so any hook can follow them;
:meth:`InMemoryMetrics.invalidations` turns them into ``invalidations_pending`` and
``invalidations_replayed``."""


@runtime_checkable
class MetricsHook(Protocol):
    """Receives one call per cache operation. Must be fast and must not raise."""

    def record(
        self, operation: str, namespace: str, outcome: Outcome, latency: float, count: int = 1
    ) -> None:
        """Record that ``operation`` in ``namespace`` ended in ``outcome``.

        Args:
            operation: The cache method (``"get"``, ``"set"``, ``"get_many"``, ...).
            namespace: The namespace prefix of the key, or ``"default"``.
            outcome: What happened.
            latency: Seconds the whole call took (serialization included).
            count: How many keys had this outcome in that one call (``get_many``).
        """
        ...


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list, ``None`` when it is empty.

    Args:
        sorted_values: Values in ascending order.
        fraction: The percentile as a fraction in [0, 1] (0.95 for p95).
    """
    if not sorted_values:
        return None
    rank = max(1, -(-round(fraction * len(sorted_values) * 1_000_000) // 1_000_000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class OperationStats:
    """Counters and latency figures of one operation in one namespace.

    Latencies are in seconds and describe the most recent ``window`` calls; counters
    cover everything since the last reset. ``coalesced`` counts the misses that were
    served another caller's value (so it is also counted in ``misses``, and not in
    ``calls``: it adds to a call already recorded).
    """

    namespace: str
    operation: str
    calls: int
    hits: int
    misses: int
    sets: int
    deletes: int
    errors: int
    stale: int
    skips: int
    coalesced: int
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    latency_max: float | None
    latency_mean: float | None

    @property
    def hit_rate(self) -> float | None:
        """Reads served from the cache over reads; ``None`` without reads.

        Stale serves count as hits, and so do coalesced misses (a stampede waiter that got
        the value another caller computed): ``(hits + stale + coalesced) / (hits + stale +
        misses)``.
        """
        reads = self.hits + self.stale + self.misses
        return (self.hits + self.stale + self.coalesced) / reads if reads else None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict of every field plus ``hit_rate``."""
        data: dict[str, object] = asdict(self)
        data["hit_rate"] = self.hit_rate
        return data


_OUTCOMES: tuple[Outcome, ...] = (
    "hit",
    "miss",
    "set",
    "delete",
    "error",
    "stale",
    "skip",
    "coalesced",
)


class _Series:
    """Counters and a ring of recent latencies for one (namespace, operation), one thread."""

    __slots__ = ("calls", "counts", "latencies", "max", "others", "total")

    def __init__(self) -> None:
        self.calls = 0
        # The calls ``record`` counted in ``counts``; the rest of ``calls`` are hits a hit
        # recorder counted by ``calls`` alone (the hot path: one counter less per hit).
        self.others = 0
        self.counts = dict.fromkeys(_OUTCOMES, 0)
        # grows to the window, then is written round (``calls`` counts every latency)
        self.latencies: list[float] = []
        self.total = 0.0
        self.max = 0.0

    def add(self, other: _Series) -> None:
        """Add ``other``'s counts, and its latencies to this one's (a merged snapshot)."""
        self.calls += other.calls
        self.others += other.others
        for outcome, count in other.counts.copy().items():
            self.counts[outcome] += count
        self.total += other.total
        self.max = max(self.max, other.max)
        self.latencies += other.latencies.copy()

    def hits(self) -> int:
        """The hits ``record`` counted and those a hit recorder did."""
        return self.counts["hit"] + self.calls - self.others


_Tally: TypeAlias = "dict[tuple[str, str], _Series]"
# A thread's own series, by operation then namespace: two lookups by str (whose hashes are
# kept) cost less than one by a tuple made and hashed on every record.
_Index: TypeAlias = "dict[str, dict[str, _Series]]"


class _Local(threading.local):
    index: _Index | None = None


def _flat(index: _Index) -> _Tally:
    """A thread's series by ``(namespace, operation)``; copied first, as it may be adding."""
    return {
        (namespace, operation): series
        for operation, by_namespace in index.copy().items()
        for namespace, series in by_namespace.copy().items()
    }


class InMemoryMetrics:
    """Per-namespace, per-operation counters and latency percentiles, kept in memory.

    Recording takes no lock: each thread counts into a tally of its own, and the tallies
    are summed when figures are asked for, so counts are exact once the calls are over (an
    ended thread's tally is folded into a shared one). Percentiles are computed when asked,
    over the last ``window`` latencies each thread kept of each series: a sample of the
    recent calls, up to ``window`` per thread.

    Args:
        window: How many recent latencies each (namespace, operation) keeps per thread.

    Examples:
        >>> metrics = InMemoryMetrics()
        >>> metrics.record("get", "user:profile:", "hit", 0.0002)
        >>> metrics.hit_rate("user:profile:")
        1.0
    """

    def __init__(self, window: int = 1024) -> None:
        if window < 1:
            msg = f"window must be at least 1, got {window}"
            raise ValueError(msg)
        self._window = window
        self._local = _Local()
        # every live thread's tally by its thread; ended threads' figures are in _retired
        self._tallies: dict[threading.Thread, _Index] = {}
        self._retired: _Tally = {}
        self._lock = threading.Lock()

    def _join(self) -> _Index:
        """This thread's tally, made and registered on its first record."""
        index: _Index = {}
        with self._lock:
            self._fold_ended()
            self._tallies[threading.current_thread()] = index
        self._local.index = index
        return index

    def _fold_ended(self) -> None:
        """Fold the tallies of threads that have ended into ``_retired`` (lock held)."""
        window = self._window
        for thread in [thread for thread in self._tallies if not thread.is_alive()]:
            for key, series in _flat(self._tallies.pop(thread)).items():
                into = self._retired.get(key)
                if into is None:
                    into = self._retired[key] = _Series()
                into.add(series)
                del into.latencies[: max(0, len(into.latencies) - window)]

    def record(
        self, operation: str, namespace: str, outcome: Outcome, latency: float, count: int = 1
    ) -> None:
        """Add one call's outcome and latency (see :meth:`MetricsHook.record`).

        A ``coalesced`` record only counts: it tells how a read already recorded ended.
        """
        try:  # every call of a hit pays for this method: the common case first
            series = self._local.index[operation][namespace]  # type: ignore[index]
        except (TypeError, KeyError):  # this thread's first record, or the series' first
            series = self._series(namespace, operation)
        if outcome == "coalesced":
            series.counts["coalesced"] += count
            return
        series.counts[outcome] += count
        # ``calls`` counts the latencies too: the next one's place in the ring
        at = series.calls
        series.calls = at + 1
        series.others += 1  # after ``calls``: read meanwhile, a hit is never negative
        window = self._window
        if at < window:
            series.latencies.append(latency)
        else:
            series.latencies[at % window] = latency
        series.total += latency
        if latency > series.max:  # noqa: PLR1730 - a branch is cheaper than max()
            series.max = latency

    def _hit_recorder(self, operation: str, namespace: str) -> Callable[[float], None]:
        """``record(operation, namespace, "hit", latency)`` as a function of the latency.

        For the hot path (``@cached``'s hit, ``_cache/resolved.py``): the same figures as
        ``record``, with one counter less (a hit is counted by ``calls`` alone, see
        ``_Series.others``) and the names bound once.
        """
        local, window = self._local, self._window

        def hit(latency: float) -> None:
            try:
                series = local.index[operation][namespace]  # type: ignore[index]
            except (TypeError, KeyError):  # this thread's first record, or the series' first
                series = self._series(namespace, operation)
            at = series.calls
            series.calls = at + 1
            if at < window:
                series.latencies.append(latency)
            else:
                series.latencies[at % window] = latency
            series.total += latency
            if latency > series.max:  # noqa: PLR1730 - a branch is cheaper than max()
                series.max = latency

        return hit

    def _series(self, namespace: str, operation: str) -> _Series:
        """This thread's series of ``(namespace, operation)``, made on first use."""
        index = self._local.index
        if index is None:
            index = self._join()
        by_namespace = index.get(operation)
        if by_namespace is None:
            by_namespace = index[operation] = {}
        series = by_namespace.get(namespace)
        if series is None:
            series = by_namespace[namespace] = _Series()
        return series

    def _merged(self) -> _Tally:
        """Every thread's figures summed per (namespace, operation), as of now."""
        with self._lock:
            self._fold_ended()
            tallies = [self._retired.copy(), *map(_flat, self._tallies.values())]
        merged: _Tally = {}
        for tally in tallies:
            for key, series in tally.items():
                into = merged.get(key)
                if into is None:
                    into = merged[key] = _Series()
                into.add(series)
        return merged

    def stats(
        self, namespace: str | None = None, operation: str | None = None
    ) -> list[OperationStats]:
        """Figures per (namespace, operation), filtered by either, sorted by name."""
        result = []
        for (ns, op), series in sorted(self._merged().items()):
            if (namespace is not None and ns != namespace) or (
                operation is not None and op != operation
            ):
                continue
            counts, calls, window = series.counts, series.calls, sorted(series.latencies)
            result.append(
                OperationStats(
                    namespace=ns,
                    operation=op,
                    calls=calls,
                    hits=series.hits(),
                    misses=counts["miss"],
                    sets=counts["set"],
                    deletes=counts["delete"],
                    errors=counts["error"],
                    stale=counts["stale"],
                    skips=counts["skip"],
                    coalesced=counts["coalesced"],
                    latency_p50=percentile(window, 0.50),
                    latency_p95=percentile(window, 0.95),
                    latency_p99=percentile(window, 0.99),
                    latency_max=series.max if calls else None,
                    latency_mean=series.total / calls if calls else None,
                )
            )
        return result

    def hit_rate(self, namespace: str | None = None) -> float | None:
        """Reads served from the cache over reads, for one namespace or all of them.

        Stale serves and coalesced misses count as served (see ``OperationStats.hit_rate``).
        """
        served = reads = 0
        for (ns, _), series in self._merged().items():
            if namespace is None or ns == namespace:
                counts = series.counts
                found = series.hits() + counts["stale"]
                served += found + counts["coalesced"]
                reads += found + counts["miss"]
        return served / reads if reads else None

    def invalidations(self) -> dict[str, int]:
        """``invalidations_pending`` (kept, not replayed yet) and ``invalidations_replayed``.

        Counted since the last reset from what the cache recorded under ``PENDING``: an
        invalidation the backend could not apply is kept and replayed when it is back (see
        the invalidation guide).
        """
        merged = self._merged()
        kept = merged.get((PENDING, "invalidate_pending"))
        replayed = merged.get((PENDING, "invalidate_replay"))
        added = kept.counts["delete"] if kept is not None else 0
        done = replayed.counts["delete"] if replayed is not None else 0
        return {"invalidations_pending": max(added - done, 0), "invalidations_replayed": done}

    def namespaces(self) -> list[str]:
        """Every namespace seen so far, sorted."""
        return sorted({ns for ns, _ in self._merged()})

    def snapshot(self) -> list[dict[str, object]]:
        """Every series as JSON-ready dicts (see :meth:`OperationStats.to_dict`)."""
        return [item.to_dict() for item in self.stats()]

    def reset(self) -> None:
        """Forget every counter and latency (a call recorded meanwhile may stay counted)."""
        with self._lock:
            self._retired.clear()
            for index in self._tallies.values():
                index.clear()


class MultiMetrics:
    """Feeds every call to several hooks, e.g. in-memory figures plus an exporter.

    Args:
        hooks: The hooks to call, in order.
    """

    def __init__(self, *hooks: MetricsHook) -> None:
        self.hooks = hooks

    def record(
        self, operation: str, namespace: str, outcome: Outcome, latency: float, count: int = 1
    ) -> None:
        """Pass the call on to every hook."""
        for hook in self.hooks:
            hook.record(operation, namespace, outcome, latency, count)
