"""The cleanup task: pruning tag and dependency indexes, purging memory, running on a schedule."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import pytest

from kirocache import Cache, Tag
from kirocache.backends.memory import MemoryBackend
from kirocache.cleanup import Cleanup, CleanupReport
from kirocache.exceptions import ConfigurationError
from kirocache.testing import FaultyBackend

if TYPE_CHECKING:
    from kirocache.testing.conformance import FullBackend

DEADLINE = 10.0


def wait_for(condition: object, timeout: float = DEADLINE) -> None:
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:  # type: ignore[operator]
        time.sleep(0.01)
    assert condition(), "condition not reached"  # type: ignore[operator]


def seeded(backend: FullBackend) -> Cache:
    """Three tagged entries (one invalidated, one expiring) and dependency edges."""
    cache = Cache(backend, key_prefix="clean:")
    cache.set("live", 1, 60, tags=["team"])
    cache.set("gone", 2, 60, tags=["team"])
    cache.set("brief", 3, 0.05, tags=["team"])
    cache.delete("gone")
    cache.depends("live", on="source", ttl=60)
    cache.depends("gone", on="source", ttl=60)
    cache.depends(Tag("team"), on="source", ttl=60)
    cache.depends(Tag("never-used"), on="source", ttl=60)
    time.sleep(0.1)  # "brief" expires
    return cache


def test_run_once_prunes_dead_index_entries(backend: FullBackend) -> None:
    cache = seeded(backend)
    report = Cleanup(cache).run_once()
    assert report.tag_entries_pruned == 2  # "gone" (tombstone) and "brief" (expired)
    assert report.dependency_edges_pruned == 2  # "gone" and the tag without a set
    assert report.indexes_checked == 2
    assert report.errors == 0
    assert backend.tag_members("clean:kirocache:tag:team") == ["clean:live"]
    assert backend.tag_members("clean:kirocache:dep:k:clean:source") == [
        "k:clean:live",
        "t:team",
    ]
    # nothing live was touched, and invalidation still follows what is left
    assert cache.get("live") == 1
    cache.delete("source")
    assert cache.get("live") is None
    assert Cleanup(cache).run_once().tag_entries_pruned == 0


async def test_arun_once_prunes_dead_index_entries(backend: FullBackend) -> None:
    cache = seeded(backend)
    report = await Cleanup(cache).arun_once()
    assert (report.tag_entries_pruned, report.dependency_edges_pruned) == (2, 2)


def test_memory_purges_expired_entries() -> None:
    now = [0.0]
    backend = MemoryBackend(clock=lambda: now[0])
    cache = Cache(backend)
    for i in range(50):
        cache.set(f"k{i}", i, 10 if i < 30 else 100)
    now[0] = 50.0
    report = Cleanup(cache).run_once()
    assert report.expired_purged == 30
    assert backend.stats().keys == 20


def test_faults_are_counted_not_raised(backend: FullBackend) -> None:
    seeded(backend)
    faulty = FaultyBackend(backend)
    faulty.failing = True
    report = Cleanup(Cache(faulty, key_prefix="clean:")).run_once()
    assert report.errors >= 2  # both scans failed (and the memory purge)
    assert report.tag_entries_pruned == 0


def test_a_thread_runs_it_until_stopped(caplog: pytest.LogCaptureFixture) -> None:
    cache = Cache.from_url("memory://")
    reports: list[CleanupReport] = []

    def on_report(report: CleanupReport) -> None:
        reports.append(report)
        if len(reports) == 1:
            raise RuntimeError("a broken callback")

    cleanup = Cleanup(cache, every=0.02, on_report=on_report)
    with caplog.at_level(logging.ERROR, logger="kirocache.cleanup"), cleanup:
        assert cleanup.running
        with pytest.raises(ConfigurationError, match="already running"):
            cleanup.start()
        wait_for(lambda: cleanup.runs >= 3)
    assert not cleanup.running
    runs = cleanup.runs
    time.sleep(0.1)
    assert cleanup.runs == runs  # stopped for good
    assert len(reports) == runs
    assert "a broken callback" in caplog.text
    assert cleanup.last_report is reports[-1]


async def test_a_task_runs_it_until_stopped() -> None:
    cache = Cache.from_url("memory://")
    three = asyncio.Event()
    cleanup = Cleanup(cache, every=0.02, on_report=lambda _: cleanup.runs >= 2 and three.set())
    async with cleanup:
        assert cleanup.running
        await asyncio.wait_for(three.wait(), DEADLINE)
        assert cleanup.runs >= 2
    assert not cleanup.running
    assert "stopped" in repr(cleanup)


@pytest.mark.parametrize("every", [0, -1, float("inf"), "soon"])
def test_bad_intervals_are_refused(every: object) -> None:
    with pytest.raises((ConfigurationError, ValueError, TypeError)):
        Cleanup(Cache.from_url("memory://"), every=every)  # type: ignore[arg-type]


def test_prune_indexes_reads_the_indexes_page_by_page_and_misses_none() -> None:
    from kirocache.backends import MemoryBackend

    backend = MemoryBackend(max_entries=10_000)
    cache = Cache(backend)
    for n in range(1_201):  # three SCAN pages of indexes
        cache.set(f"k{n}", n, tags=[f"t{n}"])
    cache.delete_many([f"k{n}" for n in range(0, 1_201, 2)])
    counts = cache.prune_indexes()
    assert counts["indexes"] == 1_201
    assert counts["tag_entries"] == 601  # the deleted keys' entries, in every page
    assert counts["errors"] == 0
