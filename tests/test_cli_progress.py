"""The pattern delete's progress hook (``on_progress``), which the CLI's progress line reads."""

from __future__ import annotations

import pytest

from kirocache import Cache


class Stop(Exception):
    """Raised by a progress callback to stop the delete."""


def fill(cache: Cache, count: int) -> None:
    cache.set_many({f"big:{n}": n for n in range(count)})
    cache.set("other:kept", 1)


def test_the_hook_hears_the_running_count_after_each_batch(cache: Cache) -> None:
    fill(cache, 1200)
    heard: list[int] = []
    removed = cache.delete_pattern("big:*", batch_size=500, on_progress=heard.append)
    assert removed == 1200
    # one call per batch of deletes, counts growing to the total
    assert len(heard) >= 3
    assert heard == sorted(heard)
    assert len(set(heard)) == len(heard)
    assert heard[-1] == 1200
    assert cache.get("other:kept") == 1


async def test_the_async_delete_reports_progress_too(cache: Cache) -> None:
    fill(cache, 700)
    heard: list[int] = []
    removed = await cache.adelete_pattern("big:*", batch_size=300, on_progress=heard.append)
    assert removed == 700
    assert len(heard) >= 3
    assert heard == sorted(heard)
    assert heard[-1] == 700


def test_without_a_hook_nothing_changes(cache: Cache) -> None:
    fill(cache, 10)
    assert cache.delete_pattern("big:*") == 10
    assert cache.invalidate_pattern("big:*") == 0


def test_a_raising_hook_stops_the_delete_and_keeps_the_pattern_pending(cache: Cache) -> None:
    fill(cache, 1000)

    def stop_after_first_batch(done: int) -> None:
        raise Stop(done)

    with pytest.raises(Stop):
        cache.delete_pattern("big:*", batch_size=200, on_progress=stop_after_first_batch)
    # the delete did not finish: what it did not reach is kept pending, so reads miss
    assert cache.pending_invalidations()["invalidations_pending"] == 1
    assert cache.get("big:999") is None
    assert cache.get("other:kept") == 1
    cache.close()
