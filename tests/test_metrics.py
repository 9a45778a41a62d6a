"""InMemoryMetrics: counters, hit rates and latency percentiles per namespace."""

from __future__ import annotations

import json
import threading

import pytest

from kirocache.metrics import InMemoryMetrics, MultiMetrics, Outcome, percentile


def test_hit_rate_per_namespace_and_overall() -> None:
    metrics = InMemoryMetrics()
    for _ in range(3):
        metrics.record("get", "user:profile:", "hit", 0.001)
    metrics.record("get", "user:profile:", "miss", 0.002)
    metrics.record("get", "search:", "miss", 0.002)
    metrics.record("set", "search:", "set", 0.003)
    assert metrics.hit_rate("user:profile:") == pytest.approx(0.75)
    assert metrics.hit_rate("search:") == 0.0
    assert metrics.hit_rate() == pytest.approx(3 / 5)
    assert metrics.hit_rate("nothing:") is None
    assert metrics.namespaces() == ["search:", "user:profile:"]


def test_stale_serves_count_as_hits_and_counts_add_up() -> None:
    metrics = InMemoryMetrics()
    metrics.record("get_many", "ns:", "hit", 0.001, count=7)
    metrics.record("get_many", "ns:", "miss", 0.001, count=3)
    metrics.record("get", "ns:", "stale", 0.001)
    [many] = metrics.stats(operation="get_many")
    assert (many.hits, many.misses, many.calls) == (7, 3, 2)
    assert metrics.hit_rate("ns:") == pytest.approx(8 / 11)


def test_percentiles_over_the_window() -> None:
    metrics = InMemoryMetrics(window=100)
    for ms in range(1, 101):
        metrics.record("get", "ns:", "hit", ms / 1000)
    [stats] = metrics.stats()
    assert stats.latency_p50 == pytest.approx(0.050)
    assert stats.latency_p95 == pytest.approx(0.095)
    assert stats.latency_p99 == pytest.approx(0.099)
    assert stats.latency_max == pytest.approx(0.100)
    assert stats.latency_mean == pytest.approx(0.0505)
    # the window keeps the latest 100: fast calls push the slow ones out
    for _ in range(100):
        metrics.record("get", "ns:", "hit", 0.0001)
    [stats] = metrics.stats()
    assert stats.latency_p99 == pytest.approx(0.0001)
    assert stats.latency_max == pytest.approx(0.100)  # max covers everything


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([1.0], 0.99) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.75) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 1.0) == 4.0


def test_snapshot_is_json_ready_and_reset_forgets() -> None:
    metrics = InMemoryMetrics()
    metrics.record("get", "ns:", "hit", 0.001)
    metrics.record("get", "ns:", "error", 0.5)
    data = json.loads(json.dumps(metrics.snapshot()))
    assert data[0]["errors"] == 1
    assert data[0]["hit_rate"] == 1.0
    metrics.reset()
    assert metrics.snapshot() == []


def test_recording_from_threads_loses_nothing() -> None:
    metrics = InMemoryMetrics()

    def work() -> None:
        for _ in range(5000):
            metrics.record("get", "ns:", "hit", 0.0001)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [stats] = metrics.stats()
    assert stats.hits == stats.calls == 40000


def test_multi_metrics_feeds_every_hook() -> None:
    first, second = InMemoryMetrics(), InMemoryMetrics()
    MultiMetrics(first, second).record("get", "ns:", "miss", 0.001)
    assert first.hit_rate() == second.hit_rate() == 0.0


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        InMemoryMetrics(window=0)


# -- coalesced: stampede waiters served another caller's value ---------------------------


def test_coalesced_misses_count_as_served_and_apart() -> None:
    metrics = InMemoryMetrics()
    for _ in range(20):  # twenty readers of a cold key missed...
        metrics.record("get", "board:", "miss", 0.002)
    for _ in range(19):  # ...and nineteen got the value one of them computed
        metrics.record("get", "board:", "coalesced", 0.0)
    [stats] = metrics.stats()
    assert (stats.calls, stats.hits, stats.misses, stats.coalesced) == (20, 0, 20, 19)
    assert stats.hit_rate == pytest.approx(19 / 20)  # before: 0, "hit rate 0%"
    assert metrics.hit_rate("board:") == pytest.approx(19 / 20)
    assert metrics.hit_rate() == pytest.approx(19 / 20)
    assert stats.latency_p50 == pytest.approx(0.002)  # no latency of its own
    data = json.loads(json.dumps(metrics.snapshot()))
    assert (data[0]["coalesced"], data[0]["misses"]) == (19, 20)


