"""TieredBackend: Redis as the source of truth, a small in-process layer in front of it.

Invalidations travel on a Redis pub/sub channel, so each process drops its local copies of
the keys another process changed. The message format, encoded with orjson, is one of::

    {"s": "<sender id>", "k": ["full:key:1", "full:key:2"]}   drop these keys
    {"s": "<sender id>", "p": "glob:pattern:*"}               drop the keys matching this
    {"s": "<sender id>", "f": true}                            drop everything

A backend ignores the messages it sent itself. Anything it cannot read drops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import random
import secrets
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, cast

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from kirocache._types import to_seconds
from kirocache.backends._glob import glob_to_regex
from kirocache.backends._protocol import BackendStats, Op, OpResult
from kirocache.backends.memory import MemoryBackend
from kirocache.backends.redis import RedisBackend, _as_bytes, _decode_ttl, _plan
from kirocache.exceptions import BackendError, ConfigurationError, KirocacheError

if TYPE_CHECKING:
    from redis.client import PubSub
    from typing_extensions import Self

__all__ = ["TieredBackend"]

_log = logging.getLogger("kirocache.backends.tiered")

DEFAULT_CHANNEL: Final = "kirocache:invalidate"
# Values starting so are the cache's own markers (invalidation tombstones): a read must
# always see the remote's current one, so they are never copied into the local layer.
_RESERVED: Final = b"\xc5\xff"
# Ops that change what a key holds. tag_add is not among them: tag sets are never copied
# into the local layer, so no process holds a copy to drop.
_WRITES: Final = frozenset({"set", "delete", "expire", "incr", "persist", "set_if", "swap"})
# Keys per message, so one delete_many of many keys cannot make a message large enough to
# overflow a subscriber's output buffer (which would only cost it a reconnect anyway).
_KEYS_PER_MESSAGE: Final = 1000
_PING_PAYLOAD: Final = "kirocache-tiered"
# How long a subscriber waits for messages before it checks whether to stop or PING.
_POLL: Final = 0.1
# Floors on the waits for SUBSCRIBE's confirmation and a PONG, so a loaded machine does
# not take a slow answer for a dead connection.
_MIN_CONFIRM_WAIT: Final = 1.0
_MIN_PONG_WAIT: Final = 0.25
_BACKOFF_BASE: Final = 0.05
_BACKOFF_CAP: Final = 2.0
# Connection options tied to the remote's own pool, or replaced for the subscriber.
_POOL_BOUND: Final = frozenset(
    {
        "retry",
        "health_check_interval",
        "socket_timeout",
        "maint_notifications_pool_handler",
        "maint_notifications_config",
        "himport_registry",
    }
)


# ---- pure helpers: the messages, the TTL of a local copy, the backoff (no I/O) ---------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Message:
    """A decoded invalidation: ``keys``, else ``pattern``, else (neither) everything."""

    sender: str | None
    keys: tuple[str, ...] | None = None
    pattern: str | None = None


def _encode_keys(sender: str, keys: Iterable[str]) -> list[bytes]:
    unique = list(dict.fromkeys(keys))
    try:
        return [
            orjson.dumps({"s": sender, "k": unique[at : at + _KEYS_PER_MESSAGE]})
            for at in range(0, len(unique), _KEYS_PER_MESSAGE)
        ]
    except orjson.JSONEncodeError:  # a key orjson refuses (a lone surrogate): drop everything
        return [_encode_flush(sender)]


def _encode_pattern(sender: str, pattern: str) -> bytes:
    try:
        return orjson.dumps({"s": sender, "p": pattern})
    except orjson.JSONEncodeError:
        return _encode_flush(sender)


def _encode_flush(sender: str) -> bytes:
    return orjson.dumps({"s": sender, "f": True})


def _decode(data: object) -> _Message:
    """The message in ``data``; anything unreadable means "drop everything"."""
    try:
        body = orjson.loads(data) if isinstance(data, (bytes, str)) else None
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return _Message(None)
    sender = body.get("s") if isinstance(body.get("s"), str) else None
    keys, pattern = body.get("k"), body.get("p")
    if isinstance(keys, list) and all(isinstance(key, str) for key in keys):
        return _Message(sender, keys=tuple(keys))
    if isinstance(pattern, str):
        return _Message(sender, pattern=pattern)
    return _Message(sender)


def _read_ops(key: str) -> list[Op]:
    # The value and its TTL, so a local copy never outlives the remote entry.
    return [Op("get", key), Op("ttl", key)]


def _mget_commands(keys: Sequence[str]) -> list[tuple[Any, ...]]:
    # The values and their TTLs, so a local copy never outlives the remote entry.
    return [("MGET", *keys), *(("PTTL", key) for key in keys)]


def _mget_replies(raw: Sequence[object]) -> tuple[list[bytes | None], list[float | None]]:
    return [_as_bytes(v) for v in cast("list[object]", raw[0])], [_decode_ttl(t) for t in raw[1:]]


def _merge(
    keys: Sequence[str], found: Sequence[bytes | None], fetched: Mapping[str, bytes | None]
) -> list[bytes | None]:
    return [fetched[k] if v is None else v for k, v in zip(keys, found, strict=True)]


def _missing(keys: Sequence[str], found: Sequence[bytes | None]) -> list[str]:
    return list(dict.fromkeys(k for k, v in zip(keys, found, strict=True) if v is None))


def _changed_keys(ops: Iterable[Op]) -> list[str]:
    return [op.key for op in ops if op.name in _WRITES]


def _local_ttl(value: bytes | None, left: float | None, local_ttl: float) -> float | None:
    """How long a copy of ``value`` may live locally; ``None``: it is not copied.

    Never longer than the remote entry has left, so a copy never outlives its original.
    """
    if value is None or value.startswith(_RESERVED) or left is None or left <= 0:
        return None
    return min(local_ttl, left)


def _backoff(failures: int, base: float = _BACKOFF_BASE, cap: float = _BACKOFF_CAP) -> float:
    """Seconds to wait after ``failures`` failed attempts in a row: doubling, capped, jittered."""
    ceiling = min(cap, base * 2.0 ** min(max(failures, 1) - 1, 16))
    return ceiling * random.uniform(0.5, 1.0)


def _seconds(value: float | timedelta, name: str) -> float:
    try:
        seconds = to_seconds(value, name=name)
    except KirocacheError as exc:
        raise ConfigurationError(str(exc)) from None
    if seconds <= 0 or math.isinf(seconds):
        msg = f"{name} must be a finite number of seconds greater than 0, got {value!r}"
        raise ConfigurationError(msg)
    return seconds


def _check_announced(replies: Sequence[object]) -> None:
    # Only a pipeline without MULTI gets here with a failed PUBLISH (in a MULTI it aborts
    # the writes too): the writes landed, and other processes learn of them by local_ttl.
    failed = next((r for r in replies if isinstance(r, BaseException)), None)
    if failed is not None:
        _log.warning(
            "a write could not be announced (%s); other processes may serve their local "
            "copies of its keys until local_ttl runs out",
            f"{type(failed).__name__}: {failed}"[:300],
        )


def _raise_failed(results: Sequence[OpResult]) -> None:
    for result in results:
        if isinstance(result, BaseException):
            raise result


# ---- the local layer and the reads that may fill it -----------------------------------------


class _Local:
    """A ``MemoryBackend`` of copies, and the reads in flight that may add to it.

    A read notes its keys with a ticket before it asks the remote, and its copies land
    only if nothing dropped those keys in the meantime. So an invalidation that arrives
    while a read is on the wire (the read may have seen the old value) wins over it.
    """

    def __init__(self, memory: MemoryBackend) -> None:
        self.memory = memory
        self._lock = threading.Lock()
        self._reads: dict[str, int] = {}
        self._tickets = itertools.count(1)

    def begin(self, keys: Iterable[str]) -> int:
        with self._lock:
            ticket = next(self._tickets)
            for key in keys:
                self._reads[key] = ticket
            return ticket

    def settle(
        self, ticket: int, keys: Iterable[str], copies: Iterable[tuple[str, bytes, float]]
    ) -> None:
        with self._lock:
            for key, value, ttl in copies:
                if self._reads.get(key) == ticket:
                    # A value too large for the layer just stays remote.
                    with contextlib.suppress(KirocacheError):
                        self.memory.set(key, value, ttl)
            for key in keys:
                if self._reads.get(key) == ticket:
                    del self._reads[key]

    def drop(self, keys: Sequence[str]) -> None:
        with self._lock:
            self.memory.delete_many(keys)
            for key in keys:
                self._reads.pop(key, None)

    def drop_matching(self, pattern: str) -> None:
        regex = glob_to_regex(pattern)
        with self._lock:
            self.memory.delete_pattern(pattern)
            self._reads = {k: t for k, t in self._reads.items() if not regex.match(k)}

    def clear(self) -> None:
        with self._lock:
            self.memory.clear()
            self._reads.clear()


# ---- the subscriber thread --------------------------------------------------------------------


class _ConnectionLostError(Exception):
    """The subscription stopped answering (no confirmation, no PONG in time)."""


@dataclasses.dataclass
class _Counters:
    received: int = 0
    applied: int = 0
    subscriptions: int = 0
    failures: int = 0


class _Subscriber:
    """A daemon thread that applies invalidations from the channel to the local layer.

    While it is not subscribed (starting, lost, reconnecting) ``connected`` is false and
    reads bypass the local layer. The layer is cleared when the subscription is lost and
    again once it is back, since messages published in between were missed.
    """

    def __init__(
        self,
        make_pool: Callable[[float], redis.ConnectionPool],
        channel: str,
        sender: str,
        local: _Local,
        ping_interval: float,
    ) -> None:
        self._make_pool = make_pool
        self._channel = channel
        self._sender = sender
        self._local = local
        self._ping_interval = ping_interval
        self._pong_wait = max(ping_interval, _MIN_PONG_WAIT)
        self._confirm_wait = max(ping_interval, _MIN_CONFIRM_WAIT)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.counters = _Counters()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def wait(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="kirocache-tiered", daemon=True
            )
            self._thread.start()

    def stop(self) -> threading.Thread | None:
        """Ask the thread to stop; returns it, for the caller to join."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        return thread

    def _run(self, stop: threading.Event) -> None:
        pool = self._make_pool(max(self._pong_wait, _MIN_CONFIRM_WAIT))
        client = redis.Redis(connection_pool=pool)
        failures = 0
        try:
            while not stop.is_set():
                pubsub = client.pubsub()  # type: ignore[no-untyped-call]
                error: Exception | None = None
                try:
                    self._subscribe(pubsub, stop)
                    failures = 0
                    self._listen(pubsub, stop)
                except Exception as exc:  # noqa: BLE001 -- any failure is a lost subscription
                    error = exc
                was_connected = self._connected.is_set()
                self._disconnected(stop)
                with contextlib.suppress(Exception):
                    pubsub.close()
                if error is not None:
                    # Counted only now, so whoever sees the count sees the layer cleared.
                    failures += 1
                    self.counters.failures += 1
                    self._log_loss(error, failures, was_connected=was_connected)
                    stop.wait(_backoff(failures))
        finally:
            self._disconnected(stop)
            with contextlib.suppress(Exception):
                pool.disconnect()

    def _disconnected(self, stop: threading.Event) -> None:
        # Reads stop using the layer first, then it is emptied. A thread stopped and
        # already replaced by a new one leaves the new one's state alone.
        with self._lock:
            if stop is self._stop:
                self._connected.clear()
        self._local.clear()

    def _subscribe(self, pubsub: PubSub, stop: threading.Event) -> None:
        pubsub.subscribe(self._channel)
        deadline = time.monotonic() + self._confirm_wait
        while True:
            message = pubsub.get_message(timeout=_POLL)
            if message is not None and message["type"] == "subscribe":
                break
            if stop.is_set():
                return
            if time.monotonic() > deadline:
                msg = "SUBSCRIBE was not confirmed in time"
                raise _ConnectionLostError(msg)
        # Whatever was published before the confirmation was missed: start from empty.
        self._local.clear()
        with self._lock:
            if stop is not self._stop:  # stopped meanwhile, and maybe restarted
                return
            self._connected.set()
        self.counters.subscriptions += 1
        if self.counters.subscriptions > 1:
            _log.info("re-subscribed to %r; the local layer is in use again", self._channel)

    def _listen(self, pubsub: PubSub, stop: threading.Event) -> None:
        next_ping = time.monotonic() + self._ping_interval
        ping_sent: float | None = None
        while not stop.is_set():
            message = pubsub.get_message(timeout=_POLL)
            now = time.monotonic()
            if message is not None:
                if message["type"] == "pong":
                    ping_sent = None
                elif message["type"] == "message":
                    self._apply(message["data"])
                    # Messages queued before the PONG show the socket is alive.
                    ping_sent = None if ping_sent is None else now
            # A socket can die without an error (a dropped route, a frozen server): only an
            # unanswered PING tells, within ping_interval plus the PONG's wait.
            if ping_sent is not None and now - ping_sent > self._pong_wait:
                msg = f"no PONG within {self._pong_wait:g} s"
                raise _ConnectionLostError(msg)
            if ping_sent is None and now >= next_ping:
                pubsub.ping(_PING_PAYLOAD)
                ping_sent, next_ping = now, now + self._ping_interval

    def _apply(self, data: object) -> None:
        self.counters.received += 1
        message = _decode(data)
        if message.sender == self._sender:
            return  # our own write already dropped its local copies
        if message.keys is not None:
            self._local.drop(message.keys)
        elif message.pattern is not None:
            try:
                self._local.drop_matching(message.pattern)
            except Exception:  # noqa: BLE001 -- a pattern we cannot apply: drop everything
                self._local.clear()
        else:
            self._local.clear()
        self.counters.applied += 1

    def _log_loss(self, exc: Exception, failures: int, *, was_connected: bool) -> None:
        detail = f"{type(exc).__name__}: {exc}"[:300]
        if was_connected:
            _log.warning(
                "lost the invalidation subscription to %r (%s); the local layer is cleared "
                "and bypassed until it is back",
                self._channel,
                detail,
            )
        else:
            _log.debug("subscribing to %r failed %d time(s): %s", self._channel, failures, detail)


