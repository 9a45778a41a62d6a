"""The one threshold table: health checks and alert rules both judge a cache by it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

__all__ = ["THRESHOLDS", "Comparison", "Metric", "Severity", "Threshold", "threshold"]

Severity: TypeAlias = Literal["low", "medium", "high", "critical"]
Comparison: TypeAlias = Literal["above", "below"]
Metric: TypeAlias = Literal[
    "hit_rate",
    "latency_p95",
    "memory",
    "connection_errors",
    "invalidations_pending",
    "circuit_breaker_open",
    "backend_unreachable",
    "node_unavailable",
]


@dataclass(frozen=True, slots=True)
class Threshold:
    """One row of the table: a figure is in breach when it is past ``limit``.

    Attributes:
        metric: The figure of the health report it judges.
        comparison: ``above``: a value above ``limit`` is a breach; ``below``: under it.
        limit: The limit.
        severity: How bad a breach is; ``critical`` makes the health status ``unhealthy``.
    """

    metric: Metric
    comparison: Comparison
    limit: float
    severity: Severity

    def breached(self, value: float) -> bool:
        """Whether ``value`` is past the limit."""
        return value > self.limit if self.comparison == "above" else value < self.limit


# The targets of the TypeScript layer this library grew from: hit rate above 80%, response
# time under 100 ms, memory alert above 80%. It names the severities but not which figure
# has which; these are the ones the alert rules were documented with.
THRESHOLDS: Final[tuple[Threshold, ...]] = (
    # served over reads: stale serves and coalesced stampede waiters count as served
    # (``kirocache.metrics``), so working stampede protection is not a breach
    Threshold("hit_rate", "below", 0.8, "medium"),
    Threshold("latency_p95", "above", 0.1, "high"),
    Threshold("memory", "above", 0.8, "high"),
    Threshold("connection_errors", "above", 0, "high"),
    # an invalidation the backend refused: other processes may serve the old value
    Threshold("invalidations_pending", "above", 0, "high"),
    Threshold("circuit_breaker_open", "above", 0, "critical"),
    Threshold("backend_unreachable", "above", 0, "critical"),
    # a Redis Cluster primary whose own breaker is open: its slots fail open, the others serve
    Threshold("node_unavailable", "above", 0, "high"),
)
"""Every figure health and alerts judge, in the order the alert rules are evaluated."""


def threshold(metric: Metric) -> Threshold:
    """The table's row for ``metric``."""
    return next(row for row in THRESHOLDS if row.metric == metric)
