"""Metrics exporters (optional extras): Prometheus and OpenTelemetry hooks.

Each exporter is a :class:`~kirocache.metrics.MetricsHook`; pass it as ``metrics=`` to a
``Cache``, alone or with ``InMemoryMetrics`` through ``MultiMetrics``. Importing this
package imports neither library: each is imported when its exporter is built, and a
missing one raises ``ConfigurationError`` naming the extra to install.
"""

from __future__ import annotations

from kirocache.exporters.otel import OpenTelemetryMetrics
from kirocache.exporters.prometheus import PrometheusMetrics

__all__ = ["OpenTelemetryMetrics", "PrometheusMetrics"]
