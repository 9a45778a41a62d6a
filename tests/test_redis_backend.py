"""What is Redis-specific about RedisBackend: URLs, auth, TLS, pools, loops, timeouts, faults."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from kirocache.backends._config import Settings, mask_url, parse_redis_url, settings_from_env
from kirocache.backends._protocol import Op
from kirocache.backends.redis import RedisBackend
from kirocache.exceptions import BackendError, CommandError, ConfigurationError
from redis_server import BlackholeServer, RedisServer, RedisServerError, tls_files

MakeServer = Callable[..., RedisServer]
REDIS_ENV = ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB", "CACHE_DEBUG")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in REDIS_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def k() -> str:
    return f"kirocache-test:{uuid.uuid4().hex}:"


@pytest.fixture
def make_backend() -> Iterator[Callable[..., RedisBackend]]:
    """Build backends that are closed (sync side) after the test."""
    made: list[RedisBackend] = []

    def make(*args: Any, **options: Any) -> RedisBackend:
        backend = RedisBackend(*args, **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


def clients_named(client: redis.Redis, name: str) -> int:
    return sum(1 for entry in client.client_list() if entry.get("name") == name)


async def server_sleeps(client: redis.asyncio.Redis, seconds: float) -> None:
    """Block the whole server for ``seconds`` (DEBUG SLEEP), as a slow command would."""
    await client.execute_command("DEBUG", "SLEEP", str(seconds))  # type: ignore[no-untyped-call]


def eventually(condition: Callable[[], bool], within: float = 5.0) -> bool:
    """Poll ``condition`` until true; a correctness bound, not a speed measure."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- settings and URLs (no server) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://alice:hunter2@h/1", "redis://alice:***@h/1"),
        ("rediss://alice:p%40ss@h:6380", "rediss://alice:***@h:6380"),
        ("unix://:hunter2@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
        (
            "unix:///run/redis.sock?db=1&password=hunter2",
            "unix:///run/redis.sock?db=1&password=***",
        ),
        ("redis://alice@h:6379/0", "redis://alice@h:6379/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("redis://:hunter2@[::1", "redis://:***@[::1"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_settings_from_env() -> None:
    env = {"REDIS_URL": "redis://h/2", "REDIS_PASSWORD": "pw", "REDIS_DB": "3", "CACHE_DEBUG": "1"}
    assert settings_from_env(env) == Settings("redis://h/2", "pw", 3, debug=True)
    assert settings_from_env({}) == Settings()
    assert "pw" not in repr(settings_from_env(env))


@pytest.mark.parametrize(
    ("value", "debug"),
    [
        ("1", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("no", False),
        ("", False),
    ],
)
def test_cache_debug_truthy_values(value: str, debug: bool) -> None:
    assert settings_from_env({"CACHE_DEBUG": value}).debug is debug


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_URL": "http://h:6379"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://h:notaport"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://h/abc"}, "REDIS_URL"),
        ({"REDIS_DB": "abc"}, "REDIS_DB"),
        ({"REDIS_DB": "-1"}, "REDIS_DB"),
    ],
)
def test_bad_environment_names_the_variable(
    env: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        settings_from_env(env)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=named):
        RedisBackend()


@pytest.mark.parametrize(
    ("args", "options", "match"),
    [
        (("memcached://h",), {}, "redis://, rediss:// or unix://"),
        (("redis://h/x",), {}, "db"),
        (("redis://h?socket_timeout=soon",), {}, "socket_timeout"),
        (("unix://",), {}, "socket path"),
        (("redis://h",), {"db": -1}, "db"),
        (("redis://h",), {"socket_timeout": 0}, "socket_timeout"),
        (("redis://h",), {"connect_timeout": "fast"}, "connect_timeout"),
        (("redis://h",), {"max_connections": 0}, "max_connections"),
        (("redis://h",), {"retries": -1}, "retries"),
        (("redis://h",), {"ssl_ca_certs": "/ca.pem"}, "rediss://"),
    ],
)
def test_bad_url_or_options(args: tuple[str], options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RedisBackend.from_url(*args, **options)


def test_url_parts() -> None:
    parsed = parse_redis_url("rediss://alice:p%40ss@cache.example:6380/4?client_name=web")
    assert (parsed.scheme, parsed.host, parsed.port, parsed.db) == (
        "rediss",
        "cache.example",
        6380,
        4,
    )
    assert (parsed.username, parsed.password, parsed.client_name) == ("alice", "p@ss", "web")
    assert parsed.tls
    socket_url = parse_redis_url("unix:///run/redis.sock?db=2&password=pw")
    assert (socket_url.path, socket_url.db, socket_url.password) == ("/run/redis.sock", 2, "pw")


def test_repr_shows_the_effective_url_masked() -> None:
    backend = RedisBackend("rediss://alice:hunter2@cache.example:6380/1")
    assert repr(backend) == "RedisBackend('rediss://alice:***@cache.example:6380/1')"
    backend = RedisBackend("redis://cache.example", password="hunter2", db=3)
    assert repr(backend) == str(backend) == "RedisBackend('redis://:***@cache.example:6379/3')"
    assert repr(RedisBackend("unix:///run/r.sock")) == "RedisBackend('unix:///run/r.sock?db=0')"


def test_rediss_builds_an_ssl_pool_with_the_options() -> None:
    backend = RedisBackend(
        "rediss://cache.example:6380/1",
        ssl_ca_certs="/etc/ca.pem",
        ssl_certfile="/etc/client.pem",
        ssl_keyfile="/etc/client.key",
        max_connections=7,
        socket_timeout=dt.timedelta(milliseconds=300),
        health_check_interval=5,
    )
    pool = backend._client.connection_pool  # the pool is what this test is about
    assert isinstance(pool, redis.BlockingConnectionPool)
    # redis-py's class, bounded by the call's deadline (issue 12, item 10)
    assert issubclass(pool.connection_class, redis.SSLConnection)
    assert pool.max_connections == 7
    settings = pool.connection_kwargs
    assert settings["ssl_ca_certs"] == "/etc/ca.pem"
    assert (settings["ssl_certfile"], settings["ssl_keyfile"]) == (
        "/etc/client.pem",
        "/etc/client.key",
    )
    assert settings["ssl_cert_reqs"] == "required"
    assert (settings["host"], settings["port"], settings["db"]) == ("cache.example", 6380, 1)
    assert settings["socket_timeout"] == pytest.approx(0.3)
    assert settings["health_check_interval"] == 5
    backend.close()


# -- URLs and settings against the real server -----------------------------------------------


def test_db_from_url_and_argument(
    redis_server: RedisServer, make_backend: Callable[..., RedisBackend], k: str
) -> None:
    base = f"redis://127.0.0.1:{redis_server.port}"
    make_backend(f"{base}/3").set(k + "url", b"3")
    make_backend(f"{base}/3", db=4).set(k + "arg", b"4")
    with (
        redis.Redis(port=redis_server.port, db=3) as db3,
        redis.Redis(port=redis_server.port, db=4) as db4,
    ):
        assert db3.get(k + "url") == b"3"
        assert db3.get(k + "arg") is None
        assert db4.get(k + "arg") == b"4"


def test_environment_gives_url_db_and_password(
    make_redis_server: MakeServer,
    make_backend: Callable[..., RedisBackend],
    monkeypatch: pytest.MonkeyPatch,
    k: str,
) -> None:
    server = make_redis_server(password="env-secret")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{server.port}")
    monkeypatch.setenv("REDIS_DB", "5")
    with pytest.raises(BackendError, match=r"(?i)auth"):
        make_backend().set(k, b"no password yet")
    monkeypatch.setenv("REDIS_PASSWORD", "env-secret")
    backend = make_backend()
    assert backend.set(k, b"from env")
    assert repr(backend) == f"RedisBackend('redis://:***@127.0.0.1:{server.port}/5')"
    with redis.Redis(port=server.port, db=5, password="env-secret") as db5:
        assert db5.get(k) == b"from env"
    # an argument beats the environment
    assert make_backend(f"redis://127.0.0.1:{server.port}", db=6).set(k, b"arg")
    with redis.Redis(port=server.port, db=6, password="env-secret") as db6:
        assert db6.get(k) == b"arg"


async def test_unix_socket(
    make_redis_server: MakeServer, make_backend: Callable[..., RedisBackend], k: str
) -> None:
    server = make_redis_server(unix_socket=True)
    backend = make_backend(f"unix://{server.unix_socket_path}?db=2")
    assert backend.set(k + "sync", b"s")
    assert await backend.aset(k + "async", b"a")
    assert await backend.aget(k + "sync") == b"s"
    with redis.Redis(port=server.port, db=2) as db2:
        assert db2.mget([k + "sync", k + "async"]) == [b"s", b"a"]


async def test_acl_user(
    make_redis_server: MakeServer, make_backend: Callable[..., RedisBackend], k: str
) -> None:
    server = make_redis_server(acl_user=("alice", "alice-secret"))
    in_url = make_backend(f"redis://alice:alice-secret@127.0.0.1:{server.port}/0")
    assert in_url.set(k, b"v")
    assert await in_url.aget(k) == b"v"
    as_args = make_backend(
        f"redis://127.0.0.1:{server.port}", username="alice", password="alice-secret"
    )
    assert as_args.get(k) == b"v"
    wrong = make_backend(f"redis://alice:not-alices-secret@127.0.0.1:{server.port}/0")
    with pytest.raises(BackendError) as caught:
        wrong.get(k)
    assert isinstance(caught.value.__cause__, redis.AuthenticationError)


@pytest.mark.parametrize("where", ["url", "argument"])
async def test_password_never_in_repr_or_errors(
    make_redis_server: MakeServer, make_backend: Callable[..., RedisBackend], where: str
) -> None:
    server = make_redis_server(password="the-real-one")
    secret = "wrong-s3cret-Zq9"
    if where == "url":
        backend = make_backend(f"redis://:{secret}@127.0.0.1:{server.port}/0")
    else:
        backend = make_backend(f"redis://127.0.0.1:{server.port}/0", password=secret)
    with pytest.raises(BackendError) as sync_error:
        backend.get("k")
    with pytest.raises(BackendError) as async_error:
        await backend.aget("k")
    for error in (sync_error.value, async_error.value):
        assert isinstance(error.__cause__, redis.AuthenticationError)
        text = "".join(traceback.format_exception(error))  # the chained cause included
        assert "Authentication" in text
        assert secret not in text
    assert secret not in repr(backend)
    assert secret not in str(backend)


# -- TLS ------------------------------------------------------------------------------------


async def test_tls_round_trip(
    make_redis_server: MakeServer, make_backend: Callable[..., RedisBackend], tmp_path: Path, k: str
) -> None:
    files = tls_files(tmp_path)
    try:
        server = make_redis_server(tls=files)
    except RedisServerError as exc:
        if "Bad directive" not in str(exc):
            raise
        # test_rediss_builds_an_ssl_pool_with_the_options covers the client side alone.
        pytest.skip("this redis-server is built without TLS")
    backend = make_backend(server.url, ssl_ca_certs=files.ca)
    assert backend.set(k, b"over tls")
    assert await backend.aget(k) == b"over tls"
    untrusted = make_backend(server.url)  # the system CAs do not know the test CA
    with pytest.raises(BackendError, match=r"(?i)certificate"):
        untrusted.get(k)
    plain = make_backend(f"redis://localhost:{server.port}/0")
    with pytest.raises(BackendError):
        plain.get(k)


# -- timeouts, pools ----------------------------------------------------------------------------


def test_hanging_server_costs_one_bounded_timeout(
    blackhole: BlackholeServer, make_backend: Callable[..., RedisBackend]
) -> None:
    backend = make_backend(blackhole.url, socket_timeout=0.3)
    start = time.monotonic()
    with pytest.raises(BackendError, match="Timeout") as caught:
        backend.get("k")
    assert time.monotonic() - start < 3  # bounded by the timeout, not by a retry storm
    assert isinstance(caught.value.__cause__, redis.TimeoutError)


async def test_hanging_server_costs_one_bounded_timeout_async(
    blackhole: BlackholeServer, make_backend: Callable[..., RedisBackend]
) -> None:
    backend = make_backend(blackhole.url, socket_timeout=0.3)
    start = time.monotonic()
    with pytest.raises(BackendError, match="Timeout") as caught:
        await backend.aget("k")
    assert time.monotonic() - start < 3
    assert isinstance(caught.value.__cause__, redis.TimeoutError)


async def test_pool_is_bounded_async(
    redis_url: str, raw: redis.Redis, make_backend: Callable[..., RedisBackend], k: str
) -> None:
    name = f"bounded-{uuid.uuid4().hex[:8]}"
    backend = make_backend(redis_url, max_connections=3, client_name=name, pool_timeout=5)
    await backend.aset(k, b"v")
    assert await asyncio.gather(*(backend.aget(k) for _ in range(30))) == [b"v"] * 30
    assert 1 <= clients_named(raw, name) <= 3


def test_pool_is_bounded_across_threads(
    redis_url: str, raw: redis.Redis, make_backend: Callable[..., RedisBackend], k: str
) -> None:
    name = f"bounded-{uuid.uuid4().hex[:8]}"
    backend = make_backend(redis_url, max_connections=2, client_name=name, pool_timeout=5)
    backend.set(k, b"v")
    results: list[bytes | None] = []

    def reader() -> None:
        results.extend(backend.get(k) for _ in range(50))

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [b"v"] * 400
    assert 1 <= clients_named(raw, name) <= 2


async def test_exhausted_pool_raises_after_pool_timeout(
    redis_url: str, make_backend: Callable[..., RedisBackend], k: str
) -> None:
    backend = make_backend(redis_url, max_connections=1, pool_timeout=0.1, socket_timeout=5)
    await backend.aset(k, b"v")
    async with redis.asyncio.Redis.from_url(redis_url) as busy:
        sleeper = asyncio.create_task(server_sleeps(busy, 0.5))
        await asyncio.sleep(0.05)
        holder = asyncio.create_task(backend.aget(k))  # takes the only connection, waits
        await asyncio.sleep(0.05)
        with pytest.raises(BackendError, match=r"(?i)connection"):
            await backend.aget(k)
        assert await holder == b"v"
        await sleeper


# -- event loops and cancellation -----------------------------------------------------------


def test_one_backend_across_repeated_asyncio_run(
    redis_url: str, raw: redis.Redis, make_backend: Callable[..., RedisBackend], k: str
) -> None:
    name = f"loops-{uuid.uuid4().hex[:8]}"
    backend = make_backend(redis_url, client_name=name)

    async def round_trip(i: int) -> bytes | None:
        await backend.aset(f"{k}{i}", b"%d" % i)
        return await backend.aget(f"{k}{i}")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(5):
            assert asyncio.run(round_trip(i)) == b"%d" % i
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert eventually(lambda: clients_named(raw, name) == 0)  # each loop closed its own


def test_threads_each_with_their_own_loop(
    redis_url: str, raw: redis.Redis, make_backend: Callable[..., RedisBackend], k: str
) -> None:
    name = f"threads-{uuid.uuid4().hex[:8]}"
    backend = make_backend(redis_url, client_name=name)
    errors: list[BaseException] = []

    async def work(n: int) -> None:
        for i in range(25):
            key = f"{k}{n}:{i}"
            await backend.aset(key, key.encode())
            assert await backend.aget(key) == key.encode()
            assert backend.get(key) == key.encode()  # the sync side, shared by all threads

    def run(n: int) -> None:
        try:
            asyncio.run(work(n))
        except BaseException as exc:  # reported below, with the thread's own traceback
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert backend.get_many([f"{k}{n}:24" for n in range(4)]) == [
        f"{k}{n}:24".encode() for n in range(4)
    ]
    backend.close()
    assert eventually(lambda: clients_named(raw, name) == 0)


async def test_cancelled_call_leaves_no_reply_behind(
    redis_url: str, make_backend: Callable[..., RedisBackend], k: str
) -> None:
    backend = make_backend(redis_url, socket_timeout=5)
    await backend.aset(k + "a", b"value of a")
    await backend.aset(k + "b", b"value of b")
    async with redis.asyncio.Redis.from_url(redis_url) as busy:
        for _ in range(3):
            sleeper = asyncio.create_task(server_sleeps(busy, 0.3))
            await asyncio.sleep(0.05)  # the server is asleep now
            victim = asyncio.create_task(backend.aget(k + "a"))
            await asyncio.sleep(0.05)  # GET a was sent on a pooled connection, no reply yet
            victim.cancel()
            with pytest.raises(asyncio.CancelledError):
                await victim
            assert await backend.aget(k + "b") == b"value of b"
            await sleeper


# -- the server going away ---------------------------------------------------------------------


def test_stopped_server_raises_then_recovers_by_itself(
    fault_redis: RedisServer, make_backend: Callable[..., RedisBackend], k: str
) -> None:
    backend = make_backend(fault_redis.url)
    assert backend.set(k, b"before")
    fault_redis.stop()
    with pytest.raises(BackendError) as caught:
        backend.get(k)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    fault_redis.restart()
    assert backend.get(k) is None  # persistence is off: the restart lost the data
    assert backend.set(k, b"after")
    assert backend.get(k) == b"after"


async def test_stopped_server_raises_then_recovers_by_itself_async(
    fault_redis: RedisServer, make_backend: Callable[..., RedisBackend], k: str
) -> None:
    backend = make_backend(fault_redis.url)
    assert await backend.aset(k, b"before")
    fault_redis.stop()
    with pytest.raises(BackendError) as caught:
        await backend.aget(k)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    fault_redis.restart()
    assert await backend.aget(k) is None
    assert await backend.aset(k, b"after")
    assert await backend.aget(k) == b"after"


async def test_restart_between_calls_is_invisible(
    fault_redis: RedisServer, make_backend: Callable[..., RedisBackend], k: str
) -> None:
    backend = make_backend(fault_redis.url)
    assert backend.set(k, b"v")
    assert await backend.aset(k, b"v")
    fault_redis.restart()  # every pooled connection is now dead
    assert backend.set(k, b"sync")
    assert await backend.aget(k) == b"sync"


@pytest.mark.slow
def test_a_batch_after_a_restart_is_sent_again_on_a_fresh_connection(
    fault_redis: RedisServer, make_backend: Callable[..., RedisBackend], k: str
) -> None:
    backend = make_backend(fault_redis.url)
    ops = [Op("set", k + "a", b"1"), Op("incr", k + "n", amount=1), Op("get", k + "a")]
    assert backend.execute(ops) == [True, 1, b"1"]  # its connection is now held, idle
    fault_redis.restart()  # ...and dead: nothing of the batch reached the server on it
    assert backend.execute(ops) == [True, 1, b"1"]


@pytest.mark.parametrize("answered", [0, 1], ids=["before-its-first-reply", "mid-reply"])
def test_a_batch_cut_off_is_not_sent_twice(
    redis_url: str,
    make_backend: Callable[..., RedisBackend],
    k: str,
    monkeypatch: pytest.MonkeyPatch,
    answered: int,
) -> None:
    # The write reached the server, which ran both commands; the connection broke after
    # ``answered`` replies got back. Nothing tells a cut before the first reply apart from
    # a connection dead before the send, so the batch fails rather than being sent again
    # (which would run each INCRBY twice).
    backend = make_backend(redis_url)
    ops = [Op("incr", k + "n", amount=1), Op("incr", k + "n", amount=1)]
    assert backend.execute(ops) == [1, 2]  # a held connection now serves batches
    # put back idle and connected: the next batch is sent on it
    held = backend._held.take()  # type: ignore[union-attr]
    backend._held.put(held)  # type: ignore[union-attr]
    connection_class: Any = type(held)
    read = connection_class.read_response
    replies: list[object] = []
    cut: list[bool] = []

    def cut_after(self: Any, *args: Any, **kwargs: Any) -> Any:
        if cut or len(replies) < answered:  # once only: a resend's connection reads on
            replies.append(read(self, *args, **kwargs))
            return replies[-1]
        cut.append(True)
        time.sleep(0.05)  # the server has run what was sent
        raise redis.ConnectionError("reset by peer")

    monkeypatch.setattr(connection_class, "read_response", cut_after)
    with pytest.raises(BackendError, match="reset by peer"):
        backend.execute(ops)
    monkeypatch.undo()
    with redis.Redis.from_url(redis_url) as raw:
        assert raw.get(k + "n") == b"4"  # both ran once, none again
    assert backend.execute([Op("get", k + "n")]) == [b"4"]


# -- commands the server actually saw -------------------------------------------------------


def _command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


def test_delete_pattern_scans_and_unlinks_in_batches(
    fault_redis: RedisServer, make_backend: Callable[..., RedisBackend]
) -> None:
    backend = make_backend(fault_redis.url)
    backend.set_many({f"p:{i}": b"x" for i in range(1200)})
    backend.set("keep:1", b"x")
    with redis.Redis(port=fault_redis.port) as client:
        client.config_resetstat()
        assert backend.delete_pattern("p:*", batch_size=500) == 1200
        calls = _command_calls(client)
    assert backend.get("keep:1") == b"x"
    assert calls.get("scan", 0) >= 3
    assert calls.get("unlink", 0) >= 3
    assert not {"keys", "flushdb", "flushall", "del"} & set(calls)


async def test_transaction_is_multi_exec_and_one_round_trip(
    fault_redis: RedisServer, make_backend: Callable[..., RedisBackend]
) -> None:
    backend = make_backend(fault_redis.url)
    ops = [Op("set", "a", b"1", ttl=60), Op("incr", "n", ttl=60), Op("get", "a")]
    with redis.Redis(port=fault_redis.port) as client:
        client.config_resetstat()
        assert backend.execute(ops, transaction=True) == [True, 1, b"1"]
        assert await backend.aexecute(ops, transaction=True) == [True, 2, b"1"]
        calls = _command_calls(client)
        assert 0 < client.pttl("n") <= 60_000
    assert calls["multi"] == calls["exec"] == 2


def test_delete_if_without_expected_bytes_is_refused_before_sending(
    redis_url: str, make_backend: Callable[..., RedisBackend], k: str
) -> None:
    backend = make_backend(redis_url)
    with pytest.raises(ConfigurationError, match="delete_if"):
        backend.execute([Op("set", k + "a", b"v"), Op("delete_if", k + "a")])
    assert backend.get(k + "a") is None


def test_stats_read_info_for_the_backend_db(
    make_redis_server: MakeServer, make_backend: Callable[..., RedisBackend]
) -> None:
    server = make_redis_server(maxmemory="10mb")
    backend = make_backend(f"redis://127.0.0.1:{server.port}/1")
    backend.set_many({"a": b"1", "b": b"2", "c": b"3"})
    with redis.Redis(port=server.port, db=0) as db0:
        db0.set("elsewhere", b"x")
    assert backend.get("a") == b"1"
    assert backend.get("missing") is None
    stats = backend.stats()
    assert stats.backend == "redis"
    assert stats.keys == 3  # database 1 only
    assert stats.max_memory == 10 * 1024 * 1024
    assert stats.used_memory is not None
    assert 0 < stats.used_memory < stats.max_memory
    assert stats.connected_clients is not None
    assert stats.connected_clients >= 1
    assert stats.hits is not None
    assert stats.hits >= 1
    assert stats.misses is not None
    assert stats.misses >= 1
    assert stats.extra["redis_version"]


def test_sub_millisecond_ttl_becomes_one_millisecond(
    redis_url: str, make_backend: Callable[..., RedisBackend], k: str
) -> None:
    backend = make_backend(redis_url)
    assert backend.set(k, b"v", ttl=0.0001)
    assert eventually(lambda: backend.get(k) is None, within=2)
    assert backend.set(k, b"v", ttl=1.2345)
    remaining = backend.ttl(k)
    assert remaining is not None
    assert 1.0 < remaining <= 1.235


# -- tag sets and compare-and-delete ----------------------------------------------------------


async def test_tag_add_is_one_transaction_and_leaves_no_scratch_key(
    fault_redis: RedisServer, make_backend: Callable[..., RedisBackend]
) -> None:
    backend = make_backend(fault_redis.url)
    backend.set("value", b"v")
    with redis.Redis(port=fault_redis.port) as client:
        client.config_resetstat()
        backend.tag_add("tag", ["a", "b"], 60)
        await backend.atag_add("tag", ["c"], 120)
        with pytest.raises(BackendError, match="WRONGTYPE"):
            backend.tag_add("value", ["a"], 60)
        calls = _command_calls(client)
        keys = sorted(client.scan_iter("*"))
        assert 60_000 < client.pttl("tag") <= 120_000
    assert calls["multi"] == calls["exec"] == 3
    assert "eval" not in calls
    assert keys == [b"tag", b"value"]
    assert backend.tag_members("tag") == ["a", "b", "c"]


def test_delete_if_equals_runs_without_scripts(
    fault_redis: RedisServer, make_backend: Callable[..., RedisBackend]
) -> None:
    backend = make_backend(fault_redis.url)
    backend.set("lock", b"mine")
    with redis.Redis(port=fault_redis.port) as client:
        client.config_resetstat()
        assert backend.delete_if_equals("lock", b"theirs") is False
        assert backend.delete_if_equals("lock", b"mine") is True
        calls = _command_calls(client)
    assert calls["watch"] == 2
    assert not {"eval", "evalsha", "script"} & set(calls)


def test_delete_if_equals_checks_again_after_a_concurrent_write(
    redis_url: str, make_backend: Callable[..., RedisBackend], k: str
) -> None:
    backend = make_backend(redis_url)
    backend.set(k, b"mine")
    original: Callable[..., Any] = redis.client.Pipeline.execute_command
    writes: list[bool | None] = []

    def write_between_get_and_exec(pipe: Any, *args: Any, **options: Any) -> Any:
        reply = original(pipe, *args, **options)
        if args[0] == "GET" and not writes:
            # Another client takes over the key after our GET and before our EXEC.
            with redis.Redis.from_url(redis_url) as other:
                writes.append(other.set(k, b"theirs"))
        return reply

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis.client.Pipeline, "execute_command", write_between_get_and_exec)
        assert backend.delete_if_equals(k, b"mine") is False
    assert writes == [True]
    assert backend.get(k) == b"theirs"


@pytest.mark.parametrize("call", ["tag_add", "tag_remove"])
def test_tag_members_must_not_be_one_string(
    make_backend: Callable[..., RedisBackend], call: str
) -> None:
    backend = make_backend("redis://127.0.0.1:1/0")
    args: tuple[Any, ...] = ("tag", "abc", 60) if call == "tag_add" else ("tag", "abc")
    with pytest.raises(TypeError, match="single str"):
        getattr(backend, call)(*args)


# ---- an outage, or the server's answer to one command (issue 11, defect 4) -----------------


@pytest.mark.parametrize(
    ("raised", "outage"),
    [
        (redis.ConnectionError("Error 111 connecting. Connection refused."), True),
        (redis.TimeoutError("Timeout reading from socket"), True),
        (ConnectionResetError("reset by peer"), True),
        (redis.exceptions.ReadOnlyError("You can't write against a read only replica."), True),
        (redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"), True),
        (redis.exceptions.MasterDownError("Link with MASTER is down"), True),
        (redis.exceptions.ClusterDownError("The cluster is down"), True),
        (redis.exceptions.ResponseError("MISCONF Redis is configured to save RDB snapshots"), True),
        (redis.exceptions.ResponseError("BUSY Redis is busy running a script"), True),
        (redis.exceptions.ResponseError("WRONGTYPE Operation against a key"), False),
        (redis.exceptions.NoPermissionError("this user has no permissions"), False),
        (redis.exceptions.OutOfMemoryError("command not allowed when used memory"), False),
        (redis.exceptions.ResponseError("ERR Error running script"), False),
        (redis.exceptions.ResponseError("ERR invalid expire time in 'set' command"), False),
        (redis.ConnectionError("No connection available."), False),  # a busy pool
    ],
)
def test_errors_say_whether_the_server_is_unavailable(raised: Exception, outage: bool) -> None:
    backend = RedisBackend("redis://127.0.0.1:1/0")
    error = backend._error("get", raised)
    assert error.outage is outage
    # the server answered this command: a CommandError; a busy pool is neither
    answered = not outage and isinstance(raised, redis.exceptions.ResponseError)
    assert isinstance(error, CommandError) is answered
    assert error.__cause__ is raised


@pytest.mark.real_redis
def test_a_wrongtype_reply_is_a_command_error_in_a_pipeline_slot_too(redis_url: str) -> None:
    backend = RedisBackend(redis_url)
    try:
        backend.tag_add("kc:set", ["m"], None)
        (slot,) = backend.execute([Op("get", "kc:set")])
        assert isinstance(slot, CommandError)
        assert not slot.outage
        with pytest.raises(CommandError, match="WRONGTYPE"):
            backend.get("kc:set")
    finally:
        backend.delete("kc:set")
        backend.close()


@pytest.mark.real_redis
@pytest.mark.alone  # a FIFO order of waiters: another worker's load can reorder their wakeups
async def test_async_callers_queue_first_come_first_served(redis_url: str) -> None:
    # 200 tasks on 4 connections: each waits its turn in order (about 50 commands), none
    # waits out the pool wait. redis-py's own pool lets a task that just released a
    # connection take it back ahead of the waiting ones: 35 of these 1,000 calls failed.
    backend = RedisBackend(redis_url, max_connections=4, pool_timeout=0.25)
    try:

        async def loop(number: int) -> int:
            for round_ in range(5):
                await backend.aset(f"kc:fifo:{number}", str(round_).encode())
            return number

        assert sorted(await asyncio.gather(*(loop(n) for n in range(200)))) == list(range(200))
    finally:
        await backend.aclose()
        backend.close()
