"""TieredBackend's I/O: reads that fill the local layer, writes announced on the channel."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, Protocol, cast

from kirocache.backends._protocol import Op, OpResult
from kirocache.backends._redis_commands import Command, as_bytes, decode_ttl, plan
from kirocache.backends._tiered_messages import encode_flush, encode_keys, encode_pattern
from kirocache.exceptions import BackendError

if TYPE_CHECKING:
    from kirocache.backends._tiered_local import Local
    from kirocache.backends.cluster import RedisClusterBackend
    from kirocache.backends.redis import RedisBackend

__all__ = ["OneNode", "Route", "TieredIO", "changed_keys", "check_announced"]

# The public module's logger, which is the name applications configure.
_log = logging.getLogger("kirocache.backends.tiered")

# Ops that change what a key holds. tag_add is not among them: tag sets are never copied
# into the local layer, so no process holds a copy to drop.
_WRITES: Final = frozenset(
    {"set", "delete", "delete_if", "expire", "incr", "persist", "set_if", "swap"}
)


# ---- pure helpers: what a read asks for, and what a write announces (no I/O) -----------------


def _read_ops(key: str) -> list[Op]:
    # The value and its TTL, so a local copy never outlives the remote entry.
    return [Op("get", key), Op("ttl", key)]


def _mget_commands(keys: Sequence[str]) -> list[Command]:
    # The values and their TTLs, so a local copy never outlives the remote entry.
    return [("MGET", *keys), *(("PTTL", key) for key in keys)]


def _mget_replies(raw: Sequence[object]) -> tuple[list[bytes | None], list[float | None]]:
    return [as_bytes(v) for v in cast("list[object]", raw[0])], [decode_ttl(t) for t in raw[1:]]


def _merge(
    keys: Sequence[str], found: Sequence[bytes | None], fetched: Mapping[str, bytes | None]
) -> list[bytes | None]:
    return [fetched[k] if v is None else v for k, v in zip(keys, found, strict=True)]


def _missing(keys: Sequence[str], found: Sequence[bytes | None]) -> list[str]:
    return list(dict.fromkeys(k for k, v in zip(keys, found, strict=True) if v is None))


def changed_keys(ops: Iterable[Op]) -> list[str]:
    """The keys ``ops`` change (reads and tag-set ops change no copy)."""
    return [op.key for op in ops if op.name in _WRITES]


def check_announced(replies: Sequence[object]) -> None:
    """Log the first failed PUBLISH of a write whose changes landed."""
    # On one node only a pipeline without MULTI gets here with a failed PUBLISH (in a MULTI
    # it aborts the writes too): the writes landed, and other processes learn of them by
    # local_ttl.
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


# ---- how the tiers reach Redis: one node here, a cluster in _tiered_cluster ------------------


class Route(Protocol):
    """How :class:`TieredIO` reads many keys, writes and announces on one deployment."""

    def fetch_many(self, keys: Sequence[str]) -> tuple[list[bytes | None], list[float | None]]:
        """The values of ``keys`` and their TTLs, in order."""
        ...

    def write(
        self, operation: str, ops: Sequence[Op], messages: Sequence[bytes], *, transaction: bool
    ) -> list[OpResult]:
        """Run ``ops``, then (never before they landed) publish ``messages``."""
        ...

    def publish(self, operation: str, data: bytes, *, near: str | None = None) -> None:
        """Publish ``data`` on the channel (``near``: a key whose node is known to answer)."""
        ...

    async def afetch_many(
        self, keys: Sequence[str]
    ) -> tuple[list[bytes | None], list[float | None]]:
        """Async :meth:`fetch_many`."""
        ...

    async def awrite(
        self, operation: str, ops: Sequence[Op], messages: Sequence[bytes], *, transaction: bool
    ) -> list[OpResult]:
        """Async :meth:`write`."""
        ...

    async def apublish(self, operation: str, data: bytes, *, near: str | None = None) -> None:
        """Async :meth:`publish`."""
        ...


class OneNode:
    """One Redis (or Sentinel's master): a write and its PUBLISH go in one pipeline."""

    def __init__(self, remote: RedisBackend, channel: str) -> None:
        self._remote = remote
        self._channel = channel

    def _publishes(self, messages: Sequence[bytes]) -> list[Command]:
        return [("PUBLISH", self._channel, data) for data in messages]

    def _results(
        self, ops: Sequence[Op], answers: Sequence[int], raw: Sequence[object], sent: int
    ) -> list[OpResult]:
        check_announced(raw[sent:])
        return [self._remote._slot(op, raw[at]) for op, at in zip(ops, answers, strict=True)]

    # ---- sync half: its twin is the async half below, line for line ------------------------

    def fetch_many(self, keys: Sequence[str]) -> tuple[list[bytes | None], list[float | None]]:
        """The values of ``keys`` (one MGET) and their TTLs."""
        raw = self._remote._pipe("get_many", _mget_commands(keys), transaction=False, strict=True)
        return _mget_replies(raw)

    def write(
        self, operation: str, ops: Sequence[Op], messages: Sequence[bytes], *, transaction: bool
    ) -> list[OpResult]:
        """The writes, then their PUBLISH, in one pipeline (one MULTI with ``transaction``)."""
        commands, answers = plan(ops)
        if not commands:
            return []
        raw = self._remote._pipe(
            operation,
            [*commands, *self._publishes(messages)],
            transaction=transaction,
            strict=False,
        )
        return self._results(ops, answers, raw, len(commands))

    def publish(self, operation: str, data: bytes, *, near: str | None = None) -> None:
        """PUBLISH ``data`` on the channel."""
        self._remote._call(operation, ("PUBLISH", self._channel, data))

    # ---- async half: its twin is the sync half above, line for line -------------------------

    async def afetch_many(
        self, keys: Sequence[str]
    ) -> tuple[list[bytes | None], list[float | None]]:
        """Async :meth:`fetch_many`."""
        raw = await self._remote._apipe(
            "get_many", _mget_commands(keys), transaction=False, strict=True
        )
        return _mget_replies(raw)

    async def awrite(
        self, operation: str, ops: Sequence[Op], messages: Sequence[bytes], *, transaction: bool
    ) -> list[OpResult]:
        """Async :meth:`write`."""
        commands, answers = plan(ops)
        if not commands:
            return []
        raw = await self._remote._apipe(
            operation,
            [*commands, *self._publishes(messages)],
            transaction=transaction,
            strict=False,
        )
        return self._results(ops, answers, raw, len(commands))

    async def apublish(self, operation: str, data: bytes, *, near: str | None = None) -> None:
        """Async :meth:`publish`."""
        await self._remote._acall(operation, ("PUBLISH", self._channel, data))


# ---- reads and writes through both tiers ----------------------------------------------------


class TieredIO:
    """Reads and writes through both tiers, keeping the local layer in step with Redis.

    A read serves the local copy, else fetches from Redis and copies what it found. A write
    runs on Redis with the PUBLISH of the keys it changes (never before the write landed),
    then drops this process's copies of them. ``route`` is how Redis is reached: one node
    (:class:`OneNode`) or a cluster (:mod:`kirocache.backends._tiered_cluster`). Reads go
    through :meth:`run` too, and publish nothing.

    Without ``announce`` (tracking mode) writes publish nothing: Redis tells every tracking
    process itself. A read that fails for an outage serves the last values known where the
    local layer keeps them (fail-safe), else raises.
    """

    def __init__(
        self,
        remote: RedisBackend | RedisClusterBackend,
        local: Local,
        route: Route,
        sender: str,
        *,
        announce: bool = True,
    ) -> None:
        self._remote = remote
        self._local = local
        self._route = route
        self._sender = sender
        self._announcing = announce

    def _announce(self, keys: Sequence[str]) -> list[bytes]:
        if not self._announcing or not keys:
            return []
        return encode_keys(self._sender, keys)

    def _pattern_message(self, pattern: str) -> bytes | None:
        if not self._announcing:
            return None
        return encode_pattern(self._sender, pattern)

    # ---- sync half: its twin is the async half below, line for line ------------------------

    def get(self, key: str, *, fresh: bool = True) -> bytes | None:
        """The local copy of ``key``, else Redis's value (then copied locally)."""
        if fresh:
            held = self._local.memory.get(key)
            if held is not None:
                return held
        try:
            with self._local.filling([key], fresh=fresh) as copies:
                value, left = self.run("get", _read_ops(key), transaction=False)
                copies.extend(self._local.copies([key], [value], [left]))
        except BackendError as exc:
            stale = self._local.stale([key], exc)
            if stale is None:
                raise
            return stale[0]
        return cast("bytes | None", value)

    def get_many(self, keys: Sequence[str], *, fresh: bool = True) -> list[bytes | None]:
        """Local copies where held, the rest from Redis in one MGET (then copied locally)."""
        found: list[bytes | None] = (
            self._local.memory.get_many(keys) if fresh else [None] * len(keys)
        )
        missing = _missing(keys, found)
        if not missing:
            return found
        try:
            with self._local.filling(missing, fresh=fresh) as copies:
                values, lefts = self._route.fetch_many(missing)
                copies.extend(self._local.copies(missing, values, lefts))
        except BackendError as exc:
            stale = self._local.stale(missing, exc)
            if stale is None:
                raise
            values = stale
        return _merge(keys, found, dict(zip(missing, values, strict=True)))

    def send(
        self, operation: str, ops: Sequence[Op], *, transaction: bool = True
    ) -> list[OpResult]:
        """Run ``ops`` and the PUBLISH of the keys they change (after them)."""
        changed = changed_keys(ops)
        try:
            return self._route.write(
                operation, ops, self._announce(changed), transaction=transaction
            )
        finally:
            # Even when the call failed: the write may have landed.
            if changed:
                self._local.drop(changed)

    def run(self, operation: str, ops: Sequence[Op], *, transaction: bool = True) -> list[OpResult]:
        """:meth:`send`, raising the first op's error instead of returning it."""
        results = self.send(operation, ops, transaction=transaction)
        _raise_failed(results)
        return results

    def delete_pattern(self, pattern: str, batch_size: int) -> int:
        """Delete the keys matching ``pattern`` in Redis, then announce the pattern."""
        message = self._pattern_message(pattern)
        try:
            deleted = self._remote.delete_pattern(pattern, batch_size)
        except BackendError:
            if message is not None:
                with contextlib.suppress(BackendError):  # some keys may be gone: say so
                    self._route.publish("delete_pattern", message)
            raise
        finally:
            self._local.drop_matching(pattern)
        if deleted and message is not None:
            self._route.publish("delete_pattern", message)
        return deleted

    def delete_if_equals(self, key: str, value: bytes) -> bool:
        """Delete ``key`` if it holds ``value``, and announce it; returns whether it did."""
        try:
            deleted = self._remote.delete_if_equals(key, value)
        finally:
            self._local.drop([key])
        if deleted:
            for data in self._announce([key]):
                self._route.publish("delete_if_equals", data, near=key)
        return deleted

    def clear_local(self) -> None:
        """Empty the local layer and tell every other backend on the channel to."""
        self._local.clear()
        self._route.publish("clear_local", encode_flush(self._sender))

    # ---- async half: its twin is the sync half above, line for line -------------------------

    async def aget(self, key: str, *, fresh: bool = True) -> bytes | None:
        """Async :meth:`get`."""
        if fresh:
            held = self._local.memory.get(key)
            if held is not None:
                return held
        try:
            with self._local.filling([key], fresh=fresh) as copies:
                value, left = await self.arun("get", _read_ops(key), transaction=False)
                copies.extend(self._local.copies([key], [value], [left]))
        except BackendError as exc:
            stale = self._local.stale([key], exc)
            if stale is None:
                raise
            return stale[0]
        return cast("bytes | None", value)

    async def aget_many(self, keys: Sequence[str], *, fresh: bool = True) -> list[bytes | None]:
        """Async :meth:`get_many`."""
        found: list[bytes | None] = (
            self._local.memory.get_many(keys) if fresh else [None] * len(keys)
        )
        missing = _missing(keys, found)
        if not missing:
            return found
        try:
            with self._local.filling(missing, fresh=fresh) as copies:
                values, lefts = await self._route.afetch_many(missing)
                copies.extend(self._local.copies(missing, values, lefts))
        except BackendError as exc:
            stale = self._local.stale(missing, exc)
            if stale is None:
                raise
            values = stale
        return _merge(keys, found, dict(zip(missing, values, strict=True)))

    async def asend(
        self, operation: str, ops: Sequence[Op], *, transaction: bool = True
    ) -> list[OpResult]:
        """Async :meth:`send`."""
        changed = changed_keys(ops)
        try:
            return await self._route.awrite(
                operation, ops, self._announce(changed), transaction=transaction
            )
        finally:
            # Even when the call failed: the write may have landed.
            if changed:
                self._local.drop(changed)

    async def arun(
        self, operation: str, ops: Sequence[Op], *, transaction: bool = True
    ) -> list[OpResult]:
        """Async :meth:`run`."""
        results = await self.asend(operation, ops, transaction=transaction)
        _raise_failed(results)
        return results

    async def adelete_pattern(self, pattern: str, batch_size: int) -> int:
        """Async :meth:`delete_pattern`."""
        message = self._pattern_message(pattern)
        try:
            deleted = await self._remote.adelete_pattern(pattern, batch_size)
        except BackendError:
            if message is not None:
                with contextlib.suppress(BackendError):  # some keys may be gone: say so
                    await self._route.apublish("delete_pattern", message)
            raise
        finally:
            self._local.drop_matching(pattern)
        if deleted and message is not None:
            await self._route.apublish("delete_pattern", message)
        return deleted

    async def adelete_if_equals(self, key: str, value: bytes) -> bool:
        """Async :meth:`delete_if_equals`."""
        try:
            deleted = await self._remote.adelete_if_equals(key, value)
        finally:
            self._local.drop([key])
        if deleted:
            for data in self._announce([key]):
                await self._route.apublish("delete_if_equals", data, near=key)
        return deleted

    async def aclear_local(self) -> None:
        """Async :meth:`clear_local`."""
        self._local.clear()
        await self._route.apublish("clear_local", encode_flush(self._sender))