def test_prometheus_exports_coalesced() -> None:
    from prometheus_client import generate_latest

    from kirocache.exporters import PrometheusMetrics

    exporter = PrometheusMetrics()
    exporter.record("get", "board:", "miss", 0.002)
    exporter.record("get", "board:", "coalesced", 0.0)
    text = generate_latest(exporter.registry).decode()
    assert (
        'kirocache_operations_total{namespace="board:",operation="get",outcome="coalesced"} 1.0'
        in text
    )
    assert (
        'kirocache_operation_latency_seconds_count{namespace="board:",operation="get"} 1.0' in text
    )


def test_opentelemetry_exports_coalesced() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Sum
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from kirocache.exporters import OpenTelemetryMetrics

    reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    hook = OpenTelemetryMetrics(
        meter_provider=MeterProvider(metric_readers=[reader]), tracer_provider=tracer_provider
    )
    hook.record("get", "board:", "miss", 0.002)
    hook.record("get", "board:", "coalesced", 0.0)
    data = reader.get_metrics_data()
    assert data is not None
    [operations] = [
        metric.data
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "kirocache.operations"
    ]
    assert isinstance(operations, Sum)
    counts = {
        p.attributes["cache.outcome"]: p.value
        for p in operations.data_points
        if p.attributes is not None
    }
    assert counts == {"miss": 1, "coalesced": 1}
    assert len(spans.get_finished_spans()) == 1  # the read's span; coalesced only counts


async def test_a_stampede_reads_as_served_in_health_and_alerts() -> None:
    """Twenty readers of a cold key, one call: before, "hit rate 0%" and a degraded status."""
    import asyncio

    from kirocache import Cache, cached
    from kirocache.backends import MemoryBackend
    from kirocache.monitoring import HealthChecker, Monitor

    cache = Cache(MemoryBackend())
    calls: list[str] = []

    @cached(prefix="board:", cache=cache, ttl=60)
    async def leaderboard(course: str) -> list[str]:
        calls.append(course)
        await asyncio.sleep(0.02)
        return ["ada", "grace"]

    results = await asyncio.gather(*(leaderboard("python") for _ in range(20)))
    assert results == [["ada", "grace"]] * 20
    assert calls == ["python"]
    metrics = cache.metrics
    assert isinstance(metrics, InMemoryMetrics)
    [reads] = metrics.stats("board:", "get")
    assert (reads.calls, reads.misses, reads.coalesced) == (20, 20, 19)
    assert metrics.hit_rate("board:") == pytest.approx(0.95)
    report = HealthChecker(cache).check()
    assert [issue.kind for issue in report.issues] == []
    assert report.status == "healthy"
    assert Monitor(cache).monitor_and_alert() == []


