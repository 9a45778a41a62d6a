"""The canary sweep: a password never shows, whatever the input and the error path.

Every error path a misconfigured or failing Redis gives (URLs of every malformed shape,
NOAUTH, WRONGPASS, an unreachable server, a refused session pipeline, half-built backends,
the CLI) runs with a password made of canary words joined by every reserved character.
Then the canary must be absent from the messages, the reprs, ``traceback.format_exception``
(causes included), the captured log lines, the CLI's output, and the local variables of
the library's frames in each traceback (what error trackers record).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
import redis

from conftest import REDIS_ENV
from kirocache import Cache, configure
from kirocache._cache import default as _global
from kirocache.backends.cluster import RedisClusterBackend
from kirocache.backends.redis import RedisBackend
from kirocache.backends.sentinel import RedisSentinelBackend
from kirocache.exceptions import (
    AuthenticationError,
    BackendError,
    ConfigurationError,
    KirocacheError,
)
from kirocache.sessions import SessionStore, SessionStoreError

if TYPE_CHECKING:
    from redis_server import RedisServer

# Every fragment says "canary": a piece of the password cut at any reserved character
# still gives itself away.
CANARY = "canaryA#canaryB/canaryC?canaryD@canaryE:canaryF&canaryG=canaryH%canaryI canaryJ"
ENCODED = quote(CANARY, safe="")
WORD = "canary"
SOURCE = Path(__file__).resolve().parents[1] / "src" / "kirocache"

BAD_URLS = [
    f"redis://:{CANARY}@localhost:6379/0",
    f"redis://user:{CANARY}@localhost:6379/0",
    f"rediss://user:{CANARY}@cache.example:6380/1",
    f"unix://user:{CANARY}@/run/redis.sock?db=1",
    f"redis://localhost:6379/0?password={CANARY}",
    f"redis://localhost:6379/0?db=x&password={CANARY}",
    f"redis:/:{CANARY}@localhost",
    f"redis:{CANARY}@localhost",
    f"redis://:{CANARY}@[::1:6379/0",
    f"redis://:{ENCODED}@localhost:99999/0",
    f"redis://:{ENCODED}@localhost/notadb",
    f"redis://:{ENCODED}@localhost/0?colour=blue",
    f"http://:{CANARY}@localhost/",
    f"memcached://:{ENCODED}@localhost/",
]
# Cluster and Sentinel URLs with an option they refuse, the password in every place.
BAD_NODES_URLS = [
    f"redis+cluster://:{ENCODED}@h1:7000,h2:7001?bogus=1",
    f"redis+cluster://u:{ENCODED}@h1:7000?timeout=soon",
    f"redis+cluster://:{ENCODED}@h1:7000?node_failure_threshold=0",
    f"redis+cluster://:{ENCODED}@h1:7000?node_retry_interval=-1",
    f"rediss+cluster://:{ENCODED}@h1:7000?ssl_ciphers=HIGH",
    f"redis+cluster://:{ENCODED}@h1:7000?ssl_check_hostname=true",
    f"redis+cluster://:{ENCODED}@h1:7000?protocol=3",
    f"redis+cluster://h1:7000?max_connections=many&password={CANARY}",
    f"redis+cluster://h1:7000?password={CANARY}&colour=blue",
    f"redis+sentinel://:{ENCODED}@s1/m?sentinel_password={ENCODED}&timeout=soon",
    f"redis+sentinel://s1/m?sentinel_password={CANARY}&node_failure_threshold=1",
    f"redis+sentinel://:{ENCODED}@s1/m?protocol=3",
]


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in REDIS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_global, "_default", None)


def _library_frames(error: BaseException) -> Iterator[dict[str, Any]]:
    """The local variables of every frame of the library in ``error``'s chain.

    The chain as tracebacks and error trackers (Sentry's ``walk_exception_chain``) walk
    it: the cause, else the context unless ``raise ... from None`` suppressed it.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        for frame, _ in traceback.walk_tb(exc.__traceback__):
            if Path(frame.f_code.co_filename).resolve().is_relative_to(SOURCE):
                yield frame.f_locals
        pending.append(exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__))


def _shows(value: object) -> bool:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return WORD in value or ENCODED in value
    if isinstance(value, (tuple, list)):
        return any(_shows(item) for item in value)
    if isinstance(value, dict):
        return any(_shows(item) for item in value.values())
    return False


