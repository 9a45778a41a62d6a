"""A metrics hook that records OpenTelemetry metrics and a span per cache operation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from kirocache.exporters._nodes import BREAKER_STATES, FIGURES, Node, NodeReader, read_all
from kirocache.exporters._require import require

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import TracerProvider

    from kirocache.metrics import Outcome

__all__ = ["OpenTelemetryMetrics"]

_READS = frozenset({"get", "get_many", "get_or_set", "exists"})


class OpenTelemetryMetrics:
    """Records cache operations with the OpenTelemetry API: instruments and spans.

    Metrics: the counter ``kirocache.operations`` (keys, by ``cache.namespace``,
    ``cache.operation`` and ``cache.outcome``) and the histogram
    ``kirocache.operation.duration`` (seconds, by namespace and operation).

    Spans: a metrics hook is called after an operation ends, so it cannot wrap it.
    Instead each recorded call becomes a finished ``CLIENT`` span named
    ``cache <operation>`` whose start time is now minus the call's latency, so its
    duration and place on a trace timeline are right; it is parented to the span current
    when the call ended (usually the request's). Attributes: ``db.system``,
    ``db.operation``, ``cache.namespace``, ``cache.outcome`` and, for reads,
    ``cache.hit`` (stale serves count as hits). Errors set the span status to ERROR.
    A ``coalesced`` record (a stampede waiter served another caller's value, see
    ``kirocache.metrics.Outcome``) adds to the counter only: its read had its span.
    For a Redis Cluster, :meth:`watch` adds observable instruments per node.

    Args:
        meter_provider: Where instruments come from (default: the global provider).
        tracer_provider: Where spans go (default: the global provider).
        db_system: The ``db.system`` attribute: ``"redis"`` or ``"memory"``.
        spans: Whether to record spans at all.

    Raises:
        ConfigurationError: opentelemetry-api is not installed (extra ``otel``).
    """

    def __init__(
        self,
        *,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
        db_system: str = "redis",
        spans: bool = True,
    ) -> None:
        metrics = require("opentelemetry.metrics", "otel")
        trace = require("opentelemetry.trace", "otel")
        from kirocache import __version__

        meter = metrics.get_meter("kirocache", __version__, meter_provider=meter_provider)
        self._meter = meter
        self._observation = metrics.Observation
        self._readers: list[NodeReader] = []
        self._operations = meter.create_counter(
            "kirocache.operations", unit="{key}", description="Cache operations by outcome."
        )
        self._duration = meter.create_histogram(
            "kirocache.operation.duration", unit="s", description="Latency of cache calls."
        )
        self._tracer = (
            trace.get_tracer("kirocache", __version__, tracer_provider=tracer_provider)
            if spans
            else None
        )
        self._client_kind = trace.SpanKind.CLIENT
        self._error = trace.Status(trace.StatusCode.ERROR)
        self.db_system = db_system

    def record(
        self, operation: str, namespace: str, outcome: Outcome, latency: float, count: int = 1
    ) -> None:
        """Record the call's instruments and its span (see ``MetricsHook.record``)."""
        labels = {"cache.namespace": namespace, "cache.operation": operation}
        self._operations.add(count, {**labels, "cache.outcome": outcome})
        if outcome == "coalesced":  # how a read already recorded ended: counted only
            return
        self._duration.record(latency, labels)
        if self._tracer is None:
            return
        end = time.time_ns()
        attributes: dict[str, str | bool] = {
            "db.system": self.db_system,
            "db.operation": operation,
            "cache.namespace": namespace,
            "cache.outcome": outcome,
        }
        if operation in _READS and outcome in {"hit", "stale", "miss"}:
            attributes["cache.hit"] = outcome != "miss"
        span = self._tracer.start_span(
            f"cache {operation}",
            kind=self._client_kind,
            attributes=attributes,
            start_time=end - int(latency * 1_000_000_000),
        )
        if outcome == "error":
            span.set_status(self._error)
        span.end(end_time=end)

    def watch(self, target: object, *, stats: bool = True) -> None:
        """Observe the nodes of a cache on a Redis Cluster, at each collection.

        Instruments, with the attributes ``cache.node`` (``host:port``) and
        ``cache.node.role``: ``kirocache.node.breaker.state`` (a gauge, 1 for the state
        in ``cache.node.breaker.state`` the node's circuit breaker is in, 0 for the
        others), the counters ``kirocache.node.faults`` (connection failures),
        ``kirocache.node.rejected`` (calls failed fast while open) and
        ``kirocache.node.breaker.openings``, and each primary's figures from ``stats()``
        as ``kirocache.node.<figure>`` (``keys``, ``used_memory_bytes``, ``hits``, ...).
        A backend of one node has no nodes: nothing is observed for it.

        Args:
            target: The ``Cache`` (or its backend).
            stats: Read each primary's stats at each collection (INFO and DBSIZE per
                node); ``False``: the breakers only (no I/O).
        """
        if not self._readers:
            self._observe_nodes()
        self._readers.append(NodeReader(target, stats=stats))

    def _observe_nodes(self) -> None:
        meter: Any = self._meter
        gauge, counter = meter.create_observable_gauge, meter.create_observable_counter
        gauge(
            "kirocache.node.breaker.state",
            callbacks=[self._states],
            description="Circuit breaker state per cluster node (1: the state it is in).",
        )
        for key, text in (
            ("faults", "Connection failures of the node."),
            ("rejected", "Calls failed fast while its breaker was open."),
            ("openings", "Times the node's breaker opened."),
        ):
            name = (
                "kirocache.node.breaker.openings" if key == "openings" else f"kirocache.node.{key}"
            )
            counter(name, callbacks=[self._counts(key)], description=text)
        for key, (suffix, kind, text) in FIGURES.items():
            make = counter if kind == "counter" else gauge
            make(f"kirocache.node.{suffix}", callbacks=[self._figures(key)], description=text)

    @staticmethod
    def _at(node: Node) -> dict[str, str]:
        return {"cache.node": node.name, "cache.node.role": node.role}

    def _states(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            self._observation(
                int(node.state == state), {**self._at(node), "cache.node.breaker.state": state}
            )
            for node in read_all(self._readers)
            if node.state is not None
            for state in BREAKER_STATES
        ]

    def _counts(self, key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [
                self._observation(getattr(node, key), self._at(node))
                for node in read_all(self._readers)
                if node.state is not None
            ]

        return observe

    def _figures(self, key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [
                self._observation(node.figures[key], self._at(node))
                for node in read_all(self._readers)
                if key in node.figures
            ]

        return observe
