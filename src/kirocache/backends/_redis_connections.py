"""redis-py connections bounded by one deadline per call, and a retry that spares refusals.

redis-py gives each step of a call its own timeout: the TCP connect, every reply of the
handshake (HELLO or AUTH, CLIENT SETINFO twice, SELECT, CLIENT SETNAME) and the reply to the
command. Against a server that accepts connections and never answers, a call on a fresh
connection used to wait several timeouts in a row. Here a sync call carries one deadline
(a thread-local budget the transport sets), which starts when the call first touches its
connection (after any wait for a pooled connection) and bounds the connect and every
send and read of the call. Async calls are bounded by ``asyncio.timeout`` in the transport.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, TypeVar

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.exceptions import AuthenticationError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

__all__ = [
    "CONNECTION_CLASSES",
    "AsyncHeld",
    "AsyncPool",
    "AsyncRetry",
    "DeadlineError",
    "HeldConnections",
    "SyncPool",
    "SyncRetry",
    "begin_call",
    "bounded",
    "end_call",
    "packed",
    "packed_many",
    "turn_within",
]

T = TypeVar("T")

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is optional; redis-py packs without it
    _hiredis_pack = None


def packed(connection: Any, command: tuple[Any, ...]) -> Any:
    """A hot read's command (``GET``/``MGET`` of ``str`` keys) packed for ``connection``.

    With hiredis installed and the client's default UTF-8 encoding, one ``pack_command``
    call: what redis-py's hiredis packer does after a pass over every argument (a
    generator the size of an ``MGET``), and what its asyncio client does in Python, one
    argument at a time. Otherwise the connection packs it, as redis-py would.
    """
    encoder = connection.encoder
    if _hiredis_pack is None or encoder.encoding != "utf-8" or encoder.encoding_errors != "strict":
        return connection.pack_command(*command)
    return [_hiredis_pack(command)]


def packed_many(connection: Any, commands: Sequence[tuple[Any, ...]]) -> Any:
    """Commands packed into one write for ``connection`` (see ``packed``)."""
    encoder = connection.encoder
    if _hiredis_pack is None or encoder.encoding != "utf-8" or encoder.encoding_errors != "strict":
        return connection.pack_commands(commands)
    try:
        return [b"".join(map(_hiredis_pack, commands))]
    except TypeError:  # an argument hiredis does not pack (a memoryview): redis-py does
        return connection.pack_commands(commands)


class DeadlineError(RedisTimeoutError):
    """The call's deadline passed before a step of it could start."""


class _Budget(threading.local):
    """This thread's call: its budget in seconds and, once started, its deadline."""

    seconds: float | None = None
    deadline: float | None = None


_BUDGET: Final = _Budget()


def begin_call(seconds: float | None) -> None:
    """Bound this thread's next redis-py call by ``seconds`` in all (``None``: unbounded)."""
    budget = _BUDGET
    budget.seconds = seconds
    budget.deadline = None


def end_call() -> None:
    """The call is over: later steps on this thread are bounded by their own timeouts."""
    _BUDGET.seconds = None


def _left() -> float | None:
    """Seconds left of this thread's call (starting its clock), ``None`` outside a call.

    May be zero or less: the caller decides what a spent deadline means for its step.
    """
    budget = _BUDGET
    if budget.seconds is None:
        return None
    now = time.monotonic()
    if budget.deadline is None:
        budget.deadline = now + budget.seconds
    return budget.deadline - now


def _spent() -> DeadlineError:
    msg = f"Timeout: no answer within the call's deadline of {_BUDGET.seconds:g} s"
    return DeadlineError(msg)


# A read whose deadline is spent still looks, this long, for a reply already received: a
# thread the machine did not run for a while must not fail a call the server answered.
_READ_GRACE: Final = 0.005
# How late a deadline's timer may fire before the event loop counts as having been held up
# (a long synchronous step in a coroutine, a starved machine), as a share of the deadline
# and at least this many seconds.
_STALL_SHARE: Final = 0.1
_STALL_MIN: Final = 0.01

