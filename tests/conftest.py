"""Shared fixtures: the session's redis-server and the backend over memory, fakeredis and Redis."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
import redis
from hypothesis import HealthCheck, settings

from kirocache.backends._config import (
    ENV_CACHE_DEBUG,
    ENV_REDIS_DB,
    ENV_REDIS_PASSWORD,
    ENV_REDIS_URL,
)
from redis_server import BlackholeServer, RedisServer, find_redis_server

if TYPE_CHECKING:
    from kirocache import Cache
    from kirocache.testing.conformance import FullBackend

# Hypothesis: a quick profile for the inner loop, a thorough and repeatable one for CI.
# HYPOTHESIS_PROFILE picks one by name; CI=true picks "ci".
settings.register_profile(
    "ci",
    max_examples=100,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)
HYPOTHESIS_EXAMPLES: int = settings().max_examples
"""How many examples a hypothesis test runs under the loaded profile."""

REQUIRE_REDIS = "KIROCACHE_REQUIRE_REDIS"
REDIS_ENV = (ENV_REDIS_URL, ENV_REDIS_PASSWORD, ENV_REDIS_DB, ENV_CACHE_DEBUG)
# Tests asking for any of these need the real server, so `-m "not real_redis"` drops them.
REAL_REDIS_FIXTURES = frozenset({"redis_server", "redis_url", "fault_redis", "make_redis_server"})


def redis_binary() -> str:
    """The redis-server binary, or skip (fail under KIROCACHE_REQUIRE_REDIS=1) without one."""
    binary = find_redis_server()
    if binary is None:
        configured = os.environ.get("KIROCACHE_REDIS_SERVER")
        if configured:
            no_redis(f"KIROCACHE_REDIS_SERVER={configured!r} is not an executable file")
        no_redis("redis-server not found on PATH and KIROCACHE_REDIS_SERVER is not set")
    return binary


def no_redis(reason: str) -> NoReturn:
    """Skip the test, or fail it when the environment requires the real server."""
    if os.environ.get(REQUIRE_REDIS) == "1":
        pytest.fail(f"{reason} ({REQUIRE_REDIS}=1 requires a real redis-server)", pytrace=False)
    pytest.skip(reason)


# -- parallel runs -----------------------------------------------------------------------------
# Most of the suite waits (on servers, subprocesses and short real TTLs) rather than computes,
# so pyproject's addopts run it on pytest-xdist workers, two a core (`--numprocesses=auto
# --dist=worksteal`). Each worker is a process with its own session fixtures: its own
# redis-server (and, if its tests need them, its own cluster and Sentinel) on free ports, and
# its own temp dirs. Tests named by path run in one process unless `-n` is given.


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Under ``-p no:xdist``, accept the addopts' xdist options (and run in one process)."""
    if pluginmanager.has_plugin("xdist"):
        return
    group = parser.getgroup("xdist (not loaded)")
    group.addoption("--numprocesses", help="ignored: pytest-xdist is not loaded")
    group.addoption("--dist", help="ignored: pytest-xdist is not loaded")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Tests named by path, without ``-n`` on the command line, run in one process.

    One file's tests finish sooner in one process than after starting workers. ``-n 0`` (or
    ``-p no:xdist``) runs the whole suite in one process, for a debugger or print-debugging.
    """
    if hasattr(config, "workerinput") or not config.pluginmanager.has_plugin("xdist"):
        return  # a worker itself, or pytest-xdist is not there
    given = config.invocation_params.args
    asked = any(arg.startswith(("-n", "--numprocesses")) for arg in given)
    if config.args_source is pytest.Config.ArgsSource.ARGS and not asked:
        config.option.numprocesses = 0


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """Two workers a core (at most 8); ``PYTEST_XDIST_AUTO_NUM_WORKERS`` sets the number."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # pytest-xdist's own hook reads it
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(2 * (cores or 1), 8)


# -- tests that run alone ----------------------------------------------------------------------
# A test marked `alone` runs while no other worker runs a test: the throughput tests count
# calls that failed open under the default deadline, which other workers' CPU use would
# change. Every test holds a shared lock on a file of the run from setup to teardown; an
# `alone` test holds it exclusively, after taking a turnstile that keeps the others from
# starting meanwhile (without it, a waiting `alone` test could wait forever).

