"""The Prometheus and OpenTelemetry exporters, checked through their own readers."""

from __future__ import annotations

import sys

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Histogram, InMemoryMetricReader, Sum
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kirocache import Cache
from kirocache.backends import BackendStats
from kirocache.exceptions import BackendError, ConfigurationError
from kirocache.exporters import OpenTelemetryMetrics, PrometheusMetrics
from kirocache.metrics import InMemoryMetrics, MultiMetrics


def samples(exporter: PrometheusMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(exporter.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_prometheus_exposition_counts_outcomes_and_latencies() -> None:
    exporter = PrometheusMetrics()
    cache = Cache.from_url("memory://", metrics=MultiMetrics(InMemoryMetrics(), exporter))
    cache.set("user:profile:1", {"name": "Ada"})
    cache.get("user:profile:1")
    cache.get("user:profile:1")
    cache.get("user:profile:2")
    cache.get_many(["user:profile:1", "user:profile:3", "user:profile:4"])
    found = samples(exporter)

    def total(operation: str, outcome: str) -> float:
        labels = {("namespace", "default"), ("operation", operation), ("outcome", outcome)}
        return found[("kirocache_operations_total", frozenset(labels))]

    assert total("set", "set") == 1
    assert total("get", "hit") == 2
    assert total("get", "miss") == 1
    assert total("get_many", "miss") == 2
    get_labels = frozenset({("namespace", "default"), ("operation", "get")})
    assert found[("kirocache_operation_latency_seconds_count", get_labels)] == 3
    assert found[("kirocache_operation_latency_seconds_sum", get_labels)] > 0
    inf_bucket = frozenset({*get_labels, ("le", "+Inf")})
    assert found[("kirocache_operation_latency_seconds_bucket", inf_bucket)] == 3


def test_prometheus_histogram_buckets_place_latencies() -> None:
    exporter = PrometheusMetrics(buckets=(0.01, 0.1))
    exporter.record("get", "user:", "hit", 0.005)
    exporter.record("get", "user:", "hit", 0.05)
    exporter.record("get", "user:", "error", 0.5)
    found = samples(exporter)
    base = {("namespace", "user:"), ("operation", "get")}
    bucket = "kirocache_operation_latency_seconds_bucket"
    assert found[(bucket, frozenset({*base, ("le", "0.01")}))] == 1
    assert found[(bucket, frozenset({*base, ("le", "0.1")}))] == 2
    assert found[(bucket, frozenset({*base, ("le", "+Inf")}))] == 3
    errors = frozenset({*base, ("outcome", "error")})
    assert found[("kirocache_operations_total", errors)] == 1


def test_prometheus_registries_are_isolated_by_default() -> None:
    first, second = PrometheusMetrics(), PrometheusMetrics()
    first.record("get", "a:", "hit", 0.001)
    assert any(name == "kirocache_operations_total" for name, _ in samples(first))
    assert not any(name == "kirocache_operations_total" for name, _ in samples(second))


def test_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ConfigurationError, match=r"kirocache\[prometheus\]"):
        PrometheusMetrics()
    monkeypatch.setitem(sys.modules, "opentelemetry.metrics", None)
    with pytest.raises(ConfigurationError, match=r"kirocache\[otel\]"):
        OpenTelemetryMetrics()


@pytest.fixture
def otel() -> tuple[OpenTelemetryMetrics, InMemoryMetricReader, InMemorySpanExporter]:
    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    hook = OpenTelemetryMetrics(
        meter_provider=MeterProvider(metric_readers=[reader]),
        tracer_provider=tracer_provider,
        db_system="memory",
    )
    return hook, reader, spans


def test_otel_spans_carry_cache_attributes(
    otel: tuple[OpenTelemetryMetrics, InMemoryMetricReader, InMemorySpanExporter],
) -> None:
    hook, _, exporter = otel
    cache = Cache.from_url("memory://", metrics=hook)
    cache.set("k", 1)
    cache.get("k")
    cache.get("missing")
    hook.record("get", "user:", "error", 0.25)
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["cache set", "cache get", "cache get", "cache get"]
    set_span, hit, miss, error = spans
    assert set_span.attributes is not None
    assert "cache.hit" not in set_span.attributes
    assert hit.attributes is not None
    assert miss.attributes is not None
    assert hit.attributes["cache.hit"] is True
    assert miss.attributes["cache.hit"] is False
    assert hit.attributes["db.system"] == "memory"
    assert hit.attributes["cache.namespace"] == "default"
    assert hit.kind is SpanKind.CLIENT
    assert error.status.status_code is StatusCode.ERROR
    assert error.start_time is not None
    assert error.end_time is not None
    assert error.end_time - error.start_time == 250_000_000


def test_otel_metrics_instruments(
    otel: tuple[OpenTelemetryMetrics, InMemoryMetricReader, InMemorySpanExporter],
) -> None:
    hook, reader, _ = otel
    hook.record("get", "user:", "hit", 0.002)
    hook.record("get", "user:", "hit", 0.004)
    hook.record("get_many", "user:", "miss", 0.003, count=5)
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    operations = metrics["kirocache.operations"].data
    assert isinstance(operations, Sum)
    counts = {
        (p.attributes["cache.operation"], p.attributes["cache.outcome"]): p.value
        for p in operations.data_points
        if p.attributes is not None
    }
    assert counts == {("get", "hit"): 2, ("get_many", "miss"): 5}
    duration = metrics["kirocache.operation.duration"]
    assert duration.unit == "s"
    assert isinstance(duration.data, Histogram)
    points = {
        p.attributes["cache.operation"]: p
        for p in duration.data.data_points
        if p.attributes is not None
    }
    assert points["get"].count == 2
    assert points["get"].sum == pytest.approx(0.006)


# -- per-node series of a Redis Cluster (a stand-in backend: no server) ---------------------


class _ClusterLike:
    """What the exporters read of a cluster backend: node_states() and stats()."""

    def __init__(self) -> None:
        self.stats_calls = 0
        self.states: dict[str, dict[str, object]] = {
            "10.0.0.1:7000": {
                "role": "primary",
                "state": "closed",
                "faults": 0,
                "rejected": 0,
                "openings": 0,
            },
            "10.0.0.2:7000": {
                "role": "primary",
                "state": "open",
                "faults": 5,
                "rejected": 12,
                "openings": 1,
            },
        }

    def node_states(self) -> dict[str, dict[str, object]]:
        return self.states

    def stats(self) -> BackendStats:
        self.stats_calls += 1
        node = {"keys": 10, "used_memory": 2048, "max_memory": 0, "hits": 7, "uptime_seconds": 9.5}
        return BackendStats(backend="redis-cluster", extra={"nodes": {"10.0.0.1:7000": node}})


def test_prometheus_node_series_are_labelled_by_node_and_role() -> None:
    exporter = PrometheusMetrics()
    backend = _ClusterLike()
    exporter.watch(backend)
    found = samples(exporter)
    up = frozenset({("node", "10.0.0.1:7000"), ("role", "primary")})
    down = frozenset({("node", "10.0.0.2:7000"), ("role", "primary")})
    state = "kirocache_node_breaker_state"
    assert found[(state, up | {("state", "closed")})] == 1
    assert found[(state, up | {("state", "open")})] == 0
    assert found[(state, down | {("state", "open")})] == 1
    assert found[(state, down | {("state", "half_open")})] == 0
    assert found[("kirocache_node_faults_total", down)] == 5
    assert found[("kirocache_node_rejected_total", down)] == 12
    assert found[("kirocache_node_breaker_openings_total", down)] == 1
    assert found[("kirocache_node_keys", up)] == 10
    assert found[("kirocache_node_used_memory_bytes", up)] == 2048
    assert found[("kirocache_node_hits_total", up)] == 7
    assert found[("kirocache_node_uptime_seconds", up)] == 9.5
    # the open node's stats could not be read: it has breaker series, no figures
    assert ("kirocache_node_keys", down) not in found
    # a scrape reads the stats once, whatever the number of series
    assert backend.stats_calls == 1


def test_prometheus_has_no_node_series_on_one_node() -> None:
    exporter = PrometheusMetrics()
    cache = Cache.from_url("memory://", metrics=exporter)
    exporter.watch(cache)
    cache.get("k")
    names = {name for name, _ in samples(exporter)}
    assert not any(name.startswith("kirocache_node_") for name in names)
    assert "kirocache_operations_total" in names
    # no empty label either
    assert all(value for _, labels in samples(exporter) for _, value in labels)


def test_prometheus_node_series_survive_a_failing_stats() -> None:
    class Failing(_ClusterLike):
        def stats(self) -> BackendStats:
            raise BackendError("every primary is down")

    exporter = PrometheusMetrics()
    exporter.watch(Failing(), stats=True)
    found = samples(exporter)
    down = frozenset({("node", "10.0.0.2:7000"), ("role", "primary")})
    assert found[("kirocache_node_breaker_state", down | {("state", "open")})] == 1
    assert not any(name == "kirocache_node_keys" for name, _ in found)


def test_otel_node_instruments_carry_node_attributes(
    otel: tuple[OpenTelemetryMetrics, InMemoryMetricReader, InMemorySpanExporter],
) -> None:
    hook, reader, _ = otel
    hook.watch(_ClusterLike())
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        (metric.name, frozenset((p.attributes or {}).items())): p.value  # type: ignore[union-attr]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for p in metric.data.data_points
    }
    up = {("cache.node", "10.0.0.1:7000"), ("cache.node.role", "primary")}
    down = {("cache.node", "10.0.0.2:7000"), ("cache.node.role", "primary")}
    state = "kirocache.node.breaker.state"
    assert points[(state, frozenset({*down, ("cache.node.breaker.state", "open")}))] == 1
    assert points[(state, frozenset({*up, ("cache.node.breaker.state", "open")}))] == 0
    assert points[("kirocache.node.faults", frozenset(down))] == 5
    assert points[("kirocache.node.rejected", frozenset(down))] == 12
    assert points[("kirocache.node.keys", frozenset(up))] == 10
    assert ("kirocache.node.keys", frozenset(down)) not in points


def test_otel_observes_no_nodes_on_one_node(
    otel: tuple[OpenTelemetryMetrics, InMemoryMetricReader, InMemorySpanExporter],
) -> None:
    hook, reader, _ = otel
    cache = Cache.from_url("memory://", metrics=hook)
    hook.watch(cache)
    cache.get("k")
    data = reader.get_metrics_data()
    assert data is not None
    names = {
        metric.name
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.data.data_points
    }
    assert "kirocache.operations" in names
    assert not any(name.startswith("kirocache.node.") for name in names)
