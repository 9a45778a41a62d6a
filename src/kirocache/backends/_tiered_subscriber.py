"""TieredBackend's subscriber: a daemon thread that applies invalidations to the local layer."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from kirocache._values.randomness import RANDOM
from kirocache.backends._tiered_local import Local
from kirocache.backends._tiered_messages import decode
from kirocache.backends._tiered_tracking import INVALIDATE_CHANNEL, decode_keys, enable

if TYPE_CHECKING:
    from redis.client import PubSub

__all__ = ["POLL", "Subscriber", "backoff", "subscriber_pool"]

# The public module's logger, which is the name applications configure.
_log = logging.getLogger("kirocache.backends.tiered")

_PING_PAYLOAD: Final = "kirocache-tiered"
_INVALIDATE_BYTES: Final = INVALIDATE_CHANNEL.encode()
# How long a subscriber waits for messages before it checks whether to stop or PING.
POLL: Final = 0.1
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


def backoff(failures: int, base: float = _BACKOFF_BASE, cap: float = _BACKOFF_CAP) -> float:
    """Seconds to wait after ``failures`` failed attempts in a row: doubling, capped, jittered."""
    ceiling = min(cap, base * 2.0 ** min(max(failures, 1) - 1, 16))
    return ceiling * RANDOM.uniform(0.5, 1.0)


# ---- the subscriber thread --------------------------------------------------------------------


class _ConnectionLostError(Exception):
    """The subscription stopped answering (no confirmation, no PONG in time)."""


@dataclasses.dataclass
class _Counters:
    received: int = 0
    applied: int = 0
    subscriptions: int = 0
    failures: int = 0

    @property
    def reconnects(self) -> int:
        return max(0, self.subscriptions - 1)


class Subscriber:
    """A daemon thread that applies invalidations from the channel to the local layer.

    While it is not subscribed (starting, lost, reconnecting) ``connected`` is false and
    reads bypass the local layer. The layer is cleared when the subscription is lost and
    again once it is back, since messages published in between were missed (the fail-safe
    store is kept: nothing is known to be invalid).

    With ``tracking`` (the prefixes to track) the connection first turns Redis's client
    tracking on, redirected to itself, and subscribes to ``__redis__:invalidate`` beside
    the channel: see :mod:`kirocache.backends._tiered_tracking`.

    ``make_pool`` is called for every attempt to subscribe, with the socket timeout and the
    failed attempts in a row before it, so a cluster's attempts can go to one node after
    another (:mod:`kirocache.backends._tiered_cluster`).
    """

    def __init__(
        self,
        make_pool: Callable[[float, int], redis.ConnectionPool],
        channel: str,
        sender: str,
        local: Local,
        ping_interval: float,
        tracking: tuple[str, ...] | None = None,
    ) -> None:
        self._make_pool = make_pool
        self._channel = channel
        self._tracking = tracking
        self._sender = sender
        self._local = local
        self._ping_interval = ping_interval
        self._pong_wait = max(ping_interval, _MIN_PONG_WAIT)
        self._confirm_wait = max(ping_interval, _MIN_CONFIRM_WAIT)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connected = threading.Event()
        # The subscription being read, for stop() to wake its poll at once.
        self._pubsub: PubSub | None = None
        self.counters = _Counters()
        # Where the subscription was last made ("host:port"), for stats and operators.
        self.node: str | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def figures(self) -> dict[str, object]:
        """The subscription's state and counts, for the backend's stats."""
        return {
            "subscriber_connected": self.connected,
            "subscriber_node": self.node,
            "messages_received": self.counters.received,
            "messages_applied": self.counters.applied,
            "reconnects": self.counters.reconnects,
            "connection_failures": self.counters.failures,
        }

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
        """Ask the thread to stop; returns it, for the caller to join.

        The thread's poll is woken at once (its socket shut down), so a join returns
        without waiting out the poll's ``POLL`` seconds.
        """
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
            pubsub = self._pubsub
        if thread is not None and pubsub is not None:
            sock = getattr(pubsub.connection, "_sock", None)
            with contextlib.suppress(OSError, AttributeError):
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
        return thread

    def _run(self, stop: threading.Event) -> None:
        failures = 0
        try:
            while not stop.is_set():
                # A pool per attempt: on a cluster each attempt may reach another node.
                pool: redis.ConnectionPool | None = None
                pubsub: PubSub | None = None
                error: Exception | None = None
                try:
                    pool = self._make_pool(max(self._pong_wait, _MIN_CONFIRM_WAIT), failures)
                    pubsub = redis.Redis(connection_pool=pool).pubsub()  # type: ignore[no-untyped-call]
                    with self._lock:
                        self._pubsub = pubsub
                    self._subscribe(pubsub, stop)
                    failures = 0
                    self._listen(pubsub, stop)
                except Exception as exc:  # noqa: BLE001 -- any failure is a lost subscription
                    error = exc
                was_connected = self._connected.is_set()
                self._disconnected(stop)
                with contextlib.suppress(Exception):
                    if pubsub is not None:
                        pubsub.close()
                with contextlib.suppress(Exception):
                    if pool is not None:
                        pool.disconnect()
                with self._lock:
                    self._pubsub = None
                if error is not None and not stop.is_set():  # not a loss: stop() woke it
                    # Counted only now, so whoever sees the count sees the layer cleared.
                    failures += 1
                    self.counters.failures += 1
                    self._log_loss(error, failures, was_connected=was_connected)
                    stop.wait(backoff(failures))
        finally:
            self._disconnected(stop)

    def _disconnected(self, stop: threading.Event) -> None:
        # Reads stop using the layer first, then it is emptied. A thread stopped and
        # already replaced by a new one leaves the new one's state alone.
        with self._lock:
            if stop is self._stop:
                self._connected.clear()
        self._local.clear(fallback=False)

    def _subscribe(self, pubsub: PubSub, stop: threading.Event) -> None:
        channels = [self._channel]
        if self._tracking is not None:
            # Tracking before SUBSCRIBE: a subscribed RESP2 connection takes no other command.
            connection = pubsub.connection_pool.get_connection()
            pubsub.connection = connection  # released by pubsub.close(), whatever happens
            enable(connection, self._tracking)
            channels.append(INVALIDATE_CHANNEL)
        pubsub.subscribe(*channels)
        deadline = time.monotonic() + self._confirm_wait
        confirmed = 0
        while True:
            message = pubsub.get_message(timeout=POLL)
            if message is not None and message["type"] == "subscribe":
                confirmed += 1
            if confirmed == len(channels):
                break
            if stop.is_set():
                return
            if time.monotonic() > deadline:
                msg = "SUBSCRIBE was not confirmed in time"
                raise _ConnectionLostError(msg)
        # Whatever was published before the confirmation was missed: start from empty.
        self._local.clear(fallback=False)
        self.node = _address(pubsub.connection)
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
            message = pubsub.get_message(timeout=POLL)
            now = time.monotonic()
            if message is not None:
                if message["type"] == "pong":
                    ping_sent = None
                elif message["type"] == "message":
                    self._apply(message["channel"], message["data"])
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

    def _apply(self, channel: object, data: object) -> None:
        self.counters.received += 1
        if self._tracking is not None and channel in (INVALIDATE_CHANNEL, _INVALIDATE_BYTES):
            keys = decode_keys(data)
            if keys is None:  # FLUSHALL, FLUSHDB
                self._local.clear()
            else:
                self._local.drop(keys)
            self.counters.applied += 1
            return
        message = decode(data)
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
        refused = isinstance(
            exc, (redis.AuthenticationError, redis.exceptions.NoPermissionError)
        ) or str(exc).startswith(("NOPERM", "NOAUTH", "WRONGPASS"))
        # A server without client tracking (before Redis 6) answers CLIENT TRACKING with
        # an error: as much a misconfiguration as a refused grant.
        refused = refused or (self._tracking is not None and isinstance(exc, redis.ResponseError))
        if refused:
            # A misconfiguration, not an outage: every write waits on a channel it never
            # gets, so it is an error, said once per streak of refusals.
            if failures <= 1:
                _log.error(
                    "the server refuses the invalidation channel %r to this client (%s): the "
                    "local layer stays bypassed; grant the ACL user the channel (ACL SETUSER "
                    "<user> &%s%s) or fix the credentials",
                    self._channel,
                    detail,
                    self._channel,
                    "" if self._tracking is None else " +client|id +client|tracking",
                )
            return
        if was_connected:
            _log.warning(
                "lost the invalidation subscription to %r (%s); the local layer is cleared "
                "and bypassed until it is back",
                self._channel,
                detail,
            )
        else:
            _log.debug("subscribing to %r failed %d time(s): %s", self._channel, failures, detail)


def _address(connection: object) -> str | None:
    host, port = getattr(connection, "host", None), getattr(connection, "port", None)
    if isinstance(host, str) and port is not None:
        return f"{host}:{port}"
    path = getattr(connection, "path", None)
    return path if isinstance(path, str) else None


def subscriber_pool(
    client: redis.Redis, *, resp2: bool = False
) -> Callable[[float, int], redis.ConnectionPool]:
    """A factory of pools for the subscriber, reaching the remote's server as it does.

    The subscriber's connection never retries or reconnects on its own: redis-py's retry
    would quietly subscribe again and hide the gap in which messages were lost (and, with
    tracking, reconnect without it). ``resp2`` forces RESP2, which tracking needs.
    """
    source = client.connection_pool
    options = {
        name: value
        for name, value in source.connection_kwargs.items()
        if name not in _POOL_BOUND and not name.startswith("orig_")
    }
    if resp2:
        options["protocol"] = 2

    def make(timeout: float, failures: int = 0) -> redis.ConnectionPool:
        return redis.ConnectionPool(
            connection_class=source.connection_class,
            retry=Retry(NoBackoff(), 0, supported_errors=()),
            health_check_interval=0,
            socket_timeout=timeout,
            **options,
        )

    return make
