"""Monitoring: health checks with issues and recommendations, alert rules and the monitor.

:class:`HealthChecker` turns a cache's ping, backend stats (``Cache.stats()``) and
per-namespace metrics into a :class:`HealthReport`; :class:`Monitor` evaluates
:class:`AlertRule` thresholds on each report, fires an :class:`Alert` once per breach,
resolves it on recovery and passes both to handlers such as :class:`LoggingAlertHandler`.
Both judge by one table, :data:`THRESHOLDS` (a :class:`Threshold` per figure), so a
check's issue and an alert on the same figure always have the same limit and severity.
Exporters for Prometheus and OpenTelemetry are in :mod:`kirocache.exporters`.
"""

from __future__ import annotations

from kirocache._ring.alerts import (
    DEFAULT_RULES,
    Alert,
    AlertHandler,
    AlertRule,
    AlertState,
    LoggingAlertHandler,
    Monitor,
)
from kirocache._ring.health import (
    HealthChecker,
    HealthReport,
    HealthStatus,
    Issue,
    NamespaceHealth,
)
from kirocache._ring.thresholds import THRESHOLDS, Severity, Threshold

__all__ = [
    "DEFAULT_RULES",
    "THRESHOLDS",
    "Alert",
    "AlertHandler",
    "AlertRule",
    "AlertState",
    "HealthChecker",
    "HealthReport",
    "HealthStatus",
    "Issue",
    "LoggingAlertHandler",
    "Monitor",
    "NamespaceHealth",
    "Severity",
    "Threshold",
]
