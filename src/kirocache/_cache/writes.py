"""The writes and key operations of ``Cache``, each written once as steps for both drivers."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kirocache._cache.driver import Flow, Io
from kirocache._cache.guard import FAILED
from kirocache._cache.invalidator import is_tombstone
from kirocache.backends import Op

if TYPE_CHECKING:
    from kirocache._cache.cache import Cache
    from kirocache._values.types import Duration
    from kirocache.keys import Namespace

__all__ = [
    "exists",
    "expire",
    "fresh_generation",
    "fresh_generations",
    "has_both",
    "incr",
    "persist",
    "refresh_generations",
    "set_many",
    "set_value",
    "ttl",
]


def refresh_generations(
    cache: Cache, keys: Sequence[str], namespace: Namespace | None
) -> Flow[None]:
    """Read the generations of the bumpable namespaces of ``keys`` (one round trip).

    Writes and deletes run it first, so they reach the keys readers use even when another
    process bumped a namespace since this one last read it.
    """
    space = cache.keyspace
    spaces = space.bumpables(keys, namespace)
    if not spaces:
        return
    started = time.perf_counter()
    reads = [space.generation_key(s) for s in spaces]
    raws = yield Io(cache.backend, "get_many", (reads,), "get", "generations", started)
    if raws is not FAILED:
        for s, raw in zip(spaces, raws, strict=True):
            space.learn_generation(s, raw)
        absent = [s for s, raw in zip(spaces, raws, strict=True) if raw is None]
        if absent:
            yield from fresh_generations(cache, absent, "generations", started)


def fresh_generations(
    cache: Cache, spaces: Sequence[Namespace], label: str, started: float
) -> Flow[bool]:
    """Give each namespace whose generation key is absent a fresh generation, and learn it.

    An absent generation is a namespace never used, or one whose key was evicted (or
    expired, or deleted): read as 0 it would bring back every entry of generation 0 still
    alive, and a bump from there would revisit generations already used. So it starts at a
    random 48-bit number instead (``SET NX``: the first process to try wins, the others
    read its number), a key space no entry has ever been written to. Returns whether the
    generations were learned.
    """
    space = cache.keyspace
    names = [space.generation_key(s) for s in spaces]
    ops = [Op("set", name, fresh_generation(), nx=True) for name in names]
    ops += [Op("get", name) for name in names]
    results = yield Io(cache.backend, "execute", (ops,), "get", label, started)
    if results is FAILED or cache.guard.slot_failure("get", label, results, started):
        return False
    for s, raw in zip(spaces, results[len(names) :], strict=True):
        space.learn_generation(s, raw)
    return True


def fresh_generation() -> bytes:
    """A generation to start a namespace at: random, so never one used before it."""
    return str(secrets.randbits(48) + 1).encode("ascii")


def _one(cache: Cache, op: Op, name: str, label: str, started: float) -> Flow[Any]:
    """Run one op; its answer, or ``FAILED`` when the call or its slot failed."""
    results = yield Io(cache.backend, "execute", ([op],), name, label, started)
    if results is FAILED or cache.guard.slot_failure(name, label, results, started):
        return FAILED
    return results[0]


def set_value(
    cache: Cache,
    key: str,
    value: object,
    ttl: Duration | None,
    nx: bool,
    namespace: Namespace | None,
    tags: Sequence[str],
) -> Flow[bool]:
    """``Cache.set``: the write with its tag entries; ``nx`` treats a tombstone as absent.

    A tagged value carries its tags' stamps (see ``Invalidator.stamped_ops``), read first:
    one more round trip, so that an evicted tag index can never keep an invalidation from
    reaching the value.
    """
    yield from refresh_generations(cache, (key,), namespace)
    keys, guard, invalidator = cache.keyspace, cache.guard, cache.invalidator
    full, label, default_ttl = keys.resolve(key, namespace)
    seconds = keys.ttl(ttl, default_ttl, value)
    started = time.perf_counter()
    data = cache.codec.dumps(full, value)
    ops = invalidator.tag_add_ops(tags, full, seconds)
    if tags:
        stamp_keys = [keys.stamp_key(tag) for tag in tags]
        held = yield Io(cache.backend, "get_many", (stamp_keys,), "set", label, started)
        if held is FAILED:
            return False
        made, data, _ = invalidator.stamped_ops(tags, dict(zip(stamp_keys, held)), data)  # noqa: B905 - one answer per key
        ops += made
    ops.append(Op("set", full, data, ttl=seconds, nx=nx))
    results = yield Io(cache.backend, "execute", (ops,), "set", label, started)
    if results is FAILED or guard.slot_failure("set", label, results, started):
        return False
    stored = results[-1]
    if stored is False and nx:
        # An invalidated key (a tombstone, a stale tagged entry) is absent for ``nx``.
        held = yield Io(cache.backend, "get", (full,), "set", label, started)
        if held is not None and (yield from invalidator.absent(held, label, started)):
            stored = yield from _one(
                cache, Op("set_if", full, data, ttl=seconds, expected=held), "set", label, started
            )
            if stored is FAILED:
                return False
    if stored:
        invalidator.written((full,))  # a pending invalidation's replay must spare this value
    guard.observe("set", label, "set" if stored else "skip", started, full)
    return bool(stored)


def has_both(cache: Cache, method: str) -> bool:
    """Whether the backend has ``method`` (and its ``a``-twin) for each half the cache uses.

    The small protocol does not promise it; the built-in backends have it natively.
    """
    backend, guard = cache.backend, cache.guard
    return (not guard.sync_ok or callable(getattr(backend, method, None))) and (
        not guard.async_ok or callable(getattr(backend, "a" + method, None))
    )


def set_many(
    cache: Cache, mapping: Mapping[str, object], ttl: Duration | None, namespace: Namespace | None
) -> Flow[bool]:
    """``Cache.set_many``: one round trip per distinct (TTL, label) group."""
    yield from refresh_generations(cache, list(mapping), namespace)
    keys = cache.keyspace
    groups: dict[tuple[float | None, str], list[Op]] = {}
    for key, value in mapping.items():
        full, label, default_ttl = keys.resolve(key, namespace)
        seconds = keys.ttl(ttl, default_ttl, value)
        data = cache.codec.dumps(full, value)
        groups.setdefault((seconds, label), []).append(Op("set", full, data, ttl=seconds))
    started = time.perf_counter()
    stored = True
    # A backend's own set_many stores a group all or nothing (MSET, or one MULTI with a
    # TTL); a pipeline of set ops could leave part of a group behind one that fails.
    whole = has_both(cache, "set_many")
    for (seconds, label), ops in groups.items():
        if whole:
            items = {op.key: op.value for op in ops}
            answer = yield Io(
                cache.backend, "set_many", (items, seconds), "set_many", label, started
            )
            failed = answer is FAILED
        else:
            results = yield Io(cache.backend, "execute", (ops,), "set_many", label, started)
            failed = results is FAILED or cache.guard.slot_failure(
                "set_many", label, results, started
            )
        if failed:
            stored = False
        else:
            cache.invalidator.written(op.key for op in ops)  # spared by a pending replay
            cache.guard.observe("set_many", label, "set", started, count=len(ops))
    return stored


def exists(cache: Cache, key: str, namespace: Namespace | None) -> Flow[bool]:
    """``Cache.exists``: a tombstone, or a key a pending invalidation reaches, is absent."""
    yield from refresh_generations(cache, (key,), namespace)
    full, label, _ = cache.keyspace.resolve(key, namespace)
    started = time.perf_counter()
    if _pending_reaches(cache, full):
        found: Any = False
    else:  # read, not EXISTS: a tombstone or a stale tagged entry is absent
        raw = yield Io(cache.backend, "get", (full,), "exists", label, started)
        found = (
            raw if raw is FAILED else not (yield from cache.invalidator.absent(raw, label, started))
        )
    if found is FAILED:
        return False
    cache.guard.observe("exists", label, "hit" if found else "miss", started, full)
    return bool(found)


def ttl(cache: Cache, key: str, namespace: Namespace | None) -> Flow[float | None]:
    """``Cache.ttl``: ``None`` when absent, invalidated (or pending so) or on a fault."""
    yield from refresh_generations(cache, (key,), namespace)
    full, label, _ = cache.keyspace.resolve(key, namespace)
    started = time.perf_counter()
    left: Any
    if _pending_reaches(cache, full):
        left = None
    else:
        ops = [Op("ttl", full), Op("get", full)]
        results = yield Io(cache.backend, "execute", (ops,), "ttl", label, started)
        if results is FAILED:
            left = FAILED
        elif isinstance(results[1], bytes) and (
            yield from cache.invalidator.absent(results[1], label, started)
        ):
            left = None  # an invalidated key is absent
        else:
            # a tag set fails GET (WRONGTYPE) but has a TTL of its own
            left = None if isinstance(results[0], Exception) else results[0]
    if left is FAILED:
        return None
    cache.guard.observe("ttl", label, "miss" if left is None else "hit", started, full)
    return left  # type: ignore[no-any-return]


def expire(
    cache: Cache, key: str, ttl: Duration | None, namespace: Namespace | None, name: str
) -> Flow[bool]:
    """``Cache.expire`` (``name="expire"``) and ``Cache.persist`` (``ttl=None``)."""
    yield from refresh_generations(cache, (key,), namespace)
    full, label, _ = cache.keyspace.resolve(key, namespace)
    seconds = cache.keyspace.ttl(ttl, None) if name == "expire" else None
    started = time.perf_counter()
    done = yield from _tombstoned(cache, full, label, started)
    if done is not None:
        pass  # the key is invalidated (False: absent) or the backend failed (FAILED)
    elif seconds is None:
        done = yield from _one(cache, Op("persist", full), "persist", label, started)
    else:
        done = yield from _one(cache, Op("expire", full, ttl=seconds), "expire", label, started)
    if done is FAILED:
        return False
    cache.guard.observe(name, label, "set" if done else "miss", started, full)
    return bool(done)


def persist(cache: Cache, key: str, namespace: Namespace | None) -> Flow[bool]:
    """``Cache.persist``: remove the TTL of ``key``."""
    return (yield from expire(cache, key, None, namespace, "persist"))


def _pending_reaches(cache: Cache, full: str) -> bool:
    """Whether an invalidation the backend refused reaches ``full``: it is absent here."""
    pending = cache.invalidator.pending
    return pending.active and pending.blocks(full)


def _tombstoned(cache: Cache, full: str, label: str, started: float) -> Flow[Any]:
    """Check ``full`` for a tombstone before acting on the key.

    The read is a pipelined ``get``, which leaves a tag set's WRONGTYPE in its slot rather
    than raising: ``expire`` and ``persist`` work on tag sets too.

    Returns:
        ``False`` if it holds one or a pending invalidation reaches it (an invalidated key
        is absent to every method), ``FAILED`` if the backend failed, else ``None``: go on.
    """
    if _pending_reaches(cache, full):
        return False
    ops = [Op("get", full)]
    results = yield Io(cache.backend, "execute", (ops,), "get", label, started)
    if results is FAILED:
        return FAILED
    held = results[0]
    gone = isinstance(held, bytes) and (yield from cache.invalidator.absent(held, label, started))
    return False if gone else None


def incr(
    cache: Cache, key: str, amount: int, ttl: Duration | None, namespace: Namespace | None
) -> Flow[int | None]:
    """``Cache.incr``: an invalidated counter starts again from ``amount``."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        msg = f"amount must be an int, not {amount!r}"
        raise TypeError(msg)
    yield from refresh_generations(cache, (key,), namespace)
    keys, guard = cache.keyspace, cache.guard
    full, label, default_ttl = keys.resolve(key, namespace)
    seconds = keys.ttl(ttl, default_ttl)
    started = time.perf_counter()
    ops = [Op("incr", full, ttl=seconds, amount=amount)]
    results = yield Io(cache.backend, "execute", (ops,), "incr", label, started)
    value = FAILED if results is FAILED else results[0]
    if isinstance(value, Exception):
        # An invalidated counter holds a tombstone: start it again from ``amount``.
        held = yield Io(cache.backend, "get", (full,), "incr", label, started)
        if is_tombstone(held):
            fresh = str(amount).encode("ascii")
            ops = cache.invalidator.store_ops(full, fresh, seconds, held)
            replaced = yield Io(cache.backend, "execute", (ops,), "incr", label, started)
            if replaced is not FAILED and replaced[0] is True:
                value = amount
        if isinstance(value, Exception):
            guard.fault("incr", label, value, started)
            return None
    if value is FAILED:
        return None
    guard.observe("incr", label, "set", started, full)
    return int(value)
