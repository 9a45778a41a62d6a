"""What the admin app's tests share: tokens, a served cache and its ASGI client."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import redis

from kirocache import Cache
from kirocache.backends import MemoryBackend
from kirocache.backends.redis import RedisBackend
from kirocache.keys import Namespace
from kirocache.testing import ManualClock
from kirocache.web import admin_app

ADMIN = "admin-secret-0123456789abcdef"
READ = "read-secret-0123456789abcdef"
REVEAL = "reveal-secret-0123456789abcd"
USERS = Namespace("user:", ttl=600)
FEED = Namespace("feed:", bumpable=True)
SEARCH = Namespace("search:", ttl=60)
CALLERS: dict[str, str | None] = {
    "none": None,
    "wrong": "wrong-secret-0123456789abcdef",
    "read": READ,
    "reveal": REVEAL,
    "admin": ADMIN,
}
RANK = {"read": 0, "reveal": 1, "admin": 2}
# (method, path, body, the scope it needs)
ROUTES: list[tuple[str, str, Any, str]] = [
    ("GET", "/api/cache/metrics", None, "read"),
    ("GET", "/metrics", None, "read"),
    ("GET", "/api/cache/health", None, "read"),
    ("GET", "/api/cache/alerts", None, "read"),
    ("GET", "/api/cache/invalidations", None, "read"),
    ("GET", "/api/cache/session", None, "read"),
    ("GET", "/api/cache/keys?pattern=user:*", None, "read"),
    ("GET", "/api/cache/keys/user:1", None, "read"),
    ("GET", "/api/cache/keys/user:1?reveal=1", None, "reveal"),
    ("POST", "/api/cache/invalidate", {"key": "user:2"}, "admin"),
    ("POST", "/api/cache/cleanup", None, "admin"),
]


def auth(secret: str | None) -> dict[str, str]:
    """The Authorization header of a bearer token (none for ``None``)."""
    return {} if secret is None else {"Authorization": f"Bearer {secret}"}


def make_cache(kind: str, redis_url: str | None, clock: ManualClock | None = None) -> Cache:
    """A cache with key prefix ``app:`` and three namespaces on memory or the real server."""
    if kind == "redis":
        assert redis_url is not None
        with redis.Redis.from_url(redis_url) as raw:
            raw.flushdb()  # the test's clean slate; the library never flushes
        backend: Any = RedisBackend(redis_url)
    else:
        backend = MemoryBackend()
    return Cache(backend, key_prefix="app:", namespaces=[USERS, FEED, SEARCH], clock=clock)


def traffic(cache: Cache, hits: int = 3, misses: int = 1) -> None:
    """Some reads and writes, so the metrics have figures."""
    cache.set("user:1", {"name": "Ada"}, tags=["team:red"])
    cache.set("user:2", {"name": "Bob"}, tags=["team:red"])
    cache.set("search:q", ["a", "b"])
    for _ in range(hits):
        cache.get("user:1")
    for i in range(misses):
        cache.get(f"user:missing{i}")


@asynccontextmanager
async def client_of(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to ``app`` through its ASGI interface."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def standard_app(cache: Cache, **options: Any) -> Any:
    """The app of most tests: an admin, a read and a reveal token."""
    options.setdefault("tokens", {"viewer": (REVEAL, "reveal")})
    return admin_app(cache, token=ADMIN, read_token=READ, **options)


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run ``app`` on uvicorn on a free loopback port in a thread; yields its base URL.

    ``log_config=None`` leaves logging alone, so uvicorn's records (its access log
    included) reach the test's handlers. The server is stopped through its handle.
    """
    import uvicorn

    from redis_server import free_port

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            msg = "uvicorn did not start"
            raise RuntimeError(msg)
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        assert not thread.is_alive(), "uvicorn did not stop"
