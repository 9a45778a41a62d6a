"""Alert rules over health reports, and the monitor that fires and resolves them."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

from kirocache._ring.health import MEASURES, HealthChecker, HealthReport
from kirocache._ring.thresholds import THRESHOLDS, Metric, Severity, Threshold

if TYPE_CHECKING:
    from kirocache import Cache

__all__ = [
    "DEFAULT_RULES",
    "Alert",
    "AlertHandler",
    "AlertRule",
    "AlertState",
    "LoggingAlertHandler",
    "Monitor",
    "alert_rule",
]

_log = logging.getLogger("kirocache.monitoring")

AlertState: TypeAlias = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class AlertRule:
    """A threshold over a figure of the health report.

    ``measure`` maps the report to values by subject (a namespace, ``"backend"``,
    ``"breaker"``); each subject whose value is past ``threshold`` is in breach.
    Change a default with ``dataclasses.replace(rule, threshold=..., severity=...)``.

    Attributes:
        name: A stable name, used with the subject to tell alerts apart.
        severity: ``low``, ``medium``, ``high`` or ``critical``.
        threshold: The limit.
        measure: The report's values by subject; subjects without a value are left out.
        above: Breach when a value is above the threshold (``False``: below it).
        summary: What the rule watches, for alert messages.
    """

    name: str
    severity: Severity
    threshold: float
    measure: Callable[[HealthReport], Mapping[str, float]]
    above: bool = True
    summary: str = ""

    def breaches(self, report: HealthReport) -> dict[str, float]:
        """The subjects in breach in ``report``, with their values."""
        values = self.measure(report)
        if self.above:
            return {subject: v for subject, v in values.items() if v > self.threshold}
        return {subject: v for subject, v in values.items() if v < self.threshold}


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert event: a breach that started (``firing``) or ended (``resolved``).

    Attributes:
        rule: The name of the rule.
        subject: What is in breach (a namespace, ``"backend"``, ``"breaker"``).
        severity: The rule's severity.
        state: ``firing`` or ``resolved``.
        value: The value that breached (for ``resolved``: the last value in breach).
        threshold: The rule's threshold.
        message: A readable line.
        started_at: The monitor's clock when the breach was first seen.
        resolved_at: The monitor's clock when it was seen over, ``None`` while firing.
    """

    rule: str
    subject: str
    severity: Severity
    state: AlertState
    value: float
    threshold: float
    message: str
    started_at: float
    resolved_at: float | None = None


AlertHandler: TypeAlias = Callable[[Alert], object]
"""Any callable taking an :class:`Alert`; its return value is ignored."""


_SUMMARIES: Final[dict[Metric, str]] = {
    "hit_rate": "hit rate",
    "latency_p95": "p95 latency (s)",
    "memory": "memory / maxmemory",
    "connection_errors": "errors since last check",
    "invalidations_pending": "invalidations kept pending",
    "circuit_breaker_open": "breaker open",
    "backend_unreachable": "ping failed",
    "node_unavailable": "cluster node's breaker open",
}


def alert_rule(row: Threshold) -> AlertRule:
    """The alert rule of one row of the threshold table, named after its metric."""
    return AlertRule(
        row.metric,
        row.severity,
        row.limit,
        MEASURES[row.metric],
        above=row.comparison == "above",
        summary=_SUMMARIES[row.metric],
    )


DEFAULT_RULES: tuple[AlertRule, ...] = tuple(alert_rule(row) for row in THRESHOLDS)
"""One rule per row of the threshold table, in its order (the monitoring guide lists them)."""


_LEVELS: dict[Severity, int] = {
    "low": logging.INFO,
    "medium": logging.WARNING,
    "high": logging.ERROR,
    "critical": logging.CRITICAL,
}


