"""Measure ``invalidate_pattern`` on a million matching keys, on a throwaway redis-server.

Usage: ``python tools/measure_pattern_delete.py [--keys 1000000] [--others 1000000]``

Fills a private redis-server (started here on a free loopback port, stopped by its pid at
the end) with ``--keys`` keys under ``app:user:`` plus ``--others`` keys that must survive
(``app:course:`` and another app's ``other:user:``), then runs
``cache.invalidate_pattern("user:*")`` on a cache with ``key_prefix="app:"`` while a probe
thread sends ``GET`` to the same server in a loop. It prints the deletion's total time, the
probe's latency percentiles during the deletion (how long other clients waited: the
figure that says whether Redis was blocked), the slowest single SCAN/UNLINK call the server
saw, and that the other keys were left alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from kirocache import Cache
from redis_server import RedisServer, find_redis_server


def fill(client: redis.Redis, prefix: str, count: int) -> None:
    """``count`` small string keys under ``prefix`` (DEBUG POPULATE: server-side, fast)."""
    client.execute_command("DEBUG", "POPULATE", count, prefix, 64)


def report(
    version: str,
    batch: int,
    before: int,
    removed: int,
    left: int,
    elapsed: float,
    latencies: list[float],
) -> None:
    """Print the deletion's figures and the probe's latency percentiles."""
    lat = sorted(latencies)
    pct = statistics.quantiles(lat, n=1000)
    print(f"server: redis-server {version}, batch {batch}")  # noqa: T201
    print(f"keys before: {before:,}; removed: {removed:,}; left: {left:,}")  # noqa: T201
    print(f"invalidate_pattern('user:*'): {elapsed:.2f} s")  # noqa: T201
    print(  # noqa: T201
        f"probe GETs during it: {len(lat):,}; p50 {pct[499] * 1e3:.3f} ms, "
        f"p99 {pct[989] * 1e3:.3f} ms, p99.9 {pct[998] * 1e3:.3f} ms, max {lat[-1] * 1e3:.3f} ms"
    )


def report_server(stats: dict[str, dict[str, float]], slow: list[dict[str, int]]) -> None:
    """Print what the server itself saw: per-call cost and calls slower than 1 ms."""
    for name in ("cmdstat_scan", "cmdstat_unlink"):
        figures = stats.get(name, {})
        print(  # noqa: T201
            f"{name[8:].upper()}: {figures.get('calls', 0):,.0f} calls, "
            f"{figures.get('usec_per_call', 0):.0f} µs per call on the server"
        )
    slowest = max((entry["duration"] for entry in slow), default=0)
    print(f"server calls over 1 ms: {len(slow)}; slowest {slowest / 1000:.2f} ms")  # noqa: T201


def main() -> int:
    """Run the measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--others", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=500, help="SCAN COUNT / UNLINK batch")
    options = parser.parse_args()
    binary = find_redis_server()
    if binary is None:
        print("redis-server not found")  # noqa: T201
        return 1
    with RedisServer(binary) as server:
        client = redis.Redis.from_url(server.url)
        fill(client, "app:user:", options.keys)
        fill(client, "app:course:", options.others // 2)
        fill(client, "other:user:", options.others - options.others // 2)
        version = client.info("server")["redis_version"]
        total_before = client.dbsize()
        client.config_set("slowlog-log-slower-than", 1000)  # µs: log calls over 1 ms
        client.slowlog_reset()
        client.config_resetstat()

        latencies: list[float] = []
        stop = threading.Event()

        def probe() -> None:
            prober = redis.Redis.from_url(server.url)
            while not stop.is_set():
                started = time.perf_counter()
                prober.get("app:course:1")
                latencies.append(time.perf_counter() - started)
            prober.close()

        cache = Cache.from_url(server.url, key_prefix="app:", socket_timeout=5.0)
        thread = threading.Thread(target=probe)
        thread.start()
        started = time.perf_counter()
        removed = cache.invalidate_pattern("user:*", batch_size=options.batch)
        elapsed = time.perf_counter() - started
        stop.set()
        thread.join()

        stats = client.info("commandstats")
        slow = client.slowlog_get(128)
        survivors = client.dbsize()
        cache.close()
        client.close()

    report(version, options.batch, total_before, removed, survivors, elapsed, latencies)
    report_server(stats, slow)
    assert removed == options.keys, "every matching key removed"
    assert survivors == options.others, "no key outside the pattern touched"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
