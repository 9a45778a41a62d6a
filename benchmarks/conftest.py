"""Shared fixtures of the benchmarks: one redis-server, one event loop, and the run's context.

The report (``tools/bench_report.py``) reads what the hooks below add to pytest-benchmark's
JSON: the redis-server version, the versions of kirocache and of every peer, the CPU count
and the load average before and after the run (a busy machine is marked as such).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import redis

# the test suite's throwaway server, reused rather than copied
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_server import RedisServer, find_redis_server

LIBRARIES = (
    "kirocache",
    "redis",
    "hiredis",
    "orjson",
    "msgspec",
    "xxhash",
    "cachetools",
    "dogpile.cache",
    "aiocache",
    "cashews",
    "pytest-benchmark",
)

_load_at_start: tuple[float, float, float] | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _load_at_start  # noqa: PLW0603 - read by the JSON hook at the end of the run
    _load_at_start = os.getloadavg()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The peers call redis-py methods that redis-py 5+ deprecates (setex, close); that is
    # theirs to fix and must not fail our run, whose warnings are otherwise errors.
    for item in items:
        item.add_marker(pytest.mark.filterwarnings("ignore:Call to deprecated:DeprecationWarning"))


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _versions() -> dict[str, str | None]:
    return {name: _version(name) for name in LIBRARIES}


def _redis_server_version() -> str | None:
    binary = find_redis_server()
    if binary is None:
        return None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    for word in out.stdout.split():
        if word.startswith("v="):
            return word[2:]
    return out.stdout.strip() or None


def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any]
) -> None:
    machine_info["cpu_count"] = os.cpu_count()
    machine_info["redis_server"] = _redis_server_version()
    machine_info["versions"] = _versions()


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]
) -> None:
    output_json["load"] = {"start": _load_at_start, "end": os.getloadavg()}


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of the benchmarks' own, on a free loopback port."""
    binary = find_redis_server()
    if binary is None:
        pytest.skip("redis-server not found on PATH and KIROCACHE_REDIS_SERVER is not set")
    with RedisServer(binary) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client on an empty database (emptied again afterwards)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def flushed(raw_redis: redis.Redis) -> None:
    """The benchmarks' Redis database, empty before and after the test."""


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    """Cleanups of the participants a test builds, run when it ends."""
    with ExitStack() as made:
        yield made


@pytest.fixture(scope="session")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for every async case; clients bound to it are closed by their tests."""
    made = asyncio.new_event_loop()
    yield made
    made.run_until_complete(made.shutdown_asyncgens())
    made.close()
