"""Metrics: the hook every cache operation reports to, and an in-memory implementation.

The cache calls :meth:`MetricsHook.record` once per operation with the namespace, the
outcome and the latency. :class:`InMemoryMetrics` (on by default) keeps counters and a
window of recent latencies per namespace and operation, and answers hit rates and
percentiles; exporters (Prometheus, OpenTelemetry) are other hooks, and
:class:`MultiMetrics` feeds several at once.
"""

from __future__ import annotations

import threading
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
    """Counters and a ring of recent latencies for one (namespace, operation)."""

    __slots__ = ("calls", "counts", "latencies", "max", "next", "total")

    def __init__(self, window: int) -> None:
        self.calls = 0
        self.counts = dict.fromkeys(_OUTCOMES, 0)
        self.latencies: list[float] = [0.0] * window
        self.next = 0
        self.total = 0.0
        self.max = 0.0


class InMemoryMetrics:
    """Per-namespace, per-operation counters and latency percentiles, kept in memory.

    Recording is O(1) under one lock; percentiles are computed when asked, over the last
    ``window`` latencies of each series.

    Args:
        window: How many recent latencies each (namespace, operation) keeps.

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
        self._series: dict[tuple[str, str], _Series] = {}
        self._lock = threading.Lock()

    def record(
        self, operation: str, namespace: str, outcome: Outcome, latency: float, count: int = 1
    ) -> None:
        """Add one call's outcome and latency (see :meth:`MetricsHook.record`).

        A ``coalesced`` record only counts: it tells how a read already recorded ended.
        """
        with self._lock:
            series = self._series.get((namespace, operation))
            if series is None:
                series = self._series[namespace, operation] = _Series(self._window)
            if outcome == "coalesced":
                series.counts["coalesced"] += count
                return
            series.calls += 1
            series.counts[outcome] += count
            at = series.next
            series.latencies[at % self._window] = latency
            series.next = at + 1
            series.total += latency
            if latency > series.max:  # noqa: PLR1730 - a branch is cheaper than max()
                series.max = latency

    def stats(
        self, namespace: str | None = None, operation: str | None = None
    ) -> list[OperationStats]:
        """Figures per (namespace, operation), filtered by either, sorted by name."""
        with self._lock:
            frozen = [
                (
                    key,
                    dict(series.counts),
                    series.calls,
                    series.total,
                    series.max,
                    series.latencies[: min(series.next, self._window)],
                )
                for key, series in sorted(self._series.items())
                if (namespace is None or key[0] == namespace)
                and (operation is None or key[1] == operation)
            ]
        result = []
        for (ns, op), counts, calls, total, worst, window in frozen:
            window.sort()
            result.append(
                OperationStats(
                    namespace=ns,
                    operation=op,
                    calls=calls,
                    hits=counts["hit"],
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
                    latency_max=worst if calls else None,
                    latency_mean=total / calls if calls else None,
                )
            )
        return result

    def hit_rate(self, namespace: str | None = None) -> float | None:
        """Reads served from the cache over reads, for one namespace or all of them.

        Stale serves and coalesced misses count as served (see ``OperationStats.hit_rate``).
        """
        served = reads = 0
        with self._lock:
            for (ns, _), series in self._series.items():
                if namespace is None or ns == namespace:
                    counts = series.counts
                    found = counts["hit"] + counts["stale"]
                    served += found + counts["coalesced"]
                    reads += found + counts["miss"]
        return served / reads if reads else None

    def invalidations(self) -> dict[str, int]:
        """``invalidations_pending`` (kept, not replayed yet) and ``invalidations_replayed``.

        Counted since the last reset from what the cache recorded under ``PENDING``: an
        invalidation the backend could not apply is kept and replayed when it is back (see
        the invalidation guide).
        """
        with self._lock:
            kept = self._series.get((PENDING, "invalidate_pending"))
            replayed = self._series.get((PENDING, "invalidate_replay"))
            added = kept.counts["delete"] if kept is not None else 0
            done = replayed.counts["delete"] if replayed is not None else 0
        return {"invalidations_pending": max(added - done, 0), "invalidations_replayed": done}

    def namespaces(self) -> list[str]:
        """Every namespace seen so far, sorted."""
        with self._lock:
            return sorted({ns for ns, _ in self._series})

    def snapshot(self) -> list[dict[str, object]]:
        """Every series as JSON-ready dicts (see :meth:`OperationStats.to_dict`)."""
        return [item.to_dict() for item in self.stats()]

    def reset(self) -> None:
        """Forget every counter and latency."""
        with self._lock:
            self._series.clear()


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
