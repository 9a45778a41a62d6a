"""One deadline per Redis call: connect, handshake and reply together (issue 12, item 10).

A server that accepts connections and never answers (a black hole) costs the first call
its deadline, 250 ms by default, and opens the circuit breaker after it: the next calls
return at once. A slow server whose every reply comes within a step's timeout but whose
handshake takes several of them is bounded by the one deadline too. Timings are bounded
with generous factors (the machine is shared); what is asserted exactly is which calls
reached the network.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from typing_extensions import Self

from conftest import REDIS_ENV
from kirocache import Cache, CircuitBreaker
from kirocache.backends.redis import RedisBackend
from kirocache.exceptions import BackendError
from kirocache.testing import FaultyBackend

if TYPE_CHECKING:
    from redis_server import BlackholeServer, RedisServer

pytestmark = pytest.mark.slow  # real socket timeouts

DEFAULT_DEADLINE = 0.25
# Generous: a loaded CI machine adds scheduling delay, never removes any.
SLACK = 4


@pytest.fixture(autouse=True)
def _no_redis_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in REDIS_ENV:
        monkeypatch.delenv(name, raising=False)


def _breaker() -> CircuitBreaker:
    # a long open time: the probe's PINGs are not calls of the wrapped backend anyway
    return CircuitBreaker(recovery_time=60, max_recovery_time=60)


def test_a_black_hole_costs_one_deadline_then_the_breaker_is_open(
    blackhole: BlackholeServer,
) -> None:
    backend = FaultyBackend(RedisBackend(blackhole.url))
    cache = Cache(backend, breaker=_breaker())
    try:
        started = time.perf_counter()
        assert cache.get("k", "fallback") == "fallback"
        first = time.perf_counter() - started
        assert first < DEFAULT_DEADLINE * SLACK  # before: ~0.5 s a call, for three calls
        assert cache.breaker is not None
        assert cache.breaker.state == "open"  # after the first call, not the third
        for _ in range(100):
            assert cache.get("k", "fallback") == "fallback"
        assert backend.calls["get"] == 1
    finally:
        cache.close()


async def test_a_black_hole_costs_one_deadline_then_the_breaker_is_open_async(
    blackhole: BlackholeServer,
) -> None:
    backend = FaultyBackend(RedisBackend(blackhole.url))
    cache = Cache(backend, breaker=_breaker())
    try:
        started = time.perf_counter()
        assert await cache.aget("k", "fallback") == "fallback"
        assert time.perf_counter() - started < DEFAULT_DEADLINE * SLACK
        assert cache.breaker is not None
        assert cache.breaker.state == "open"
        for _ in range(100):
            assert await cache.aget("k", "fallback") == "fallback"
        assert backend.calls["aget"] == 1
    finally:
        await cache.aclose()
        cache.close()


def test_the_error_says_the_deadline_ran_out(blackhole: BlackholeServer) -> None:
    backend = RedisBackend(blackhole.url, timeout=0.1)
    try:
        with pytest.raises(BackendError, match=r"deadline") as caught:
            backend.get("k")
        assert caught.value.timed_out
        assert caught.value.outage
    finally:
        backend.close()


# -- a slow server: every reply within a step's timeout, the handshake not -----------------


class SlowProxy:
    """A loopback TCP proxy to a real server that holds each reply back ``delay`` seconds.

    redis-py's handshake on a fresh connection is several round trips (HELLO, CLIENT
    SETINFO twice) before the command's own: each is slow, none is too slow on its own.
    """

    def __init__(self, upstream_port: int, delay: float) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="slow-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, server]
            for source, sink, delay in ((client, server, 0.0), (server, client, self.delay)):
                threading.Thread(target=self._pipe, args=(source, sink, delay), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, delay: float) -> None:
        try:
            while not self._stop.is_set():
                data = source.recv(65536)
                if not data:
                    return
                time.sleep(delay)
                sink.sendall(data)
        except OSError:
            return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def slow_proxy(redis_server: RedisServer) -> Iterator[SlowProxy]:
    with SlowProxy(redis_server.port, delay=0.12) as proxy:
        yield proxy


def test_the_handshake_and_the_reply_share_one_deadline(slow_proxy: SlowProxy) -> None:
    # HELLO, CLIENT SETINFO twice and GET: four replies of 0.12 s, each well within a
    # step's 0.3 s, together 0.48 s: past the call's deadline of 0.3 s.
    backend = RedisBackend(slow_proxy.url, timeout=0.3)
    try:
        started = time.perf_counter()
        with pytest.raises(BackendError) as caught:
            backend.get("k")
        assert caught.value.timed_out
        assert time.perf_counter() - started < 0.3 * SLACK
    finally:
        backend.close()
    # The same server within a deadline that covers the whole call answers.
    patient = RedisBackend(slow_proxy.url, timeout=5)
    try:
        # a key no other test writes (the session's server is shared)
        assert patient.get(f"deadline-test:{uuid.uuid4().hex}") is None
    finally:
        patient.close()


async def test_the_handshake_and_the_reply_share_one_deadline_async(
    slow_proxy: SlowProxy,
) -> None:
    backend = RedisBackend(slow_proxy.url, timeout=0.3)
    started = time.perf_counter()
    with pytest.raises(BackendError) as caught:
        await backend.aget("k")
    assert caught.value.timed_out
    assert time.perf_counter() - started < 0.3 * SLACK
    await backend.aclose()


def test_socket_timeout_alone_still_sets_the_deadline(blackhole: BlackholeServer) -> None:
    # Code written before ``timeout`` existed keeps its bound: socket_timeout is the deadline.
    backend = RedisBackend(blackhole.url, socket_timeout=0.1)
    try:
        assert backend._deadline == pytest.approx(0.1)
        with pytest.raises(BackendError) as caught:
            backend.get("k")
        assert caught.value.timed_out
    finally:
        backend.close()


def test_many_threads_each_get_their_own_deadline(blackhole: BlackholeServer) -> None:
    backend = RedisBackend(blackhole.url, timeout=0.2, max_connections=8)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            backend.get("k")
        except BackendError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(errors) == 8
        assert all(getattr(e, "timed_out", False) for e in errors)
        assert time.perf_counter() - started < 0.2 * SLACK * 2
    finally:
        backend.close()


# -- the deadline measures the server, not a stalled event loop ------------------------------


async def test_a_stalled_event_loop_does_not_fail_a_call_the_server_answered(
    redis_server: RedisServer,
) -> None:
    # The reply comes 0.05 s after the GET; meanwhile a coroutine holds the loop 0.6 s, past
    # the 0.5 s deadline. When the loop runs again the reply and the deadline's timer are
    # both due: asyncio.timeout alone would cancel the call the server had answered.
    with SlowProxy(redis_server.port, delay=0.05) as proxy:
        backend = RedisBackend(proxy.url, timeout=0.5)
        await backend.aping()  # a warm connection: the call below is one round trip

        async def hold_the_loop() -> None:
            await asyncio.sleep(0.02)  # the GET is sent, its reply on its way
            time.sleep(0.6)  # noqa: ASYNC251 - the point: a synchronous step holds the loop up

        key = f"deadline-test:{uuid.uuid4().hex}"
        value, _ = await asyncio.gather(backend.aget(key), hold_the_loop())
        assert value is None  # answered, not "no answer within the call's deadline"
        await backend.aclose()


async def test_a_stalled_loop_still_bounds_a_black_hole(blackhole: BlackholeServer) -> None:
    backend = RedisBackend(blackhole.url, timeout=0.1)

    async def hold_the_loop() -> None:
        await asyncio.sleep(0)
        time.sleep(0.2)  # noqa: ASYNC251 - the loop held up

    started = time.perf_counter()
    results = await asyncio.gather(backend.aget("k"), hold_the_loop(), return_exceptions=True)
    assert isinstance(results[0], BackendError)
    assert results[0].timed_out
    # put off for at most one more deadline: 0.2 s held + 0.1 s more, with slack
    assert time.perf_counter() - started < (0.2 + 0.1 + 0.1) * SLACK
    await backend.aclose()