if sys.version_info >= (3, 11):
    from asyncio import timeout as _call_deadline
else:  # redis-py depends on async-timeout before 3.11.3
    _call_deadline = importlib.import_module("async_timeout").timeout


class bounded:  # noqa: N801 - used as a function: ``async with bounded(seconds):``
    """Bound an asyncio redis-py call by ``seconds`` in all (``None``: unbounded).

    Running out raises ``redis.TimeoutError``, as a sync call's deadline does. The deadline
    measures the server, not the event loop: when its timer fires late because the loop
    itself was held up, the I/O that arrived meanwhile is let through first (the timer is
    put off by a short tolerance, for at most one more deadline in all).
    """

    __slots__ = ("_due", "_handle", "_loop", "_put_off", "_seconds", "_timeout", "_tolerance")

    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        # armed by our own timer, so that a late firing can be told from a timely one
        self._timeout = _call_deadline(None)
        self._handle: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()
        seconds = self._seconds
        if seconds is not None:
            self._loop = loop = asyncio.get_running_loop()
            self._due = loop.time() + seconds
            self._put_off = 0.0
            self._tolerance = max(_STALL_MIN, seconds * _STALL_SHARE)
            self._handle = loop.call_at(self._due, self._expire)

    def _expire(self) -> None:
        loop, seconds = self._loop, self._seconds
        now = loop.time()
        late = now - self._due
        if seconds is not None and late > self._tolerance and self._put_off < seconds:
            self._put_off += late + self._tolerance
            self._due = now + self._tolerance
            self._handle = loop.call_at(self._due, self._expire)
            return
        self._handle = None
        expire = getattr(self._timeout, "reschedule", None) or self._timeout.update
        expire(now)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        try:
            return await self._timeout.__aexit__(exc_type, exc, tb)  # type: ignore[no-any-return]
        except TimeoutError as timed_out:
            msg = f"Timeout: no answer within the call's deadline of {self._seconds:g} s"
            raise RedisTimeoutError(msg) from timed_out


async def turn_within(gate: asyncio.Semaphore, seconds: float) -> None:
    """Wait for a turn at ``gate``, first come first served, at most ``seconds``.

    One timer on the waiting task, where ``asyncio.wait_for`` starts a task per call.

    Raises:
        asyncio.TimeoutError: No turn came within ``seconds``.
    """
    async with _call_deadline(seconds):
        await gate.acquire()


class _DeadlineMixin:
    """Clips every blocking step of a connection to what is left of the call's deadline."""

    socket_timeout: float | None
    socket_connect_timeout: float | None
    _sock: Any

    def _connect(self) -> socket.socket:
        left = _left()
        if left is not None and left <= 0:
            raise _spent()  # retries of a refused connection used it up
        cap = self.socket_connect_timeout
        if left is not None and (cap is None or left < cap):
            self.socket_connect_timeout = left
            try:
                sock: socket.socket = super()._connect()  # type: ignore[misc]
            finally:
                self.socket_connect_timeout = cap
            return sock
        return super()._connect()  # type: ignore[misc,no-any-return]

    def _clip(self) -> None:
        sock = self._sock
        if sock is None:
            return
        left = _left()
        cap = self.socket_timeout
        if left is not None:
            left = max(left, _READ_GRACE)
        sock.settimeout(cap if left is None or (cap is not None and cap <= left) else left)

    def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
        self._clip()
        super().send_packed_command(*args, **kwargs)  # type: ignore[misc]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        self._clip()
        return super().read_response(*args, **kwargs)  # type: ignore[misc]


class _Connection(_DeadlineMixin, redis.Connection):
    """A TCP connection bounded by the call's deadline."""


class _SSLConnection(_DeadlineMixin, redis.SSLConnection):
    """A TLS connection bounded by the call's deadline."""


class _UnixConnection(_DeadlineMixin, redis.UnixDomainSocketConnection):
    """A unix socket connection bounded by the call's deadline."""