def test_the_demo_ends_healthy(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its 50-thread stampede made the demo end "degraded" with a hit-rate alert."""
    from kirocache._cache import default as _global
    from kirocache._cli import main

    monkeypatch.setattr(_global, "_default", None)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "status: healthy" in out
    assert "alerts raised: 0" in out


# ---- per-thread tallies: exact counts once the calls are over ---------------------------------


def test_counts_from_eight_threads_are_exact() -> None:
    # each thread counts into its own tally; the snapshot sums them, so nothing is lost
    metrics = InMemoryMetrics(window=64)
    start = threading.Barrier(8)

    def work(number: int) -> None:
        start.wait()
        for i in range(2_000):
            metrics.record("get", "user:", "hit" if i % 4 else "miss", 0.001 * number)
        metrics.record("get", "user:", "coalesced", 0.0, count=3)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    # figures read while the threads run are a snapshot, never an error
    assert all(item.calls <= 16_000 for item in metrics.stats())
    for thread in threads:
        thread.join()
    [reads] = metrics.stats("user:", "get")
    assert (reads.calls, reads.hits, reads.misses, reads.coalesced) == (16_000, 12_000, 4_000, 24)
    assert reads.latency_max == pytest.approx(0.007)
    assert reads.latency_mean == pytest.approx(0.0035)
    assert metrics.hit_rate("user:") == pytest.approx((12_000 + 24) / 16_000)


def test_an_ended_threads_figures_stay_counted() -> None:
    metrics = InMemoryMetrics()
    for _ in range(5):
        thread = threading.Thread(target=metrics.record, args=("set", "a:", "set", 0.5))
        thread.start()
        thread.join()
    metrics.record("set", "a:", "set", 0.1)  # this thread's first record folds the ended ones
    [writes] = metrics.stats("a:", "set")
    assert (writes.calls, writes.sets) == (6, 6)
    assert writes.latency_p50 == 0.5
    assert metrics.namespaces() == ["a:"]


def test_reset_forgets_every_threads_counts() -> None:
    metrics = InMemoryMetrics()
    worker = threading.Thread(target=metrics.record, args=("get", "b:", "hit", 0.2))
    worker.start()
    worker.join()
    metrics.record("get", "b:", "miss", 0.1)
    metrics.reset()
    assert metrics.stats() == []
    metrics.record("get", "b:", "hit", 0.3)
    [reads] = metrics.stats()
    assert (reads.calls, reads.hits, reads.misses) == (1, 1, 0)


def test_a_cache_counts_every_hit_of_eight_threads() -> None:
    from kirocache import Cache, cached

    with Cache.from_url("memory://") as cache:

        @cached(prefix="t:", ttl=60, cache=cache)
        def double(x: int) -> int:
            return 2 * x

        double(1)

        def hits() -> None:
            for _ in range(1_000):
                assert double(1) == 2

        threads = [threading.Thread(target=hits) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        metrics = cache.metrics
        assert isinstance(metrics, InMemoryMetrics)
        [reads] = metrics.stats("t:", "get")
        assert (reads.hits, reads.misses) == (8_000, 1)


def test_the_hit_recorder_counts_as_record_does() -> None:
    quick, plain = InMemoryMetrics(window=4), InMemoryMetrics(window=4)
    hit = quick._hit_recorder("get", "h:")
    for latency in (0.001, 0.005, 0.002, 0.004, 0.003, 0.006):
        hit(latency)
        plain.record("get", "h:", "hit", latency)
    for metrics in (quick, plain):
        metrics.record("get", "h:", "miss", 0.01)
        metrics.record("get", "h:", "coalesced", 0.0)
        metrics.record("get", "h:", "stale", 0.02)
    assert quick.stats() == plain.stats()
    [reads] = quick.stats()
    assert (reads.calls, reads.hits, reads.misses, reads.stale) == (8, 6, 1, 1)
    assert reads.latency_max == 0.02
    assert quick.hit_rate("h:") == plain.hit_rate("h:") == pytest.approx(8 / 8)
    quick.reset()
    hit(0.5)  # after a reset: a new series, counted from zero
    [reads] = quick.stats()
    assert (reads.calls, reads.hits, reads.misses, reads.latency_max) == (1, 1, 0, 0.5)


def test_hits_recorded_both_ways_from_eight_threads_are_exact() -> None:
    metrics = InMemoryMetrics(window=16)
    hit = metrics._hit_recorder("get", "m:")

    def work(n: int) -> None:
        for i in range(500):
            if (i + n) % 3:
                hit(0.001)
            else:
                metrics.record("get", "m:", "miss" if i % 2 else "hit", 0.002)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()  # ended threads' tallies are folded in, their hits kept
    expected = {"hit": 0, "miss": 0}
    for n in range(8):
        for i in range(500):
            kind = "hit" if (i + n) % 3 else ("miss" if i % 2 else "hit")
            expected[kind] += 1
    [reads] = metrics.stats()
    assert (reads.calls, reads.hits, reads.misses) == (4000, expected["hit"], expected["miss"])
    assert metrics.hit_rate() == pytest.approx(expected["hit"] / 4000)


def test_a_hook_of_its_own_hears_every_hit_of_a_cached_function() -> None:
    from kirocache import Cache, cached

    heard: list[tuple[str, str, str]] = []

    class Heard(InMemoryMetrics):
        def record(
            self, operation: str, namespace: str, outcome: Outcome, latency: float, count: int = 1
        ) -> None:
            heard.append((operation, namespace, outcome))
            super().record(operation, namespace, outcome, latency, count)

    for metrics in (Heard(), MultiMetrics(Heard())):
        heard.clear()
        with Cache.from_url("memory://", metrics=metrics) as cache:

            @cached(prefix="o:", ttl=60, cache=cache)
            def double(x: int) -> int:
                return 2 * x

            assert double(1) == double(1) == double(1) == 2
        assert heard.count(("get", "o:", "hit")) == 2
        assert heard.count(("get", "o:", "miss")) == 1
