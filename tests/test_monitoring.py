"""Health checks and alerts: one threshold table, lifecycle on a controllable clock, faults."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis

from kirocache import Cache, CircuitBreaker
from kirocache._ring.health import judge
from kirocache.backends import MemoryBackend
from kirocache.metrics import InMemoryMetrics, MultiMetrics
from kirocache.monitoring import (
    DEFAULT_RULES,
    THRESHOLDS,
    Alert,
    HealthChecker,
    HealthReport,
    LoggingAlertHandler,
    Monitor,
    NamespaceHealth,
    Threshold,
)
from kirocache.testing import FaultyBackend
from redis_server import RedisServer

NS = "user:progress:"


class Clock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reads(metrics: InMemoryMetrics, hits: int, misses: int, namespace: str = NS) -> None:
    metrics.record("get", namespace, "hit", 0.001, count=hits)
    metrics.record("get", namespace, "miss", 0.001, count=misses)


@pytest.fixture
def metrics() -> InMemoryMetrics:
    return InMemoryMetrics()


@pytest.fixture
def cache(metrics: InMemoryMetrics) -> Cache:
    return Cache(MemoryBackend(), metrics=metrics)


def test_healthy_cache_reports_healthy_and_json_ready(
    cache: Cache, metrics: InMemoryMetrics
) -> None:
    reads(metrics, hits=90, misses=10)
    report = HealthChecker(cache).check()
    assert report.status == "healthy"
    assert report.issues == ()
    assert report.ping_latency is not None
    assert report.backend is not None
    assert report.backend.backend == "memory"
    assert report.breaker == "closed"
    [ns] = report.namespaces
    assert (ns.namespace, ns.reads, ns.hit_rate) == (NS, 100, 0.9)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["status"] == "healthy"
    assert data["namespaces"][0]["hit_rate"] == 0.9
    assert data["backend"]["backend"] == "memory"


def test_low_hit_rate_degrades_with_a_recommendation(
    cache: Cache, metrics: InMemoryMetrics
) -> None:
    reads(metrics, hits=42, misses=58)
    report = HealthChecker(cache).check()
    assert report.status == "degraded"
    [issue] = report.issues
    assert issue.kind == "hit_rate"
    assert issue.message == "hit rate 42% in user:progress:: below 80%"
    assert "TTL may be too short" in issue.recommendation


def test_hit_rate_is_not_judged_below_min_reads(cache: Cache, metrics: InMemoryMetrics) -> None:
    reads(metrics, hits=0, misses=19)
    assert HealthChecker(cache, min_reads=20).check().status == "healthy"
    reads(metrics, hits=0, misses=1)
    assert HealthChecker(cache, min_reads=20).check().status == "degraded"


def test_slow_p95_degrades(cache: Cache, metrics: InMemoryMetrics) -> None:
    for _ in range(20):
        metrics.record("get", NS, "hit", 0.25)
    report = HealthChecker(cache, latency_p95_threshold=0.1).check()
    assert report.status == "degraded"
    assert [i.kind for i in report.issues] == ["latency"]
    assert "250 ms" in report.issues[0].message


def test_metrics_found_inside_multi_metrics(metrics: InMemoryMetrics) -> None:
    cache = Cache(MemoryBackend(), metrics=MultiMetrics(metrics))
    reads(metrics, hits=1, misses=99)
    assert [ns.namespace for ns in HealthChecker(cache).check().namespaces] == [NS]


def test_failing_backend_is_unhealthy() -> None:
    backend = FaultyBackend(MemoryBackend())
    clock = Clock()
    cache = Cache(backend, breaker=CircuitBreaker(failure_threshold=2, clock=clock))
    checker = HealthChecker(cache, clock=clock)
    backend.failing = True
    report = checker.check()
    assert report.status == "unhealthy"
    assert report.ping_latency is None
    assert report.backend is None
    assert [i.kind for i in report.issues] == ["unreachable"]
    cache.get("a")
    cache.get("b")
    report = checker.check()
    assert report.breaker == "open"
    assert report.errors_since_last_check == 2
    assert [i.kind for i in report.issues] == ["unreachable", "breaker_open", "errors"]
    backend.failing = False
    clock.now += 60
    cache.get("c")
    report = checker.check()
    assert report.status == "healthy"
    assert report.errors_since_last_check == 0


async def test_acheck_on_failing_backend_is_unhealthy() -> None:
    backend = FaultyBackend(MemoryBackend())
    cache = Cache(backend)
    checker = HealthChecker(cache)
    assert (await checker.acheck()).status == "healthy"
    backend.failing = True
    report = await checker.acheck()
    assert report.status == "unhealthy"
    assert report.issues[0].kind == "unreachable"


def test_real_redis_near_maxmemory_is_degraded(
    make_redis_server: Callable[..., RedisServer],
) -> None:
    server = make_redis_server(maxmemory="2mb")
    client = redis.Redis.from_url(server.url)
    try:
        limit = 2 * 1024 * 1024
        index = 0
        # Writes stop being accepted at maxmemory (noeviction): fill to just past 85%.
        while int(client.info("memory")["used_memory"]) < 0.85 * limit:
            client.set(f"filler:{index}", b"x" * 8192)
            index += 1
        cache = Cache.from_url(server.url)
        try:
            monitor = Monitor(cache, handlers=[])
            events = monitor.monitor_and_alert()
            report = monitor.last_report
            assert report is not None
            assert report.backend is not None
            assert report.backend.backend == "redis"
            assert report.backend.max_memory == limit
            assert report.backend.keys == index
            assert report.backend.connected_clients is not None
            assert report.backend.connected_clients >= 1
            assert report.memory_ratio is not None
            assert report.memory_ratio > 0.8
            assert report.status == "degraded"
            [issue] = report.issues
            assert issue.kind == "memory"
            assert "of maxmemory: above 80%" in issue.message
            assert [(e.rule, e.state) for e in events] == [("memory", "firing")]
            client.flushall()
            [resolved] = monitor.monitor_and_alert()
            assert (resolved.rule, resolved.state) == ("memory", "resolved")
        finally:
            cache.close()
    finally:
        client.close()


def test_alert_fires_once_and_resolves_with_history(cache: Cache, metrics: InMemoryMetrics) -> None:
    clock = Clock()
    seen: list[Alert] = []
    monitor = Monitor(cache, handlers=[seen.append], clock=clock)
    assert monitor.monitor_and_alert() == []
    reads(metrics, hits=10, misses=30)
    clock.now = 1010.0
    [fired] = monitor.monitor_and_alert()
    assert (fired.rule, fired.subject, fired.state) == ("hit_rate", NS, "firing")
    assert (fired.severity, fired.value, fired.threshold) == ("medium", 0.25, 0.8)
    assert fired.started_at == 1010.0
    for step in range(3):
        clock.now += 10 * (step + 1)
        reads(metrics, hits=1, misses=1)
        assert monitor.monitor_and_alert() == []
    assert monitor.active() == [fired]
    reads(metrics, hits=500, misses=0)
    clock.now = 2000.0
    [resolved] = monitor.monitor_and_alert()
    assert (resolved.rule, resolved.state, resolved.resolved_at) == ("hit_rate", "resolved", 2000.0)
    assert resolved.started_at == 1010.0
    assert monitor.active() == []
    assert monitor.history() == [fired, resolved]
    assert seen == [fired, resolved]


def test_history_is_bounded(cache: Cache, metrics: InMemoryMetrics) -> None:
    monitor = Monitor(cache, history=3)
    for _ in range(3):
        reads(metrics, hits=0, misses=100)
        monitor.monitor_and_alert()
        metrics.reset()
        monitor.monitor_and_alert()
    states = [a.state for a in monitor.history()]
    assert states == ["resolved", "firing", "resolved"]


def test_connection_errors_fire_then_resolve_on_a_quiet_check() -> None:
    backend = FaultyBackend(MemoryBackend())
    cache = Cache(backend, breaker=None)
    monitor = Monitor(cache)
    backend.failing = True
    cache.get("x")
    backend.failing = False
    [fired] = monitor.monitor_and_alert()
    assert (fired.rule, fired.value, fired.severity) == ("connection_errors", 1.0, "high")
    [resolved] = monitor.monitor_and_alert()
    assert (resolved.rule, resolved.state) == ("connection_errors", "resolved")


def test_breaker_open_fires_a_critical_alert() -> None:
    backend = FaultyBackend(MemoryBackend())
    cache = Cache(
        backend,
        breaker=CircuitBreaker(failure_threshold=1, recovery_time=600, max_recovery_time=600),
    )
    monitor = Monitor(cache)
    backend.failing = True
    cache.get("x")
    backend.failing = False
    events = monitor.monitor_and_alert()
    assert {(a.rule, a.severity) for a in events} == {
        ("circuit_breaker_open", "critical"),
        ("connection_errors", "high"),
    }


def test_rules_are_configurable(cache: Cache, metrics: InMemoryMetrics) -> None:
    strict = [
        dataclasses.replace(rule, threshold=0.95, severity="high")
        if rule.name == "hit_rate"
        else rule
        for rule in DEFAULT_RULES
    ]
    reads(metrics, hits=90, misses=10)
    assert Monitor(cache).monitor_and_alert() == []
    [alert] = Monitor(cache, rules=strict).monitor_and_alert()
    assert (alert.rule, alert.severity, alert.threshold) == ("hit_rate", "high", 0.95)


def test_raising_handler_is_logged_and_others_still_run(
    cache: Cache, metrics: InMemoryMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(alert: Alert) -> None:
        raise RuntimeError("pager down")

    seen: list[Alert] = []
    monitor = Monitor(cache, handlers=[broken, seen.append])
    reads(metrics, hits=0, misses=50)
    with caplog.at_level(logging.ERROR, logger="kirocache.monitoring"):
        events = monitor.monitor_and_alert()
    assert len(events) == 1
    assert seen == events
    assert "alert handler" in caplog.text
    assert "pager down" in caplog.text


def test_logging_handler_logs_by_severity(caplog: pytest.LogCaptureFixture) -> None:
    alert: Any = Alert("memory", "backend", "critical", "firing", 0.9, 0.8, "memory high", 1.0)
    handler = LoggingAlertHandler()
    with caplog.at_level(logging.DEBUG, logger="kirocache.monitoring"):
        handler(alert)
        handler(dataclasses.replace(alert, state="resolved", resolved_at=2.0))
    assert [r.levelno for r in caplog.records] == [logging.CRITICAL, logging.INFO]
    assert "memory high" in caplog.records[0].getMessage()


async def test_amonitor_and_alert(cache: Cache, metrics: InMemoryMetrics) -> None:
    monitor = Monitor(cache)
    reads(metrics, hits=0, misses=50)
    [alert] = await monitor.amonitor_and_alert()
    assert alert.rule == "hit_rate"
    assert await monitor.amonitor_and_alert() == []


# -- one threshold table -------------------------------------------------------------------


def figures(metric: str, value: float) -> HealthReport:
    """A healthy report, but for ``metric``, which reads ``value``."""
    report = HealthReport(
        status="healthy",
        checked_at=0.0,
        ping_latency=0.001,
        backend=None,
        memory_ratio=None,
        namespaces=(),
        breaker="closed",
        errors_since_last_check=0,
        min_reads=20,
    )
    if metric == "hit_rate":
        return dataclasses.replace(report, namespaces=(NamespaceHealth(NS, 20, value, None, 0),))
    if metric == "latency_p95":
        return dataclasses.replace(report, namespaces=(NamespaceHealth(NS, 0, None, value, 0),))
    if metric == "memory":
        return dataclasses.replace(report, memory_ratio=value)
    if metric == "connection_errors":
        return dataclasses.replace(report, errors_since_last_check=int(value))
    if metric == "invalidations_pending":
        return dataclasses.replace(report, invalidations_pending=int(value))
    if metric == "circuit_breaker_open":
        return dataclasses.replace(report, breaker="open" if value > 0 else "closed")
    if metric == "node_unavailable":
        state = "open" if value > 0 else "closed"
        return dataclasses.replace(
            report, nodes={"10.0.0.1:7000": {"role": "primary", "state": state}}
        )
    assert metric == "backend_unreachable"
    return dataclasses.replace(report, ping_latency=None if value > 0 else 0.001)


@pytest.mark.parametrize("row", THRESHOLDS, ids=lambda row: row.metric)
def test_health_and_alerts_agree_on_every_threshold(cache: Cache, row: Threshold) -> None:
    # Counts and flags move in whole steps; ratios and seconds just past the limit.
    step = 0.001 if row.metric in ("hit_rate", "latency_p95", "memory") else 1
    past = row.limit + step if row.comparison == "above" else row.limit - step
    report = figures(row.metric, past)
    [issue] = judge(report).issues
    [alert] = Monitor(cache).evaluate(report)
    assert issue.severity == alert.severity == row.severity
    assert (alert.rule, alert.threshold) == (row.metric, row.limit)
    at_the_limit = figures(row.metric, row.limit)
    assert judge(at_the_limit).issues == ()
    assert Monitor(cache).evaluate(at_the_limit) == []


def test_defaults_of_checker_and_rules_are_the_table(cache: Cache) -> None:
    assert HealthChecker(cache).thresholds == THRESHOLDS
    assert [(r.name, r.severity, r.threshold, r.above) for r in DEFAULT_RULES] == [
        (row.metric, row.severity, row.limit, row.comparison == "above") for row in THRESHOLDS
    ]
    assert {row.metric: row.limit for row in THRESHOLDS} == {
        "hit_rate": 0.8,
        "latency_p95": 0.1,
        "memory": 0.8,
        "connection_errors": 0,
        "invalidations_pending": 0,
        "circuit_breaker_open": 0,
        "backend_unreachable": 0,
        "node_unavailable": 0,
    }
    loose = HealthChecker(cache, latency_p95_threshold=0.5).thresholds
    assert [row.limit for row in loose if row.metric == "latency_p95"] == [0.5]


def test_a_slow_namespace_is_the_same_severity_in_the_check_and_the_alert(
    cache: Cache, metrics: InMemoryMetrics
) -> None:
    for _ in range(20):
        metrics.record("get", NS, "hit", 0.25)
    monitor = Monitor(cache)
    [alert] = monitor.monitor_and_alert()
    assert monitor.last_report is not None
    [issue] = monitor.last_report.issues
    assert (issue.kind, issue.severity) == ("latency", "high")
    assert (alert.rule, alert.severity) == ("latency_p95", "high")


def test_an_invalidation_kept_pending_shows_in_health_and_fires_an_alert() -> None:
    from kirocache.testing import FaultyBackend

    backend = FaultyBackend(MemoryBackend())
    cache = Cache(backend, breaker=None)
    cache.set("k", "old")
    backend.failing = True
    cache.delete("k")  # refused: kept pending
    backend.failing = False
    cache.invalidator.pending.close()  # no replay behind the check's back
    report = HealthChecker(cache).check()
    assert report.invalidations_pending == 1
    assert [issue.kind for issue in report.issues] == ["invalidations_pending"]
    assert report.status == "degraded"
    alerts = Monitor(cache).evaluate(report)
    assert [(a.rule, a.severity) for a in alerts] == [("invalidations_pending", "high")]
    assert cache.get("k") is None  # replayed before the read
    assert HealthChecker(cache).check().invalidations_pending == 0


def test_a_cluster_primary_with_an_open_breaker_degrades_and_fires_naming_it(
    cache: Cache,
) -> None:
    # Only primaries count (a replica serves no slots of its own); half open is still down.
    nodes = {
        "10.0.0.1:7000": {"role": "primary", "state": "open", "faults": 3},
        "10.0.0.2:7001": {"role": "primary", "state": "half_open"},
        "10.0.0.3:7002": {"role": "primary", "state": "closed"},
        "10.0.0.4:7003": {"role": "replica", "state": "open"},
    }
    report = dataclasses.replace(figures("hit_rate", 0.9), nodes=nodes)
    judged = judge(report)
    assert judged.status == "degraded"
    found = {issue.message.split()[2] for issue in judged.issues}
    assert found == {"10.0.0.1:7000", "10.0.0.2:7001"}
    assert {(issue.kind, issue.severity) for issue in judged.issues} == {
        ("node_unavailable", "high")
    }
    monitor = Monitor(cache)
    alerts = monitor.evaluate(report)
    assert {(a.rule, a.subject, a.state) for a in alerts} == {
        ("node_unavailable", "10.0.0.1:7000", "firing"),
        ("node_unavailable", "10.0.0.2:7001", "firing"),
    }
    healed = dataclasses.replace(
        report, nodes={n: {**s, "state": "closed"} for n, s in nodes.items()}
    )
    assert {(a.subject, a.state) for a in monitor.evaluate(healed)} == {
        ("10.0.0.1:7000", "resolved"),
        ("10.0.0.2:7001", "resolved"),
    }
