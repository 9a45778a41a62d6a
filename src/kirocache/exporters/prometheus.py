"""A metrics hook that feeds prometheus-client counters and latency histograms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kirocache.exporters._require import require

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from kirocache.metrics import Outcome

__all__ = ["PrometheusMetrics"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class PrometheusMetrics:
    """Counts operations and observes latencies in prometheus-client metrics.

    Exposes ``<prefix>_operations_total{namespace, operation, outcome}`` (keys per
    outcome: a ``get_many`` of ten keys adds ten) and
    ``<prefix>_operation_latency_seconds{namespace, operation}`` (one observation per call).
    The hit ratio, stampede waiters served another caller's value counted as served (see
    ``kirocache.metrics.Outcome``), is ``sum(outcome=~"hit|stale|coalesced") /
    sum(outcome=~"hit|stale|miss")`` of ``operations_total`` for the read operations.

    Args:
        registry: Where the metrics are registered; a new ``CollectorRegistry`` by
            default, so two caches (or two tests) never clash. Pass
            ``prometheus_client.REGISTRY`` to serve them with the default exposition.
        prefix: The metric name prefix.
        buckets: The latency histogram's bucket bounds in seconds.

    Raises:
        ConfigurationError: prometheus-client is not installed (extra ``prometheus``).

    Examples:
        >>> from kirocache import Cache
        >>> exporter = PrometheusMetrics()
        >>> cache = Cache.from_url("memory://", metrics=exporter)
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        prefix: str = "kirocache",
        buckets: Sequence[float] = _BUCKETS,
    ) -> None:
        client = require("prometheus_client", "prometheus")
        self.registry: CollectorRegistry = (
            registry if registry is not None else client.CollectorRegistry()
        )
        self._operations = client.Counter(
            f"{prefix}_operations",
            "Cache operations (keys) by namespace, operation and outcome.",
            ["namespace", "operation", "outcome"],
            registry=self.registry,
        )
        self._latency = client.Histogram(
            f"{prefix}_operation_latency_seconds",
            "Latency of cache calls in seconds, serialization included.",
            ["namespace", "operation"],
            registry=self.registry,
            buckets=tuple(buckets),
        )

    def record(
        self, operation: str, namespace: str, outcome: Outcome, latency: float, count: int = 1
    ) -> None:
        """Count the outcome and observe the latency (see ``MetricsHook.record``).

        A ``coalesced`` record is counted only: the read it completes was observed.
        """
        self._operations.labels(namespace, operation, outcome).inc(count)
        if outcome != "coalesced":
            self._latency.labels(namespace, operation).observe(latency)
