"""TieredBackend: Redis as the source of truth, a small in-process layer in front of it.

Invalidations travel on a Redis pub/sub channel, so each process drops its local copies of
the keys another process changed. The message format, encoded with orjson, is one of::

    {"s": "<sender id>", "k": ["full:key:1", "full:key:2"]}   drop these keys
    {"s": "<sender id>", "p": "glob:pattern:*"}               drop the keys matching this
    {"s": "<sender id>", "f": true}                            drop everything

A backend ignores the messages it sent itself. Anything it cannot read drops everything.

With ``invalidation="tracking"`` Redis itself sends the invalidations, through client
tracking: see :mod:`kirocache.backends._tiered_tracking`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, cast

import redis

from kirocache._values.types import option_seconds
from kirocache.backends._protocol import BackendStats, Op, OpResult
from kirocache.backends._tiered_cluster import ClusterRoute, NodeRotation
from kirocache.backends._tiered_io import OneNode, Route, TieredIO
from kirocache.backends._tiered_local import Local

# The tests import the pure helpers aliased below from here, by their pre-split names.
from kirocache.backends._tiered_local import copy_ttl as _local_ttl  # noqa: F401
from kirocache.backends._tiered_messages import decode as _decode  # noqa: F401
from kirocache.backends._tiered_messages import encode_flush as _encode_flush  # noqa: F401
from kirocache.backends._tiered_messages import encode_keys as _encode_keys  # noqa: F401
from kirocache.backends._tiered_messages import encode_pattern as _encode_pattern  # noqa: F401
from kirocache.backends._tiered_subscriber import POLL, Subscriber, subscriber_pool
from kirocache.backends._tiered_subscriber import backoff as _backoff  # noqa: F401
from kirocache.backends._tiered_tracking import tracked_prefixes
from kirocache.backends.cluster import RedisClusterBackend, multi_node_backend
from kirocache.backends.memory import MemoryBackend
from kirocache.backends.redis import RedisBackend
from kirocache.exceptions import ConfigurationError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["TieredBackend"]

DEFAULT_CHANNEL: Final = "kirocache:invalidate"

Invalidation: TypeAlias = Literal["pubsub", "tracking"]


def _nothing() -> None:
    return None


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

    With ``invalidation="tracking"`` (a near cache) Redis invalidates the copies itself:
    the subscriber's connection turns on client tracking in broadcast mode for
    ``tracking_prefixes``, so any write to those keys -- from any client, and expiry and
    eviction too -- drops the copies, and writes publish nothing. Only keys under the
    prefixes are copied. The channel still carries :meth:`clear_local`'s flushes.

    With ``fail_safe`` a read that fails because Redis is unreachable serves the last
    value this process read, at most ``fail_safe`` seconds old, instead of failing;
    losing the subscription no longer forgets those values (fresh copies are still
    cleared). Every invalidation this process learns of -- its own writes and deletes,
    even failed ones, and messages -- drops them. Serves are counted
    (``fail_safe_served``).

    On a Redis Cluster (``remote`` a :class:`~kirocache.backends.RedisClusterBackend`) the
    messages are plain ``PUBLISH``es, which the cluster forwards to every node: the
    subscriber listens on any node and moves to the next one when its node is lost (the
    layer cleared and bypassed meanwhile, as above); a write's announcement follows the
    write as one more round, on a node that just answered. Tracking mode is refused
    there. See docs/cluster.md, "Near cache on a cluster".

    Args:
        remote: The Redis backend (one node, Sentinel or a cluster); this backend owns it
            and closes it.
        local_ttl: Longest life of a local copy, in seconds or a timedelta.
        max_entries: Most local copies held (least recently used go first); the fail-safe
            store has the same bound.
        max_bytes: Most bytes of local copies held; the fail-safe store has the same bound.
        channel: The pub/sub channel; every process sharing the keys must use the same.
        ping_interval: Seconds between the subscriber's PINGs, and how long a PONG may take.
        invalidation: ``"pubsub"`` (writes announce their keys on ``channel``) or
            ``"tracking"`` (Redis sends the invalidations; needs Redis 6 or later).
        tracking_prefixes: The key prefixes tracked in ``"tracking"`` mode (usually the
            cache's ``key_prefix``); ``None``: every key of the server.
        fail_safe: How long a last value may be served while Redis is unreachable
            (seconds or a timedelta); ``None``: never.

    Raises:
        ConfigurationError: An option is invalid, or tracking is asked of a cluster.
    """

    def __init__(
        self,
        remote: RedisBackend | RedisClusterBackend,
        *,
        local_ttl: float | timedelta = 5.0,
        max_entries: int | None = 10_000,
        max_bytes: int | None = 64 * 1024 * 1024,
        channel: str = DEFAULT_CHANNEL,
        ping_interval: float | timedelta = 1.0,
        invalidation: Invalidation = "pubsub",
        tracking_prefixes: Sequence[str] | None = None,
        fail_safe: float | timedelta | None = None,
    ) -> None:
        if not isinstance(cast("object", remote), (RedisBackend, RedisClusterBackend)):
            msg = (
                f"remote must be a RedisBackend (or RedisSentinelBackend) or a "
                f"RedisClusterBackend, got {type(remote).__name__}"
            )
            raise ConfigurationError(msg)
        if not isinstance(cast("object", channel), str) or not channel:
            msg = f"channel must be a non-empty str, got {channel!r}"
            raise ConfigurationError(msg)
        if invalidation not in ("pubsub", "tracking"):
            msg = f'invalidation must be "pubsub" or "tracking", got {invalidation!r}'
            raise ConfigurationError(msg)
        if tracking_prefixes is not None and invalidation != "tracking":
            msg = 'tracking_prefixes needs invalidation="tracking"'
            raise ConfigurationError(msg)
        if isinstance(remote, RedisClusterBackend) and invalidation == "tracking":
            msg = (
                'invalidation="tracking" does not work on a Redis Cluster: Redis tracks keys '
                "per node and sends their invalidations from the node that holds them, so one "
                'connection would hear of a third of the writes; use invalidation="pubsub" '
                "(the default), whose messages the cluster forwards to every node"
            )
            raise ConfigurationError(msg)
        tracking = tracked_prefixes(tracking_prefixes) if invalidation == "tracking" else None
        self._remote = remote
        self._invalidation: Invalidation = invalidation
        local_seconds = option_seconds(local_ttl, "local_ttl")
        self._memory = MemoryBackend(max_entries=max_entries, max_bytes=max_bytes)
        self._fail_safe = None if fail_safe is None else option_seconds(fail_safe, "fail_safe")
        self._local = Local(
            self._memory,
            local_seconds,
            copyable=tracking or ("",),
            fallback=None
            if self._fail_safe is None
            else MemoryBackend(max_entries=max_entries, max_bytes=max_bytes),
            fail_safe=self._fail_safe or 0.0,
        )
        self._channel = channel
        self._sender = secrets.token_hex(8)
        route: Route
        pools: Callable[[float, int], redis.ConnectionPool]
        # What the subscriber's pools leave open once it stopped (a cluster's sync client).
        self._release: Callable[[], None] = _nothing
        if isinstance(remote, RedisClusterBackend):
            rotation = NodeRotation(remote, channel)
            route, pools, self._release = ClusterRoute(remote, channel), rotation, rotation.close
        else:
            route = OneNode(remote, channel)
            pools = subscriber_pool(remote._client, resp2=tracking is not None)
        self._io = TieredIO(remote, self._local, route, self._sender, announce=not tracking)
        self._subscriber = Subscriber(
            pools,
            channel,
            self._sender,
            self._local,
            option_seconds(ping_interval, "ping_interval"),
            tracking,
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
        invalidation: Invalidation = "pubsub",
        tracking_prefixes: Sequence[str] | None = None,
        fail_safe: float | timedelta | None = None,
        **redis_options: Any,
    ) -> Self:
        """Build the backend and its ``RedisBackend`` from a URL.

        Args:
            url: ``redis://``, ``rediss://`` or ``unix://`` URL; or a ``redis+cluster://``
                or ``redis+sentinel://`` one (and their ``rediss+`` forms).
            local_ttl: Longest life of a local copy.
            max_entries: Most local copies held.
            max_bytes: Most bytes of local copies held.
            channel: The invalidation channel.
            ping_interval: Seconds between the subscriber's PINGs.
            invalidation: ``"pubsub"`` or ``"tracking"``.
            tracking_prefixes: The key prefixes tracked in ``"tracking"`` mode.
            fail_safe: How long a last value may be served while Redis is unreachable.
            **redis_options: Keyword options of the URL's backend (:class:`RedisBackend`,
                ``RedisClusterBackend`` or ``RedisSentinelBackend``).

        Returns:
            The backend, already subscribing.

        Raises:
            ConfigurationError: The URL or an option is invalid.
        """
        scheme = url.partition("://")[0].lower()
        remote = (
            multi_node_backend(url, redis_options, also=frozenset())
            if scheme.endswith(("+cluster", "+sentinel"))
            else RedisBackend(url, **redis_options)
        )
        return cls(
            remote,
            local_ttl=local_ttl,
            max_entries=max_entries,
            max_bytes=max_bytes,
            channel=channel,
            ping_interval=ping_interval,
            invalidation=invalidation,
            tracking_prefixes=tracking_prefixes,
            fail_safe=fail_safe,
        )

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        mode = "" if self._invalidation == "pubsub" else ", invalidation='tracking'"
        return f"TieredBackend({self._remote!r}, channel={self._channel!r}{mode}, {state})"

    # ---- state ----------------------------------------------------------------------------

    @property
    def remote(self) -> RedisBackend | RedisClusterBackend:
        """The Redis backend underneath."""
        return self._remote

    def node_states(self) -> dict[str, dict[str, object]]:
        """The remote cluster's per-node circuit breakers, without I/O.

        Health checks and the exporters read a backend's ``node_states()``; through a
        ``TieredBackend`` they see the nodes of the cluster underneath.

        Returns:
            :meth:`RedisClusterBackend.node_states` of the remote; empty when the remote
            is one node (or Sentinel's master).
        """
        if isinstance(self._remote, RedisClusterBackend):
            return self._remote.node_states()
        return {}

    @property
    def local(self) -> MemoryBackend:
        """The local layer, to inspect; writing to it bypasses the invalidations."""
        return self._memory

    @property
    def channel(self) -> str:
        """The pub/sub channel the invalidations travel on."""
        return self._channel

    @property
    def invalidation(self) -> Invalidation:
        """How the local copies are invalidated: ``"pubsub"`` or ``"tracking"``."""
        return self._invalidation

    @property
    def fail_safe_served(self) -> int:
        """Values served from the fail-safe store while Redis was unreachable."""
        return self._local.stale_served

    @property
    def connected(self) -> bool:
        """Whether the subscription is up, and so whether reads use the local layer."""
        return self._subscriber.connected

    @property
    def subscriber_node(self) -> str | None:
        """The node (``host:port``) the subscription was last made on; ``None`` before.

        On a cluster it changes when the subscriber moves to another node; through
        Sentinel it follows the master.
        """
        return self._subscriber.node

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
        return self._subscriber.counters.reconnects

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

    def _stats(self, remote: BackendStats) -> BackendStats:
        extra = {
            **remote.extra,
            **self._local.figures(),
            **self._subscriber.figures(),
            "invalidation": self._invalidation,
        }
        return dataclasses.replace(remote, backend="tiered", extra=extra)

    def kept(self, key: str) -> bytes | None:
        """With ``fail_safe``, the last value this process read of ``key``, else ``None``.

        No I/O: the cache asks when Redis did not answer or its circuit breaker keeps it
        from asking, and serves the value as stale (never after an invalidation it knows
        of: its pending invalidations are checked first). Counted in ``fail_safe_served``.
        """
        return self._local.kept(key)

    # ---- sync half: its twin is the async half below, line for line ------------------------

    def get(self, key: str) -> bytes | None:
        """The local copy of ``key``, else Redis's value (then copied locally)."""
        if not self._serving_local():
            if self._fail_safe is None:
                return self._remote.get(key)
            return self._io.get(key, fresh=False)
        return self._io.get(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Local copies where held, the rest from Redis in one MGET (then copied locally)."""
        if not keys:
            return []
        if not self._serving_local():
            if self._fail_safe is None:
                return self._remote.get_many(keys)
            return self._io.get_many(keys, fresh=False)
        return self._io.get_many(keys)

    def set(self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False) -> bool:
        """Store ``value`` in Redis and announce the key; returns whether it was stored."""
        return bool(self._io.run("set", [Op("set", key, value, ttl=ttl, nx=nx)])[0])

    def delete(self, key: str) -> bool:
        """Remove ``key`` and announce it; returns whether it existed."""
        return bool(self._io.run("delete", [Op("delete", key)])[0])

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value in Redis."""
        return self._remote.exists(key)

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Store every item (one MULTI) and announce the keys."""
        self._io.run("set_many", [Op("set", key, value, ttl=ttl) for key, value in items.items()])

    def delete_many(self, keys: Sequence[str]) -> int:
        """Remove ``keys`` and announce them; returns how many existed."""
        return sum(map(bool, self._io.run("delete_many", [Op("delete", key) for key in keys])))

    def ttl(self, key: str) -> float | None:
        """Seconds left in Redis: ``None`` if absent, ``math.inf`` without expiry."""
        return self._remote.ttl(key)

    def expire(self, key: str, ttl: float) -> bool:
        """Set a new TTL in Redis and announce the key; returns whether it existed."""
        return bool(self._io.run("expire", [Op("expire", key, ttl=ttl)])[0])

    def persist(self, key: str) -> bool:
        """Remove the TTL of ``key`` and announce it; returns whether one was removed."""
        return bool(self._io.run("persist", [Op("persist", key)])[0])

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """INCRBY ``amount`` (``ttl`` on create) and announce the key; returns the result."""
        return cast("int", self._io.run("incr", [Op("incr", key, amount=amount, ttl=ttl)])[0])

    def scan(self, pattern: str, count: int = 500) -> Iterator[str]:
        """Keys matching ``pattern`` in Redis."""
        return self._remote.scan(pattern, count)

    def delete_pattern(self, pattern: str, batch_size: int = 500) -> int:
        """Delete the keys matching ``pattern`` in Redis, then announce the pattern.

        Returns:
            How many keys were deleted.
        """
        return self._io.delete_pattern(pattern, batch_size)

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
        return self._io.delete_if_equals(key, value)

    def execute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Run ``ops`` in Redis with the PUBLISH of the keys they change, in one pipeline."""
        return self._io.send("execute", ops, transaction=transaction)

    def clear_local(self) -> None:
        """Empty this process's local layer and tell every other backend on the channel to.

        Redis is untouched. Use it after changing keys behind the cache's back.
        """
        self._io.clear_local()

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

    async def aget(self, key: str) -> bytes | None:
        """Async :meth:`get`."""
        if not self._serving_local():
            if self._fail_safe is None:
                return await self._remote.aget(key)
            return await self._io.aget(key, fresh=False)
        return await self._io.aget(key)

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async :meth:`get_many`."""
        if not keys:
            return []
        if not self._serving_local():
            if self._fail_safe is None:
                return await self._remote.aget_many(keys)
            return await self._io.aget_many(keys, fresh=False)
        return await self._io.aget_many(keys)

    async def aset(
        self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False
    ) -> bool:
        """Async :meth:`set`."""
        return bool((await self._io.arun("set", [Op("set", key, value, ttl=ttl, nx=nx)]))[0])

    async def adelete(self, key: str) -> bool:
        """Async :meth:`delete`."""
        return bool((await self._io.arun("delete", [Op("delete", key)]))[0])

    async def aexists(self, key: str) -> bool:
        """Async :meth:`exists`."""
        return await self._remote.aexists(key)

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Async :meth:`set_many`."""
        await self._io.arun(
            "set_many", [Op("set", key, value, ttl=ttl) for key, value in items.items()]
        )

    async def adelete_many(self, keys: Sequence[str]) -> int:
        """Async :meth:`delete_many`."""
        return sum(
            map(bool, await self._io.arun("delete_many", [Op("delete", key) for key in keys]))
        )

    async def attl(self, key: str) -> float | None:
        """Async :meth:`ttl`."""
        return await self._remote.attl(key)

    async def aexpire(self, key: str, ttl: float) -> bool:
        """Async :meth:`expire`."""
        return bool((await self._io.arun("expire", [Op("expire", key, ttl=ttl)]))[0])

    async def apersist(self, key: str) -> bool:
        """Async :meth:`persist`."""
        return bool((await self._io.arun("persist", [Op("persist", key)]))[0])

    async def aincr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Async :meth:`incr`."""
        return cast(
            "int",
            (await self._io.arun("incr", [Op("incr", key, amount=amount, ttl=ttl)]))[0],
        )

    def ascan(self, pattern: str, count: int = 500) -> AsyncIterator[str]:
        """Async :meth:`scan`."""
        return self._remote.ascan(pattern, count)

    async def adelete_pattern(self, pattern: str, batch_size: int = 500) -> int:
        """Async :meth:`delete_pattern`."""
        return await self._io.adelete_pattern(pattern, batch_size)

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
        return await self._io.adelete_if_equals(key, value)

    async def aexecute(self, ops: Sequence[Op], *, transaction: bool = False) -> list[OpResult]:
        """Async :meth:`execute`."""
        return await self._io.asend("execute", ops, transaction=transaction)

    async def aclear_local(self) -> None:
        """Async :meth:`clear_local`."""
        await self._io.aclear_local()

    async def aping(self) -> float:
        """Async :meth:`ping`."""
        return await self._remote.aping()

    async def astats(self) -> BackendStats:
        """Async :meth:`stats`."""
        return self._stats(await self._remote.astats())

    async def aclose(self) -> None:
        """Async :meth:`close`: waits for the subscriber without blocking the event loop.

        On a cluster it also closes the sync client the subscriber found its nodes with.
        """
        thread = self._subscriber.stop()
        if thread is not None:
            while thread.is_alive():  # noqa: ASYNC110 -- join() would block the loop
                await asyncio.sleep(POLL / 10)
            thread.join()
        self._local.clear()
        self._release()  # closes sockets, no I/O to wait for
        await self._remote.aclose()