CONNECTION_CLASSES: Final[Mapping[str, tuple[type[Any], type[Any]]]] = {
    "redis": (_Connection, redis.asyncio.Connection),
    "rediss": (_SSLConnection, redis.asyncio.SSLConnection),
    "unix": (_UnixConnection, redis.asyncio.UnixDomainSocketConnection),
}
"""The sync and async connection classes of each URL scheme."""


class SyncPool(redis.BlockingConnectionPool):
    """The sync pool ``RedisBackend`` builds (the hot reads may hold some of its connections)."""


class HeldConnections:
    """Connections held out of a :class:`SyncPool` for the hot reads (GET, MGET) of any thread.

    redis-py's checkout of a pooled connection and its command dispatch cost about as much as
    the round trip of a small GET on loopback (a queue under a lock, a poll for stray data,
    the pool's own metrics, two retry wrappers). A hot read takes an idle held connection
    (a list pop, atomic under the GIL), sends the packed command on it, reads the reply and
    puts it back. At most half the pool's ``size`` connections are held, each taken from the
    pool once; when none is idle and that many are held, the read goes the usual way.

    The pool's bound holds for everything together, and the other calls are never starved:
    a caller taking the usual way says so (``enter_pooled``), and while held and pooled
    callers together would need more than ``size`` connections, idle held ones are given
    back to the pool, and a held one coming back from a read goes to the pool too. A
    connection whose read failed is disconnected and given back. After a fork the child
    holds none (as redis-py's pools do).
    """

    __slots__ = ("_cap", "_held", "_idle", "_lock", "_pid", "_pool", "_pooled", "_size")

    def __init__(self, pool: SyncPool, size: int) -> None:
        self._pool = pool
        self._size = size
        self._cap = size // 2
        self._idle: list[Any] = []
        self._held = 0
        self._pooled = 0  # callers using the pool the usual way, now
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def take(self) -> Any | None:
        """An idle connected connection, or ``None``: take the usual way then.

        Under the cap, a connection is taken from the pool (and connected, within the
        call's deadline when one is running).

        Raises:
            redis.ConnectionError: The pool had no connection, or it could not connect.
        """
        if self._pid != os.getpid():
            self._forked()
        idle = self._idle
        while idle:
            try:
                connection = idle.pop()
            except IndexError:  # another thread took the last one meanwhile
                break
            if connection._sock is not None:  # redis-py's "connected"
                return connection
            self.give_back(connection)  # closed with the pool meanwhile
        with self._lock:
            if self._held >= self._cap or self._held + self._pooled >= self._size:
                return None
            self._held += 1
        try:
            return self._pool.get_connection()  # type: ignore[no-untyped-call]
        except BaseException:
            with self._lock:
                self._held -= 1
            raise

    def put(self, connection: Any) -> None:
        """Make ``connection`` idle again after a read; to the pool if a caller needs it."""
        if self._held + self._pooled > self._size:
            self.give_back(connection)
        else:
            self._idle.append(connection)

    def give_back(self, connection: Any) -> None:
        """Return ``connection`` to the pool for good (after a failure, or closing)."""
        with self._lock:
            self._held -= 1
        self._pool.release(connection)  # type: ignore[no-untyped-call]

    def enter_pooled(self) -> None:
        """A caller is about to use the pool the usual way: make room for it."""
        with self._lock:
            self._pooled += 1
            spare = []
            while self._idle and self._held + self._pooled > self._size:
                try:
                    spare.append(self._idle.pop())
                except IndexError:
                    break
                self._held -= 1
        for connection in spare:
            self._pool.release(connection)  # type: ignore[no-untyped-call]

    def leave_pooled(self) -> None:
        """That caller is done with the pool."""
        with self._lock:
            self._pooled -= 1

    def release_all(self) -> None:
        """Give every idle connection back to the pool (the pool is being closed)."""
        while self._idle:
            try:
                connection = self._idle.pop()
            except IndexError:
                return
            self.give_back(connection)

    def _forked(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._idle = []
                self._held = 0
                self._pooled = 0
                self._pid = os.getpid()


class AsyncPool(redis.asyncio.ConnectionPool):
    """An event loop's pool as ``RedisBackend`` builds it, behind its admission gate."""


class AsyncHeld:
    """:class:`HeldConnections` for one event loop's :class:`AsyncPool` (no lock: one loop).

    The loop's gate admits at most ``size`` callers at once, and the pool has ``size``
    connections, all of which the hot reads may hold. A held connection stays checked out
    of the pool while idle, so before a caller takes the usual way (a write, a pipeline),
    ``make_room`` gives idle ones back until the idle held connections and the admitted
    callers together fit in the pool: the pool then has a connection for that caller.
    """

    __slots__ = ("_held", "_idle", "_pool", "_size")

    def __init__(self, pool: AsyncPool, size: int) -> None:
        self._pool = pool
        self._size = size
        self._idle: list[Any] = []
        self._held = 0

    async def take(self) -> Any | None:
        """An idle connected connection, or ``None`` (all held ones are busy: the usual way).

        Under the cap, one is taken from the pool (and connected: within the call's bound).

        Raises:
            redis.ConnectionError: It could not connect.
        """
        idle = self._idle
        while idle:
            connection = idle.pop()
            if connection.is_connected:
                return connection
            await self.give_back(connection)  # closed with the pool meanwhile
        if self._held >= self._size:
            return None
        self._held += 1
        try:
            return await self._pool.get_connection()  # type: ignore[no-untyped-call]
        except BaseException:
            self._held -= 1
            raise

    def put(self, connection: Any) -> None:
        """Make ``connection`` idle again, after a read that came back."""
        self._idle.append(connection)

    async def give_back(self, connection: Any) -> None:
        """Return ``connection`` to the pool for good (after a failure, or to make room)."""
        self._held -= 1
        await self._pool.release(connection)

    async def make_room(self, admitted: int) -> None:
        """Give idle connections back until they and ``admitted`` callers fit the pool."""
        idle = self._idle
        while idle and len(idle) + admitted > self._size:
            await self.give_back(idle.pop())


class _Final(Exception):  # noqa: N818 - a carrier, never seen outside this module
    """Carries an error past redis-py's retry loop, which would retry its class."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error


class _Attempts:
    """What ``do`` raised so far, and which errors end the retries.

    A refused password is redis-py's ConnectionError too; trying it again changes nothing
    but the time the caller waits (and the server's ACL LOG). A deadline that passed while
    retrying ends them with the error that caused the retries (a refused connection, a
    certificate the client does not trust), which says more than "out of time".
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: Exception | None = None

    def judge(self, exc: Exception) -> Exception:
        if isinstance(exc, AuthenticationError):
            return _Final(exc)
        if isinstance(exc, DeadlineError) and self.last is not None:
            return _Final(self.last)
        self.last = exc
        return exc


class SyncRetry(Retry):
    """redis-py's retry of refused or reset connections, never of a refused password."""

    def call_with_retry(self, do: Callable[[], T], fail: Any, *args: Any, **kwargs: Any) -> T:
        """Call ``do``, retrying as redis-py does, except after an authentication error."""
        attempts = _Attempts()

        def attempt() -> T:
            try:
                return do()
            except Exception as exc:
                judged = attempts.judge(exc)
                if judged is exc:
                    raise
                raise judged from None

        try:
            return super().call_with_retry(attempt, fail, *args, **kwargs)
        except _Final as final:
            raise final.error from None


class AsyncRetry(redis.asyncio.retry.Retry):
    """The asyncio twin of :class:`SyncRetry`."""

    async def call_with_retry(self, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
        """Call ``do``, retrying as redis-py does, except after an authentication error."""
        attempts = _Attempts()

        async def attempt() -> Any:
            try:
                return await do()
            except Exception as exc:
                judged = attempts.judge(exc)
                if judged is exc:
                    raise
                raise judged from None

        try:
            return await super().call_with_retry(attempt, fail, *args, **kwargs)
        except _Final as final:
            raise final.error from None
