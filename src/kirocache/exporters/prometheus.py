"""A metrics hook that feeds prometheus-client counters and latency histograms."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from kirocache.exporters._nodes import BREAKER_STATES, FIGURES, Node, NodeReader, read_all
from kirocache.exporters._require import require

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from kirocache.metrics import Outcome

__all__ = ["PrometheusMetrics"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class PrometheusMetrics:
    """Counts operations and observes latencies in prometheus-client metrics.

    Exposes ``<prefix>_operations_total{namespace, operation, outcome}`` (keys per
    outcome: a ``get_many`` of ten keys adds ten) and
    ``<prefix>_operation_latency_seconds{namespace, operation}`` (one observation per call).
    For a Redis Cluster, :meth:`watch` adds series per node.
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
        self._prefix = prefix
        self._readers: list[NodeReader] = []
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

    def watch(self, target: object, *, stats: bool = True) -> None:
        """Export the per-node series of a cache on a Redis Cluster, read at each scrape.

        Labelled ``node="host:port"`` and ``role``: ``<prefix>_node_breaker_state``
        (1 for the state the node's circuit breaker is in, ``closed``, ``open`` or
        ``half_open``, 0 for the others), ``<prefix>_node_faults_total`` (connection
        failures), ``<prefix>_node_rejected_total`` (calls failed fast while open),
        ``<prefix>_node_breaker_openings_total``, and each primary's figures from
        ``stats()``: ``<prefix>_node_keys``, ``_used_memory_bytes``,
        ``_max_memory_bytes``, ``_connected_clients``, ``_evictions_total``,
        ``_expired_total``, ``_hits_total``, ``_misses_total``, ``_uptime_seconds``.
        A backend of one node has no nodes: nothing is added.

        Args:
            target: The ``Cache`` (or its backend).
            stats: Read each primary's stats at each scrape (INFO and DBSIZE per node);
                ``False``: the breakers only (no I/O).
        """
        if not self._readers:
            self.registry.register(_NodeCollector(self._prefix, self._readers))
        self._readers.append(NodeReader(target, stats=stats))


class _NodeCollector:
    """The node series of every watched cache, built at each scrape (prometheus-client)."""

    def __init__(self, prefix: str, readers: list[NodeReader]) -> None:
        self._prefix = prefix
        self._readers = readers

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration: the series come and go with nodes

    def collect(self) -> Iterator[Metric]:
        core: Any = require("prometheus_client.core", "prometheus")
        nodes = read_all(self._readers)
        if not nodes:
            return
        name, labels = self._prefix, ["node", "role"]

        def family(suffix: str, kind: str, text: str, extra: list[str] | None = None) -> Any:
            made = core.CounterMetricFamily if kind == "counter" else core.GaugeMetricFamily
            return made(f"{name}_node_{suffix}", text, labels=[*labels, *(extra or [])])

        state = family("breaker_state", "gauge", "Circuit breaker state per node.", ["state"])
        counts = {
            "faults": family("faults", "counter", "Connection failures of the node."),
            "rejected": family("rejected", "counter", "Calls failed fast while it was open."),
            "openings": family("breaker_openings", "counter", "Times its breaker opened."),
        }
        figures = {key: family(*spec) for key, spec in FIGURES.items()}
        filled: set[str] = set()
        for node in nodes:
            at = [node.name, node.role]
            if node.state is not None:
                for each in BREAKER_STATES:
                    state.add_metric([*at, each], float(node.state == each))
                for key, metric in counts.items():
                    metric.add_metric(at, float(_count(node, key)))
                filled.update(("state", *counts))
            for key, value in node.figures.items():
                figures[key].add_metric(at, value)
                filled.add(key)
        if "state" in filled:
            yield state
        yield from (metric for key, metric in counts.items() if key in filled)
        yield from (metric for key, metric in figures.items() if key in filled)


def _count(node: Node, key: str) -> int:
    return int(getattr(node, key))
