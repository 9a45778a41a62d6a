"""Run in separate processes by test_decorators: a distributed-lock stampede on one key."""

from __future__ import annotations

import time

import redis

from kirocache import Cache, cached


def stampede(url: str, start_at: float) -> int:
    """Call a cold ``lock="distributed"`` function once; count real calls in Redis."""
    cache = Cache.from_url(url)
    raw = redis.Redis.from_url(url)

    @cached(prefix="stampede:", cache=cache, lock="distributed", lock_timeout=10)
    def expensive(x: int) -> int:
        raw.incr("stampede-calls")
        time.sleep(0.3)
        return x * 2

    time.sleep(max(0.0, start_at - time.time()))  # start together
    try:
        return expensive(21)
    finally:
        cache.close()
        raw.close()
