"""Run in a separate process by test_tiered: a reader whose local copies another one invalidates."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, cast

import redis

from kirocache import Cache, cached
from kirocache.backends import TieredBackend


def profile_function(
    cache: Cache, raw: redis.Redis, db_key: str
) -> Callable[[int], dict[str, int]]:
    """A cached loader of a "profile" whose version lives at ``db_key`` (the "database")."""

    @cached(prefix="profile:", cache=cache)
    def profile(user_id: int) -> dict[str, int]:
        raw.incr(db_key + ":calls")
        return {"id": user_id, "version": int(raw.get(db_key) or 0)}

    return profile


def raw_client(url: str) -> redis.Redis:
    """A plain client of the "database": one node's, or a cluster's (by its first seed)."""
    if "+cluster://" not in url:
        return redis.Redis.from_url(url)
    host, _, port = url.partition("://")[2].split(",")[0].rpartition(":")
    return cast("redis.Redis", redis.RedisCluster(host=host, port=int(port)))


def reader(
    url: str,
    channel: str,
    key_prefix: str,
    db_key: str,
    conn: Connection,
    options: dict[str, Any] | None = None,
) -> None:
    """Cache profile 7, report, then wait for the parent's invalidation to show.

    ``options`` go to the ``TieredBackend`` (``invalidation="tracking"`` for the near cache).
    """
    try:
        _read(url, channel, key_prefix, db_key, conn, options or {})
    except BaseException:
        conn.send({"error": traceback.format_exc()})
        raise
    finally:
        conn.close()


def _read(
    url: str,
    channel: str,
    key_prefix: str,
    db_key: str,
    conn: Connection,
    options: dict[str, Any],
) -> None:
    backend = TieredBackend.from_url(url, channel=channel, local_ttl=60, **options)
    cache = Cache(backend, key_prefix=key_prefix)
    raw = raw_client(url)
    try:
        connected = backend.wait_connected(10)
        profile = profile_function(cache, raw, db_key)
        # The first call computes and stores, the second copies the entry into the local
        # layer, the third finds it there.
        first, again, _ = profile(7), profile(7), profile(7)
        hits = backend.stats().extra["local_hits"]
        deadline = time.monotonic() + 10
        # With tracking the server also announces this process's own write, and a copy read
        # while that message is on its way is not kept: read until one is.
        while not hits and time.monotonic() < deadline:
            again = profile(7)
            hits = backend.stats().extra["local_hits"]
        conn.send({"connected": connected, "first": first, "again": again, "local_hits": hits})
        conn.recv()  # the parent changed the database and invalidated the entry
        deadline = time.monotonic() + 10
        latest = profile(7)
        while latest["version"] != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
            latest = profile(7)
        conn.send({"latest": latest, "applied": backend.messages_applied})
    finally:
        cache.close()
        raw.close()
