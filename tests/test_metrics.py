"""InMemoryMetrics: counters, hit rates and latency percentiles per namespace."""

from __future__ import annotations

import json
import threading

import pytest

from kirocache.metrics import InMemoryMetrics, MultiMetrics, percentile


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