_LOCKS = "kirocache_test_locks"
_LOCK_DIR = pytest.StashKey["tempfile.TemporaryDirectory[str]"]()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Give every pytest-xdist worker the run's lock directory."""
    stash = node.config.stash
    if _LOCK_DIR not in stash:
        stash[_LOCK_DIR] = tempfile.TemporaryDirectory(prefix="kirocache-tests-")
    node.workerinput[_LOCKS] = stash[_LOCK_DIR].name


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the run's lock directory (the controller's)."""
    if _LOCK_DIR in config.stash:
        config.stash[_LOCK_DIR].cleanup()


@contextlib.contextmanager
def _turn(directory: Path, *, alone: bool) -> Iterator[None]:
    import fcntl

    with (directory / "turnstile").open("a") as turnstile, (directory / "room").open("a") as room:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        if alone:
            fcntl.flock(room, fcntl.LOCK_EX)
        else:
            fcntl.flock(room, fcntl.LOCK_SH)
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(room, fcntl.LOCK_UN)
            fcntl.flock(turnstile, fcntl.LOCK_UN)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """On a worker, run ``item`` under the run's lock: shared, or exclusive if ``alone``."""
    workerinput = getattr(item.config, "workerinput", {})
    if _LOCKS not in workerinput:
        return (yield)
    alone = item.get_closest_marker("alone") is not None
    with _turn(Path(workerinput[_LOCKS]), alone=alone):
        return (yield)


# tryfirst: run before pytest's own `-m` selection, so the markers added here count.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests that use the real server; drop the memory run of Redis-only tests."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if REAL_REDIS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_redis)
        callspec = getattr(item, "callspec", None)
        on_memory = callspec is not None and callspec.params.get("backend") == "memory"
        if on_memory and item.get_closest_marker("redis_only") is not None:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole session, on a free loopback port."""
    server = RedisServer(redis_binary())
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the session's redis-server (database 0)."""
    return redis_server.url


@pytest.fixture
def make_redis_server() -> Iterator[Callable[..., RedisServer]]:
    """Start dedicated redis-servers (``RedisServer`` options); all stop after the test."""
    binary = redis_binary()
    servers: list[RedisServer] = []

    def make(**options: Any) -> RedisServer:
        server = RedisServer(binary, **options)
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def fault_redis(make_redis_server: Callable[..., RedisServer]) -> RedisServer:
    """A redis-server of the test's own, which the test may stop and restart."""
    return make_redis_server()


@pytest.fixture
def blackhole() -> Iterator[BlackholeServer]:
    """A TCP server that accepts connections and never answers."""
    with BlackholeServer() as server:
        yield server


def _memory_backend(request: pytest.FixtureRequest) -> FullBackend:
    from kirocache.backends.memory import MemoryBackend

    return MemoryBackend()


def _fakeredis_backend(request: pytest.FixtureRequest) -> FullBackend:
    import fakeredis

    from kirocache.backends.redis import RedisBackend

    server = fakeredis.FakeServer()
    return RedisBackend.from_clients(
        fakeredis.FakeRedis(server=server),
        lambda: fakeredis.FakeAsyncRedis(server=server),
        name="fakeredis",
    )


def _real_backend(request: pytest.FixtureRequest) -> FullBackend:
    from kirocache.backends.redis import RedisBackend

    url: str = request.getfixturevalue("redis_url")
    with redis.Redis.from_url(url) as raw:
        raw.flushdb()  # the fixture's clean slate; the library itself never flushes
    with pytest.MonkeyPatch.context() as env:
        for name in REDIS_ENV:  # a developer's REDIS_PASSWORD must not reach this server
            env.delenv(name, raising=False)
        # The behaviour tests run on a shared, loaded CI machine: a generous deadline keeps
        # scheduling stalls from reading as outages. The deadline itself is tested with its
        # default in tests/test_deadline.py.
        return RedisBackend(url, timeout=2.0)


_BACKENDS = {"memory": _memory_backend, "fakeredis": _fakeredis_backend, "redis": _real_backend}


@pytest.fixture(
    params=[
        pytest.param("memory"),
        pytest.param("fakeredis"),
        pytest.param("redis", marks=pytest.mark.real_redis),
    ]
)
def backend(request: pytest.FixtureRequest) -> Iterator[FullBackend]:
    """A fresh, empty backend serving sync and async code: memory, fakeredis or Redis.

    Sync connections are closed after the test; asyncio ones belong to the test's event
    loop and are closed by the backend when that loop shuts down.
    """
    made = _BACKENDS[request.param](request)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def cache(backend: FullBackend) -> Cache:
    """A ``Cache`` over each backend (shadows pytest's own ``cache``, which we do not use)."""
    from kirocache import Cache

    return Cache(backend)