@dataclass
class LoggingAlertHandler:
    """Logs each alert; firing alerts at a level by severity, resolved ones at INFO.

    Args:
        logger: Where to log (``kirocache.monitoring`` by default).
        levels: The logging level per severity.
    """

    logger: logging.Logger = field(default_factory=lambda: _log)
    levels: Mapping[Severity, int] = field(default_factory=lambda: dict(_LEVELS))

    def __call__(self, alert: Alert) -> None:
        """Log ``alert``."""
        level = logging.INFO if alert.state == "resolved" else self.levels[alert.severity]
        self.logger.log(level, "cache alert %s: %s", alert.state, alert.message)


def _call(handler: AlertHandler, alert: Alert) -> None:
    try:
        handler(alert)
    # A broken pager must not stop monitoring nor the other handlers.
    except Exception:  # noqa: BLE001
        _log.exception("alert handler %r failed on %s", handler, alert.rule)


class Monitor:
    """Evaluates alert rules on each health check; fires once per breach, then resolves.

    A breach (rule, subject) raises one ``firing`` alert when first seen and nothing more
    while it lasts; the first check that finds it over raises a ``resolved`` alert. Both
    go to every handler and to the bounded history. A handler that raises is logged and
    the others still run.

    Args:
        cache: The cache to watch.
        rules: The rules to evaluate.
        handlers: Callables taking an :class:`Alert`.
        history: How many alert events to keep.
        clock: Seconds, stamped on alerts; the cache's monotonic clock if None.
        checker: The health checker to use (default: one on ``cache`` with ``clock``).
    """

    def __init__(
        self,
        cache: Cache,
        rules: Iterable[AlertRule] = DEFAULT_RULES,
        handlers: Iterable[AlertHandler] = (),
        *,
        history: int = 100,
        clock: Callable[[], float] | None = None,
        checker: HealthChecker | None = None,
    ) -> None:
        self.rules = tuple(rules)
        self.handlers = list(handlers)
        self.checker = checker if checker is not None else HealthChecker(cache, clock=clock)
        self.last_report: HealthReport | None = None
        self._clock = clock if clock is not None else cache.clock.monotonic
        self._active: dict[tuple[str, str], Alert] = {}
        self._history: deque[Alert] = deque(maxlen=history)

    def monitor_and_alert(self) -> list[Alert]:
        """Run a health check and evaluate the rules on it.

        Returns:
            The alert events of this check (newly firing and newly resolved).
        """
        return self.evaluate(self.checker.check())

    async def amonitor_and_alert(self) -> list[Alert]:
        """The async twin of :meth:`monitor_and_alert`."""
        return self.evaluate(await self.checker.acheck())

    def evaluate(self, report: HealthReport) -> list[Alert]:
        """Evaluate the rules on a report made elsewhere (the I/O-free half).

        Returns:
            The alert events it caused.
        """
        self.last_report = report
        now = self._clock()
        events: list[Alert] = []
        breaching: set[tuple[str, str]] = set()
        for rule in self.rules:
            for subject, value in rule.breaches(report).items():
                key = (rule.name, subject)
                breaching.add(key)
                if key in self._active:
                    continue
                word = "above" if rule.above else "below"
                alert = Alert(
                    rule=rule.name,
                    subject=subject,
                    severity=rule.severity,
                    state="firing",
                    value=value,
                    threshold=rule.threshold,
                    message=f"{rule.summary or rule.name} in {subject}: {value:g} "
                    f"{word} {rule.threshold:g}",
                    started_at=now,
                )
                self._active[key] = alert
                events.append(alert)
        for key in [key for key in self._active if key not in breaching]:
            firing = self._active.pop(key)
            message = f"resolved: {firing.message}"
            events.append(replace(firing, state="resolved", resolved_at=now, message=message))
        for alert in events:
            self._history.append(alert)
            self._dispatch(alert)
        return events

    def _dispatch(self, alert: Alert) -> None:
        for handler in self.handlers:
            _call(handler, alert)

    def active(self) -> list[Alert]:
        """The alerts firing now, oldest first."""
        return list(self._active.values())

    def history(self) -> list[Alert]:
        """The last ``history`` alert events (firing and resolved), oldest first."""
        return list(self._history)
