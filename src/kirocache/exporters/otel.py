"""A metrics hook that records OpenTelemetry metrics and a span per cache operation."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kirocache.exporters._require import require

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
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
