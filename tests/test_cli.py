"""The ``kirocache demo`` command, in memory and against the real redis-server."""

from __future__ import annotations

import re
import socket

import pytest
import redis

import kirocache
from kirocache._cache import default as _global
from kirocache._cli import main
from kirocache.backends import mask_url


def assert_tour(out: str, *, runs: str = "1") -> None:
    """The lines that show each feature doing what the demo says it does."""
    assert re.search(r"first call: .* ms, function ran 1 time\(s\) \(miss\)", out)
    assert re.search(r"second call: .* ms, function ran 0 time\(s\) \(hit\)", out)
    assert "stored at 'kirocache-demo:user:profile:42' for 3600 s" in out
    assert "the hit came back as a Profile" in out
    assert "after update_profile(42, ...): cached entry invalidated" in out
    assert "user 42 live sessions: ['phone', 'tablet']; the first one is gone: True" in out
    assert "revoke_all(42) revoked 2; stats: SessionStats(live_sessions=1, users=1" in out
    assert re.search(r"^status: (healthy|degraded); breaker: closed$", out, re.MULTILINE)
    assert "next get_profile(42): function ran 1 time(s), name 'Ada Lovelace'" in out
    assert "invalidate_tags('user:42') removed 3 entries; user 7 still cached: True" in out
    assert re.search(
        rf"50 callers in \d+ ms: get_leaderboard ran {runs} time\(s\); "
        r"all got the same answer: True",
        out,
    )
    assert "get_learning_path ran 1 time(s); all equal: True" in out
    assert "still 1 run(s)" in out
    assert "asked for 1, 3, 99 -> got ['1', '3']" in out
    assert "completed exercises: 3" in out
    assert "removed 3 search results; profile still cached: True" in out
    assert (
        "user.profile.updated for user 7: rule 'user.profile.updated' removed 4 entries "
        "(its learning path too: True)"
    ) in out
    assert "why is 'learning:path:7' gone? event 'user.profile.updated'" in out
    assert "10 reads during the outage -> {'fallback'}" in out
    assert "after recovery: 'before the outage', breaker closed" in out
    table = out.split("== Metrics per namespace and operation", 1)[1]
    assert re.search(r"^user:profile:\s+get\s+7\s+3\s+4\s+43%", table, re.MULTILINE)
    # 50 callers read the cold key; how many read it before the one call stored it is timing,
    # and a caller whose miss was read just before the store reads once more
    stampede = re.search(
        r"^metrics:\s+get\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\S+\s+(\d+)$", table, re.MULTILINE
    )
    assert stampede
    calls, hits, misses, coalesced = (int(stampede[n]) for n in range(1, 5))
    assert 50 <= calls <= 100
    assert hits + misses == calls
    # the waiters served the one call's value count as served; only when too few readers
    # were served does the health check flag the namespace's hit rate
    assert coalesced <= misses
    flagged = re.search(r"hit rate \d+% in metrics:: below 80%", out) is not None
    assert flagged == (hits + coalesced < 0.8 * calls)


@pytest.fixture(autouse=True)
def restore_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_global, "_default", None)


def test_demo_in_memory(capsys: pytest.CaptureFixture[str]) -> None:
    before = kirocache.configure("memory://")
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kirocache demo on memory://")
    assert_tour(out)
    assert kirocache.get_cache() is before  # the demo puts the default cache back


def test_demo_runs_twice_in_one_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    capsys.readouterr()
    assert main(["demo"]) == 0
    assert_tour(capsys.readouterr().out)


def test_demo_on_redis_leaves_no_keys(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with redis.Redis.from_url(redis_url) as raw:
        raw.set("other-app:key", "kept")
        assert main(["demo", "--redis-url", redis_url]) == 0
        # Over a real socket on a loaded 2-core machine a read can pass the 0.5 s socket
        # timeout; such a caller fails open and computes for itself, so more than one run
        # is correct there. The in-memory tests keep the exact count.
        assert_tour(capsys.readouterr().out, runs=r"\d+")
        assert raw.keys("kirocache-demo:*") == []
        assert raw.get("other-app:key") == b"kept"
        raw.delete("other-app:key")


def test_demo_reports_an_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["demo", "--redis-url", f"redis://127.0.0.1:{port}/0"]) == 3
    captured = capsys.readouterr()
    assert f"backend unavailable: Redis ping failed on redis://127.0.0.1:{port}/0" in captured.err
    assert captured.out == ""


def test_demo_needs_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().err


@pytest.mark.parametrize(
    "url",
    [
        "ftp://ada:s3cret@example.com:6379/0",
        "ftp://example.com/?password=s3cret&db=1",
        "ftp://ada@example.com/0",
    ],
)
def test_the_public_mask_url_is_the_one_the_cache_uses(url: str) -> None:
    with pytest.raises(kirocache.ConfigurationError) as info:
        kirocache.Cache.from_url(url)
    assert f"unsupported cache URL {mask_url(url)!r}" in str(info.value)
    assert "s3cret" not in mask_url(url)


def test_a_malformed_url_is_masked_too() -> None:
    assert mask_url("redis://[broken:s3cret@example.com") == "redis://[broken:***@example.com"