def _subscriber_pool(client: redis.Redis) -> Callable[[float], redis.ConnectionPool]:
    """A factory of pools for the subscriber, reaching the remote's server as it does.

    The subscriber's connection never retries or reconnects on its own: redis-py's retry
    would quietly subscribe again and hide the gap in which messages were lost.
    """
    source = client.connection_pool
    options = {
        name: value
        for name, value in source.connection_kwargs.items()
        if name not in _POOL_BOUND and not name.startswith("orig_")
    }

    def make(timeout: float) -> redis.ConnectionPool:
        return redis.ConnectionPool(
            connection_class=source.connection_class,
            retry=Retry(NoBackoff(), 0, supported_errors=()),
            health_check_interval=0,
            socket_timeout=timeout,
            **options,
        )

    return make


# ---- the backend ----------------------------------------------------------------------------


class TieredBackend:
    r"""Redis as the source of truth, with a small in-process copy of what was read recently.

    Reads look in the local layer (a bounded ``MemoryBackend``) first, and copy what they
    fetch from Redis into it for at most ``local_ttl`` seconds (never longer than the entry
    has left in Redis; tag sets and values starting with ``b"\xc5\xff"``, the cache's
    tombstones, are never copied). Every write goes to Redis first, in one pipeline with a
    PUBLISH of the keys it changed on ``channel``; it then drops this process's copies, and
    every other ``TieredBackend`` on the channel drops theirs when the message arrives.

    A daemon thread holds the subscription, with its own connection. When it is lost (an
    error, or a PING unanswered for ``ping_interval`` seconds) the local layer is cleared
    and reads go to Redis until the thread has subscribed again (it retries with capped,
    jittered backoff); the layer is then cleared once more, since messages were missed.
    A write that never published (made by another client, or whose message was lost) is
    served stale for at most ``local_ttl`` seconds.

    Only ``get`` and ``get_many`` use the local layer; every other method goes to Redis.

    Args:
        remote: The Redis backend; this backend owns it and closes it.
        local_ttl: Longest life of a local copy, in seconds or a timedelta.
        max_entries: Most local copies held (least recently used go first).
        max_bytes: Most bytes of local copies held.
        channel: The pub/sub channel; every process sharing the keys must use the same.
        ping_interval: Seconds between the subscriber's PINGs, and how long a PONG may take.

    Raises:
        ConfigurationError: An option is invalid.
    """

    def __init__(
        self,
        remote: RedisBackend,
        *,
        local_ttl: float | timedelta = 5.0,
        max_entries: int | None = 10_000,
        max_bytes: int | None = 64 * 1024 * 1024,
        channel: str = DEFAULT_CHANNEL,
        ping_interval: float | timedelta = 1.0,
    ) -> None:
        if not isinstance(cast("object", remote), RedisBackend):
            msg = f"remote must be a RedisBackend, got {type(remote).__name__}"
            raise ConfigurationError(msg)
        if not isinstance(cast("object", channel), str) or not channel:
            msg = f"channel must be a non-empty str, got {channel!r}"
            raise ConfigurationError(msg)
        self._remote = remote
        self._local_ttl = _seconds(local_ttl, "local_ttl")
        self._memory = MemoryBackend(max_entries=max_entries, max_bytes=max_bytes)
        self._local = _Local(self._memory)
        self._channel = channel
        self._sender = secrets.token_hex(8)
        self._subscriber = _Subscriber(
            _subscriber_pool(remote._client),
            channel,
            self._sender,
            self._local,
            _seconds(ping_interval, "ping_interval"),
        )
        self._subscriber.start()
        # A backend dropped without close() still stops its thread (the thread does not
        # reference the backend, so the backend can be collected).
        weakref.finalize(self, self._subscriber.stop)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        local_ttl: float | timedelta = 5.0,
        max_entries: int | None = 10_000,
        max_bytes: int | None = 64 * 1024 * 1024,
        channel: str = DEFAULT_CHANNEL,
        ping_interval: float | timedelta = 1.0,
        **redis_options: Any,
    ) -> Self:
        """Build the backend and its ``RedisBackend`` from a URL.

        Args:
            url: ``redis://``, ``rediss://`` or ``unix://`` URL.
            local_ttl: Longest life of a local copy.
            max_entries: Most local copies held.
            max_bytes: Most bytes of local copies held.
            channel: The invalidation channel.
            ping_interval: Seconds between the subscriber's PINGs.
            **redis_options: Keyword options of :class:`RedisBackend`.

        Returns:
            The backend, already subscribing.

        Raises:
            ConfigurationError: The URL or an option is invalid.
        """
        return cls(
            RedisBackend(url, **redis_options),
            local_ttl=local_ttl,
            max_entries=max_entries,
            max_bytes=max_bytes,
            channel=channel,
            ping_interval=ping_interval,
        )

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"TieredBackend({self._remote!r}, channel={self._channel!r}, {state})"

    # ---- state ----------------------------------------------------------------------------

    @property
    def remote(self) -> RedisBackend:
        """The Redis backend underneath."""
        return self._remote

    @property
    def local(self) -> MemoryBackend:
        """The local layer, to inspect; writing to it bypasses the invalidations."""
        return self._memory

    @property
    def channel(self) -> str:
        """The pub/sub channel the invalidations travel on."""
        return self._channel

    @property
    def connected(self) -> bool:
        """Whether the subscription is up, and so whether reads use the local layer."""
        return self._subscriber.connected

    @property
    def messages_received(self) -> int:
        """Invalidation messages received, this backend's own included."""
        return self._subscriber.counters.received

    @property
    def messages_applied(self) -> int:
        """Messages from other backends applied to the local layer."""
        return self._subscriber.counters.applied

    @property
    def reconnects(self) -> int:
        """Subscriptions made again after the first (each cleared the local layer)."""
        return max(0, self._subscriber.counters.subscriptions - 1)

    @property
    def connection_failures(self) -> int:
        """Subscriptions lost, and attempts to subscribe that failed."""
        return self._subscriber.counters.failures

    def wait_connected(self, timeout: float = 5.0) -> bool:
        """Block until the subscription is up; returns whether it is.

        Reads work before that, from Redis alone. Meant for startup and tests; async code
        uses :meth:`await_connected`.
        """
        self._subscriber.start()
        return self._subscriber.wait(timeout)

    async def await_connected(self, timeout: float = 5.0) -> bool:
        """Async :meth:`wait_connected`: polls without blocking the event loop."""
        self._subscriber.start()
        deadline = time.monotonic() + timeout
        # The thread that connects knows no event loop to set an asyncio.Event on.
        while not self.connected and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return self.connected

    def _serving_local(self) -> bool:
        # After close() the backend stays usable, so a read starts the subscriber again.
        if not self._subscriber.running:
            self._subscriber.start()
        return self._subscriber.connected

    def _announce(self, keys: Sequence[str]) -> list[tuple[Any, ...]]:
        return [("PUBLISH", self._channel, data) for data in _encode_keys(self._sender, keys)]

    def _stats(self, remote: BackendStats) -> BackendStats:
        local = self._memory.stats()
        counters = self._subscriber.counters
        extra = {
            **remote.extra,
            "local_keys": local.keys,
            "local_used_memory": local.used_memory,
            "local_hits": local.hits,
            "local_misses": local.misses,
            "local_evictions": local.evictions,
            "subscriber_connected": self.connected,
            "messages_received": counters.received,
            "messages_applied": counters.applied,
            "reconnects": self.reconnects,
            "connection_failures": counters.failures,
        }
        return dataclasses.replace(remote, backend="tiered", extra=extra)

    def _copies(
        self, keys: Sequence[str], values: Sequence[object], lefts: Sequence[object]
    ) -> list[tuple[str, bytes, float]]:
        copies = []
        for key, value, left in zip(keys, values, lefts, strict=True):
            if isinstance(value, bytes) and isinstance(left, float):
                ttl = _local_ttl(value, left, self._local_ttl)
                if ttl is not None:
                    copies.append((key, value, ttl))
        return copies

    @contextlib.contextmanager
    def _filling(self, keys: Sequence[str]) -> Iterator[list[tuple[str, bytes, float]]]:
        """Note ``keys`` as being read; the copies the block adds land if no drop came first."""
        ticket = self._local.begin(keys)
        copies: list[tuple[str, bytes, float]] = []
        try:
            yield copies
        finally:
            self._local.settle(ticket, keys, copies)

    # ---- sync half: its twin is the async half below, line for line ------------------------

    def _send(
        self, operation: str, ops: Sequence[Op], *, transaction: bool = True
    ) -> list[OpResult]:
        """Run ``ops`` and the PUBLISH of the keys they change in one pipeline."""
        commands, answers = _plan(ops)
        if not commands:
            return []
        changed = _changed_keys(ops)
        try:
            raw = self._remote._pipe(
                operation,
                [*commands, *self._announce(changed)],
                transaction=transaction,
                strict=False,
            )
        finally:
            # Even when the call failed: the write may have landed.
            if changed:
                self._local.drop(changed)
        _check_announced(raw[len(commands) :])
        return [self._remote._slot(op, raw[at]) for op, at in zip(ops, answers, strict=True)]

    def _run(
        self, operation: str, ops: Sequence[Op], *, transaction: bool = True
    ) -> list[OpResult]:
        results = self._send(operation, ops, transaction=transaction)
        _raise_failed(results)
        return results

    def get(self, key: str) -> bytes | None:
        """The local copy of ``key``, else Redis's value (then copied locally)."""
        if not self._serving_local():
            return self._remote.get(key)
        held = self._memory.get(key)
        if held is not None:
            return held
        with self._filling([key]) as copies:
            value, left = self._run("get", _read_ops(key), transaction=False)
            copies.extend(self._copies([key], [value], [left]))
        return cast("bytes | None", value)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Local copies where held, the rest from Redis in one MGET (then copied locally)."""
        if not keys:
            return []
        if not self._serving_local():
            return self._remote.get_many(keys)
        found = self._memory.get_many(keys)
        missing = _missing(keys, found)
        if not missing:
            return found
        with self._filling(missing) as copies:
            raw = self._remote._pipe(
                "get_many", _mget_commands(missing), transaction=False, strict=True
            )
            values, lefts = _mget_replies(raw)
            copies.extend(self._copies(missing, values, lefts))
        return _merge(keys, found, dict(zip(missing, values, strict=True)))

    def set(self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False) -> bool:
        """Store ``value`` in Redis and announce the key; returns whether it was stored."""
        return bool(self._run("set", [Op("set", key, value, ttl=ttl, nx=nx)])[0])

    def delete(self, key: str) -> bool:
        """Remove ``key`` and announce it; returns whether it existed."""
        return bool(self._run("delete", [Op("delete", key)])[0])

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value in Redis."""
        return self._remote.exists(key)

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Store every item (one MULTI) and announce the keys."""
        self._run("set_many", [Op("set", key, value, ttl=ttl) for key, value in items.items()])

    def delete_many(self, keys: Sequence[str]) -> int:
        """Remove ``keys`` and announce them; returns how many existed."""
        return sum(map(bool, self._run("delete_many", [Op("delete", key) for key in keys])))

    def ttl(self, key: str) -> float | None:
        """Seconds left in Redis: ``None`` if absent, ``math.inf`` without expiry."""
        return self._remote.ttl(key)

    def expire(self, key: str, ttl: float) -> bool:
        """Set a new TTL in Redis and announce the key; returns whether it existed."""
        return bool(self._run("expire", [Op("expire", key, ttl=ttl)])[0])

    def persist(self, key: str) -> bool:
        """Remove the TTL of ``key`` and announce it; returns whether one was removed."""
        return bool(self._run("persist", [Op("persist", key)])[0])

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """INCRBY ``amount`` (``ttl`` on create) and announce the key; returns the result."""
        return cast("int", self._run("incr", [Op("incr", key, amount=amount, ttl=ttl)])[0])

    def scan(self, pattern: str, count: int = 500) -> Iterator[str]:
        """Keys matching ``pattern`` in Redis."""
        return self._remote.scan(pattern, count)

    def delete_pattern(self, pattern: str, batch_size: int = 500) -> int:
        """Delete the keys matching ``pattern`` in Redis, then announce the pattern.

        Returns:
            How many keys were deleted.
        """
        message = ("PUBLISH", self._channel, _encode_pattern(self._sender, pattern))
        try:
            deleted = self._remote.delete_pattern(pattern, batch_size)
        except BackendError:
            with contextlib.suppress(BackendError):  # some keys may be gone: say so if we can
                self._remote._call("delete_pattern", message)
            raise
        finally:
            self._local.drop_matching(pattern)
        if deleted:
            self._remote._call("delete_pattern", message)
        return deleted

    def tag_add(self, key: str, members: Sequence[str], ttl: float | None) -> None:
        """Add ``members`` to the tag set at ``key`` (tag sets are never copied locally)."""
        self._remote.tag_add(key, members, ttl)

    def tag_members(self, key: str) -> list[str]:
        """The members of the tag set at ``key``, sorted."""
        return self._remote.tag_members(key)

    def tag_remove(self, key: str, members: Sequence[str]) -> int:
        """Remove ``members`` from the tag set at ``key``; returns how many were in it."""
        return self._remote.tag_remove(key, members)

    def delete_if_equals(self, key: str, value: bytes) -> bool:
        """Delete ``key`` if it holds ``value``, and announce it; returns whether it did."""
        try:
            deleted = self._remote.delete_if_equals(key, value)
        finally:
            self._local.drop([key])
        if deleted:
            for command in self._announce([key]):
                self._remote._call("delete_if_equals", command)
        return deleted

    def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Run ``ops`` in Redis with the PUBLISH of the keys they change, in one pipeline."""
        return self._send("execute", ops, transaction=transaction)

    def clear_local(self) -> None:
        """Empty this process's local layer and tell every other backend on the channel to.

        Redis is untouched. Use it after changing keys behind the cache's back.
        """
        self._local.clear()
        self._remote._call("clear_local", ("PUBLISH", self._channel, _encode_flush(self._sender)))

    def ping(self) -> float:
        """PING Redis; returns the round trip in seconds."""
        return self._remote.ping()

    def stats(self) -> BackendStats:
        """Redis's figures, with the local layer's and the subscriber's in ``extra``."""
        return self._stats(self._remote.stats())

    def close(self) -> None:
        """Stop the subscriber (joined), empty the local layer and close Redis's sync pool.

        The backend may be used again: a read starts the subscriber anew.
        """
        thread = self._subscriber.stop()
        if thread is not None:
            thread.join()
        self._local.clear()
        self._remote.close()

    # ---- async half: its twin is the sync half above, line for line -------------------------

    async def _asend(
        self, operation: str, ops: Sequence[Op], *, transaction: bool = True
    ) -> list[OpResult]:
        """Async :meth:`_send`."""
        commands, answers = _plan(ops)
        if not commands:
            return []
        changed = _changed_keys(ops)
        try:
            raw = await self._remote._apipe(
                operation,
                [*commands, *self._announce(changed)],
                transaction=transaction,
                strict=False,
            )
        finally:
            # Even when the call failed: the write may have landed.
            if changed:
                self._local.drop(changed)
        _check_announced(raw[len(commands) :])
        return [self._remote._slot(op, raw[at]) for op, at in zip(ops, answers, strict=True)]

    async def _arun(
        self, operation: str, ops: Sequence[Op], *, transaction: bool = True
    ) -> list[OpResult]:
        results = await self._asend(operation, ops, transaction=transaction)
        _raise_failed(results)
        return results

    async def aget(self, key: str) -> bytes | None:
        """Async :meth:`get`."""
        if not self._serving_local():
            return await self._remote.aget(key)
        held = self._memory.get(key)
        if held is not None:
            return held
        with self._filling([key]) as copies:
            value, left = await self._arun("get", _read_ops(key), transaction=False)
            copies.extend(self._copies([key], [value], [left]))
        return cast("bytes | None", value)

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async :meth:`get_many`."""
        if not keys:
            return []
        if not self._serving_local():
            return await self._remote.aget_many(keys)
        found = self._memory.get_many(keys)
        missing = _missing(keys, found)
        if not missing:
            return found
        with self._filling(missing) as copies:
            raw = await self._remote._apipe(
                "get_many", _mget_commands(missing), transaction=False, strict=True
            )
            values, lefts = _mget_replies(raw)
            copies.extend(self._copies(missing, values, lefts))
        return _merge(keys, found, dict(zip(missing, values, strict=True)))

    async def aset(
        self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False
    ) -> bool:
        """Async :meth:`set`."""
        return bool((await self._arun("set", [Op("set", key, value, ttl=ttl, nx=nx)]))[0])

    async def adelete(self, key: str) -> bool:
        """Async :meth:`delete`."""
        return bool((await self._arun("delete", [Op("delete", key)]))[0])

    async def aexists(self, key: str) -> bool:
        """Async :meth:`exists`."""
        return await self._remote.aexists(key)

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Async :meth:`set_many`."""
        await self._arun(
            "set_many", [Op("set", key, value, ttl=ttl) for key, value in items.items()]
        )

    async def adelete_many(self, keys: Sequence[str]) -> int:
        """Async :meth:`delete_many`."""
        return sum(map(bool, await self._arun("delete_many", [Op("delete", key) for key in keys])))

    async def attl(self, key: str) -> float | None:
        """Async :meth:`ttl`."""
        return await self._remote.attl(key)

    async def aexpire(self, key: str, ttl: float) -> bool:
        """Async :meth:`expire`."""
        return bool((await self._arun("expire", [Op("expire", key, ttl=ttl)]))[0])

    async def apersist(self, key: str) -> bool:
        """Async :meth:`persist`."""
        return bool((await self._arun("persist", [Op("persist", key)]))[0])

    async def aincr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Async :meth:`incr`."""
        return cast("int", (await self._arun("incr", [Op("incr", key, amount=amount, ttl=ttl)]))[0])

    def ascan(self, pattern: str, count: int = 500) -> AsyncIterator[str]:
        """Async :meth:`scan`."""
        return self._remote.ascan(pattern, count)

    async def adelete_pattern(self, pattern: str, batch_size: int = 500) -> int:
        """Async :meth:`delete_pattern`."""
        message = ("PUBLISH", self._channel, _encode_pattern(self._sender, pattern))
        try:
            deleted = await self._remote.adelete_pattern(pattern, batch_size)
        except BackendError:
            with contextlib.suppress(BackendError):  # some keys may be gone: say so if we can
                await self._remote._acall("delete_pattern", message)
            raise
        finally:
            self._local.drop_matching(pattern)
        if deleted:
            await self._remote._acall("delete_pattern", message)
        return deleted

    async def atag_add(self, key: str, members: Sequence[str], ttl: float | None) -> None:
        """Async :meth:`tag_add`."""
        await self._remote.atag_add(key, members, ttl)

    async def atag_members(self, key: str) -> list[str]:
        """Async :meth:`tag_members`."""
        return await self._remote.atag_members(key)

    async def atag_remove(self, key: str, members: Sequence[str]) -> int:
        """Async :meth:`tag_remove`."""
        return await self._remote.atag_remove(key, members)

    async def adelete_if_equals(self, key: str, value: bytes) -> bool:
        """Async :meth:`delete_if_equals`."""
        try:
            deleted = await self._remote.adelete_if_equals(key, value)
        finally:
            self._local.drop([key])
        if deleted:
            for command in self._announce([key]):
                await self._remote._acall("delete_if_equals", command)
        return deleted

    async def aexecute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Async :meth:`execute`."""
        return await self._asend("execute", ops, transaction=transaction)

    async def aclear_local(self) -> None:
        """Async :meth:`clear_local`."""
        self._local.clear()
        await self._remote._acall(
            "clear_local", ("PUBLISH", self._channel, _encode_flush(self._sender))
        )

    async def aping(self) -> float:
        """Async :meth:`ping`."""
        return await self._remote.aping()

    async def astats(self) -> BackendStats:
        """Async :meth:`stats`."""
        return self._stats(await self._remote.astats())

    async def aclose(self) -> None:
        """Async :meth:`close`: waits for the subscriber without blocking the event loop."""
        thread = self._subscriber.stop()
        if thread is not None:
            while thread.is_alive():  # noqa: ASYNC110 -- join() would block the loop
                await asyncio.sleep(_POLL / 10)
            thread.join()
        self._local.clear()
        await self._remote.aclose()