def assert_no_canary(error: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    """Message, repr, the whole traceback, the logs, the library's frame locals."""
    logging.getLogger("kirocache.test").error("the failure", exc_info=error)
    said = "\n".join(
        [str(error), repr(error), "".join(traceback.format_exception(error)), caplog.text]
    )
    assert WORD not in said, said
    assert ENCODED not in said
    for local_variables in _library_frames(error):
        leaks = [name for name, value in local_variables.items() if _shows(value)]
        assert not leaks, f"frame locals {leaks} hold the password"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="kirocache")
    return caplog


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_urls_of_every_shape(url: str, logs: pytest.LogCaptureFixture) -> None:
    for build in (
        lambda: Cache.from_url(url),
        lambda: RedisBackend(url),
        lambda: configure(url),
        lambda: Cache.from_url(url, check=True),
    ):
        with pytest.raises(ConfigurationError) as info:
            build()
        assert_no_canary(info.value, logs)


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_urls_in_the_environment(
    url: str, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(ConfigurationError) as info:
        configure()
    assert_no_canary(info.value, logs)


@pytest.mark.parametrize("url", BAD_NODES_URLS)
def test_bad_cluster_and_sentinel_options(
    url: str, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    cluster = "+cluster" in url
    backend = RedisClusterBackend if cluster else RedisSentinelBackend
    bad: dict[str, Any] = {"node_failure_threshold": 0} if cluster else {"max_connections": 0}
    for build in (
        lambda: Cache.from_url(url),
        lambda: backend(url),
        lambda: configure(url),
        lambda: backend(url.partition("?")[0], password=CANARY, **bad),
    ):
        with pytest.raises(ConfigurationError) as info:
            build()
        assert_no_canary(info.value, logs)
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(ConfigurationError) as info:
        configure()
    assert_no_canary(info.value, logs)


def test_half_built_backends_have_a_repr(logs: pytest.LogCaptureFixture) -> None:
    bare = RedisBackend.__new__(RedisBackend)
    assert "RedisBackend" in repr(bare)  # before: AttributeError
    half = RedisBackend.__new__(RedisBackend)
    with pytest.raises(ConfigurationError) as info:
        half.__init__(f"redis://:{ENCODED}@localhost:6379/0", max_connections=0)  # type: ignore[misc]
    assert WORD not in repr(half)
    assert_no_canary(info.value, logs)


# -- a real server: the password refused, missing, or the server gone ---------------------


@pytest.fixture
def guarded(make_redis_server: Callable[..., RedisServer]) -> RedisServer:
    """A redis-server whose default user needs a password (not the canary)."""
    return make_redis_server(password="the-real-one")


def _fail(backend: RedisBackend) -> BackendError:
    with pytest.raises(BackendError) as info:
        backend.get("k")
    return info.value


@pytest.mark.slow
def test_wrong_password(guarded: RedisServer, logs: pytest.LogCaptureFixture) -> None:
    url = f"redis://:{ENCODED}@127.0.0.1:{guarded.port}/0"
    backend = RedisBackend(url)
    try:
        error = _fail(backend)
        assert isinstance(error, AuthenticationError)
        assert_no_canary(error, logs)
        assert WORD not in repr(backend)
        with Cache(backend, debug=True) as cache:
            assert cache.get("k", "fallback") == "fallback"
            assert cache.set("k", 1) is False
        assert_no_canary(error, logs)
    finally:
        backend.close()


@pytest.mark.slow
async def test_wrong_password_async(guarded: RedisServer, logs: pytest.LogCaptureFixture) -> None:
    backend = RedisBackend(f"redis://user:{ENCODED}@127.0.0.1:{guarded.port}/0")
    with pytest.raises(AuthenticationError) as info:
        await backend.aget("k")
    assert_no_canary(info.value, logs)
    await backend.aclose()


@pytest.mark.slow
def test_password_from_the_environment(
    guarded: RedisServer, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", CANARY)
    backend = RedisBackend(f"redis://127.0.0.1:{guarded.port}/0")
    try:
        assert_no_canary(_fail(backend), logs)
        assert WORD not in repr(backend)
    finally:
        backend.close()


@pytest.mark.slow
def test_no_password_where_one_is_needed(
    guarded: RedisServer, logs: pytest.LogCaptureFixture
) -> None:
    backend = RedisBackend(f"redis://127.0.0.1:{guarded.port}/0")
    try:
        error = _fail(backend)
        assert "the server needs a password" in str(error)
        assert_no_canary(error, logs)
    finally:
        backend.close()


def test_unreachable_server(logs: pytest.LogCaptureFixture) -> None:
    backend = RedisBackend(f"redis://user:{ENCODED}@127.0.0.1:1/0")
    try:
        assert_no_canary(_fail(backend), logs)
        with pytest.raises(ConfigurationError) as info:
            Cache.from_url(f"redis://user:{ENCODED}@127.0.0.1:1/0", check=True)
        assert "unreachable" in str(info.value)
        assert_no_canary(info.value, logs)
    finally:
        backend.close()


@pytest.mark.slow
def test_refused_session_pipeline_as_a_user_with_that_password(
    make_redis_server: Callable[..., RedisServer], logs: pytest.LogCaptureFixture
) -> None:
    server = make_redis_server()
    with redis.Redis.from_url(server.url) as admin:
        rules = ["on", f">{CANARY}", "resetkeys", "~*", "resetchannels", "&*", "+@all", "-set"]
        admin.execute_command("ACL", "SETUSER", "nowrite", *rules)
    with Cache(RedisBackend(f"redis://nowrite:{ENCODED}@127.0.0.1:{server.port}/0")) as cache:
        sessions = SessionStore(cache, ttl=60)
        with pytest.raises(SessionStoreError) as info:
            sessions.create("ada", {})
        assert_no_canary(info.value, logs)
        assert WORD not in repr(cache)


@pytest.mark.slow
def test_the_cli_never_prints_it(
    guarded: RedisServer, capsys: pytest.CaptureFixture[str], logs: pytest.LogCaptureFixture
) -> None:
    from kirocache._cli import main

    urls = [
        f"redis://:{ENCODED}@127.0.0.1:{guarded.port}/0",  # WRONGPASS
        f"redis://:{CANARY}@127.0.0.1:{guarded.port}/0",  # malformed
        f"redis://:{ENCODED}@127.0.0.1:1/0",  # unreachable
    ]
    for url in urls:
        for command in (["ping"], ["stats"], ["-v", "stats"]):
            try:
                main(["--url", url, *command])
            except SystemExit:
                pass
            except KirocacheError as exc:  # a command may let a library error out
                assert_no_canary(exc, logs)
            out, err = capsys.readouterr()
            assert WORD not in out + err, (command, out, err)
    assert WORD not in logs.text
