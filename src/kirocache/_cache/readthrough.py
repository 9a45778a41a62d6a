"""The read-through hot path: the reads and guarded writes ``get`` and ``@cached`` make.

Why twinned: a cache hit is one backend call, and the generic drivers (a generator, a
``send`` per step) cost a noticeable share of it, so ``lookup`` and ``alookup`` below are a
hand-written sync/async pair that calls the backend directly when nothing is failing. Their
twin sits right next to each of them in this file; everything else here (the rare paths:
generations, tag stamps, a corrupt entry, the writes) is written once as steps and run
by the drivers (``driver.run`` / ``driver.arun``).

These functions are bound as methods of ``Cache`` (``Cache._lookup`` is ``lookup``), so
their first parameter is the cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any

from kirocache._cache import invalidations
from kirocache._cache.decoding import decode as _decode
from kirocache._cache.decoding import joined as _joined
from kirocache._cache.driver import Flow, Io, arun, run
from kirocache._cache.guard import FAILED
from kirocache._cache.invalidator import TOMBSTONE, UNREAD, Guards, Seen
from kirocache._cache.writes import fresh_generations
from kirocache._values.formats import OrjsonSerializer
from kirocache._values.stamped import is_stamped
from kirocache._values.types import MISSING
from kirocache.backends import Op
from kirocache.exceptions import CorruptValueError

if TYPE_CHECKING:
    from kirocache._cache.cache import Cache
    from kirocache._cache.guard import Guard
    from kirocache._values.types import Duration
    from kirocache.keys import Namespace

__all__ = [
    "aget",
    "aget_many",
    "alookup",
    "alookup_many",
    "astore",
    "astore_many",
    "get",
    "get_many",
    "lookup",
    "lookup_many",
    "store",
    "store_many",
]


# -- one key: the twinned hot path ----------------------------------------------------------


def get(  # noqa: D417 - ``self`` is the Cache this function is bound to
    self: Cache,
    key: str,
    default: Any = None,
    *,
    type: Any = None,
    namespace: Namespace | None = None,
) -> Any:
    """Return the value cached at ``key``, or ``default`` on a miss or a backend fault.

    Args:
        key: The key (within ``namespace`` when one is given).
        default: What a miss returns; pass ``MISSING`` to tell a miss from cached ``None``.
        type: Decode into this type (a dataclass, ``list[Profile]``, ...).
        namespace: Resolve ``key`` inside this namespace.

    Returns:
        The cached value, or ``default``. A corrupt entry is a miss and is deleted.
    """
    value, _ = lookup(self, key, type, namespace)
    return default if value is MISSING else value


async def aget(
    self: Cache,
    key: str,
    default: Any = None,
    *,
    type: Any = None,
    namespace: Namespace | None = None,
) -> Any:
    """Async ``get``: the value at ``key``, or ``default`` on a miss or a backend fault."""
    value, _ = await alookup(self, key, type, namespace)
    return default if value is MISSING else value


def lookup(  # noqa: PLR0912 - the hit's steps inlined (a call each would cost more)
    self: Cache,
    key: str,
    type: Any,
    namespace: Namespace | None,
    tags: Sequence[str] = (),
    *,
    counted: bool = True,
) -> tuple[Any, Seen]:
    """``(value or MISSING, what was seen)``: what a conditional write compares with.

    What was seen is the full key read, its bytes (``None`` when the key was absent or
    unreadable, a tombstone after an invalidation, or the entry itself on a hit) and the
    stamps of ``tags``, all read in one round trip. A key of a bumpable namespace is read
    with the namespace's generation too; when that changed, the key is read again under the
    new generation. ``counted=False`` leaves a hit unrecorded, for a caller that records
    what it served itself (``@cached``'s stale serves). Twin: ``alookup``, below.
    """
    keys, guard = self.keyspace, self.guard
    full, label, _ = keys.resolve(key, namespace)
    started = perf_counter()
    if self.invalidator.pending.active and _blocked(self, full):
        # an invalidation of it is pending: the backend may still hold the old value
        guard.observe("get", label, "miss", started, full)
        return MISSING, (full, UNREAD, ())
    if namespace is not None and not namespace.bumpable:
        bumpable = None  # the common case, without a call
    else:
        bumpable = keys.bumpable(key, namespace)
    breaker = guard.breaker
    guards: Guards = ()
    if (
        bumpable is None
        and not tags
        and guard.sync_ok
        and not guard.failing
        and (breaker is None or breaker.healthy)
    ):
        # the driver's work, inlined for the one call every hit makes
        try:
            raw = self.backend.get(full)
        except Exception as exc:  # noqa: BLE001 - sorted by the guard: faults fail open
            raw = guard.failed("get", label, exc, started)
    else:
        raw, full, guards = run(guard, _read(self, key, namespace, bumpable, tags, started))
    if raw is FAILED:
        return _kept(self, full, type, label, started, guards)
    if raw is None or raw.startswith(TOMBSTONE):
        guard.observe("get", label, "miss", started, full)
        return MISSING, (full, raw, guards)
    try:
        value = _decode(self, full, raw, type)
    except CorruptValueError:
        # a tagged entry (checked against its tags' stamps), else corrupt bytes
        value, raw = run(guard, _unreadable(self, full, raw, guards, type, label, started))
        if value is MISSING:
            guard.observe("get", label, "miss", started, full)
            return MISSING, (full, raw, guards)
    metrics = guard.metrics
    if not counted:
        pass
    elif metrics is not None and not guard.debug:  # ``observe``, inlined for the hit
        metrics.record("get", label, "hit", perf_counter() - started)
    else:
        guard.observe("get", label, "hit", started, full)
    return value, (full, raw, guards)


async def alookup(  # noqa: PLR0912 - the hit's steps inlined, as in ``lookup``
    self: Cache,
    key: str,
    type: Any,
    namespace: Namespace | None,
    tags: Sequence[str] = (),
    *,
    counted: bool = True,
) -> tuple[Any, Seen]:
    """Async ``lookup`` (its twin, above): the same reads, awaited."""
    keys, guard = self.keyspace, self.guard
    full, label, _ = keys.resolve(key, namespace)
    started = perf_counter()
    if self.invalidator.pending.active and await _ablocked(self, full):
        # an invalidation of it is pending: the backend may still hold the old value
        guard.observe("get", label, "miss", started, full)
        return MISSING, (full, UNREAD, ())
    if namespace is not None and not namespace.bumpable:
        bumpable = None  # the common case, without a call
    else:
        bumpable = keys.bumpable(key, namespace)
    breaker = guard.breaker
    guards: Guards = ()
    if (
        bumpable is None
        and not tags
        and guard.async_ok
        and not guard.failing
        and (breaker is None or breaker.healthy)
    ):
        # the driver's work, inlined for the one call every hit makes
        try:
            raw = await self.backend.aget(full)
        except Exception as exc:  # noqa: BLE001 - sorted by the guard: faults fail open
            raw = guard.failed("get", label, exc, started)
    else:
        raw, full, guards = await arun(guard, _read(self, key, namespace, bumpable, tags, started))
    if raw is FAILED:
        return _kept(self, full, type, label, started, guards)
    if raw is None or raw.startswith(TOMBSTONE):
        guard.observe("get", label, "miss", started, full)
        return MISSING, (full, raw, guards)
    try:
        value = _decode(self, full, raw, type)
    except CorruptValueError:
        # a tagged entry (checked against its tags' stamps), else corrupt bytes
        flow = _unreadable(self, full, raw, guards, type, label, started)
        value, raw = await arun(guard, flow)
        if value is MISSING:
            guard.observe("get", label, "miss", started, full)
            return MISSING, (full, raw, guards)
    metrics = guard.metrics
    if not counted:
        pass
    elif metrics is not None and not guard.debug:  # ``observe``, inlined for the hit
        metrics.record("get", label, "hit", perf_counter() - started)
    else:
        guard.observe("get", label, "hit", started, full)
    return value, (full, raw, guards)


# -- pending invalidations: replay first, else what they reach is a miss ------------------------


def _blocked(self: Cache, full: str) -> bool:
    """Whether a read of ``full`` must be a miss because an invalidation is pending.

    See ``_left``, which replays first. Twin: ``_ablocked``.
    """
    return _left(self) and self.invalidator.pending.blocks(full)


async def _ablocked(self: Cache, full: str) -> bool:
    """Async ``_blocked`` (its twin, above)."""
    return await _aleft(self) and self.invalidator.pending.blocks(full)


def _left(self: Cache) -> bool:
    """Replay the pending invalidations if the backend answers; whether any are left.

    The replay runs when the guard is settled (the last call came back) or a retry is
    due, so reads are served from a recovered backend only after every invalidation kept
    during the fault is applied. Twin: ``_aleft``.
    """
    pending = self.invalidator.pending
    if self.guard.settled() or pending.due():
        run(self.guard, invalidations.replay(self))
    return pending.active


async def _aleft(self: Cache) -> bool:
    """Async ``_left`` (its twin, above)."""
    pending = self.invalidator.pending
    if self.guard.settled() or pending.due():
        await arun(self.guard, invalidations.replay(self))
    return pending.active


def _fulls(self: Cache, keys: Sequence[str], namespace: Namespace | None) -> dict[str, str]:
    """The full key of each key."""
    return {key: self.keyspace.resolve(key, namespace)[0] for key in keys}


def _unblocked(
    fulls: Mapping[str, str], read: tuple[dict[str, Any], dict[str, Seen]]
) -> tuple[dict[str, Any], dict[str, Seen]]:
    """Add the blocked keys (those not in ``read``) to what was seen, as unreadable."""
    found, seen = read
    for key, full in fulls.items():
        if key not in seen:
            seen[key] = (full, UNREAD, ())
    return found, seen


# -- the rare paths of a read, written once -----------------------------------------------------


def _read(
    self: Cache,
    key: str,
    namespace: Namespace | None,
    bumpable: Namespace | None,
    tags: Sequence[str],
    started: float,
) -> Flow[tuple[Any, str, Guards]]:
    """Read a key with its namespace's generation and its tags' stamps, in one round trip.

    Returns:
        The bytes (or ``FAILED``), the full key they were read at (when the generation
        moved, the key is read again under the new one) and the stamps read.
    """
    keys, backend = self.keyspace, self.backend
    if bumpable is None and not tags:
        full, label, _ = keys.resolve(key, namespace)
        raw = yield Io(backend, "get", (full,), "get", label, started)
        return raw, full, ()
    # the one generation this read checks (a plain dict, not a copy of all of them)
    used = {} if bumpable is None else {bumpable.prefix: keys.generations.get(bumpable.prefix, 0)}
    full, label, _ = keys.resolve(key, namespace, used)
    stamps = [keys.stamp_key(tag) for tag in tags]
    head = [keys.generation_key(bumpable)] if bumpable is not None else []
    raws = yield Io(backend, "get_many", ([*head, full, *stamps],), "get", label, started)
    if raws is FAILED:
        return FAILED, full, ()
    guards = tuple(zip(stamps, raws[len(head) + 1 :], strict=True))
    if bumpable is None:
        return raws[0], full, guards
    if raws[0] is None:  # never used, or evicted: a fresh generation, never a past one
        if not (yield from fresh_generations(self, [bumpable], label, started)):
            return FAILED, full, ()
        generation = keys.generations.get(bumpable.prefix, 0)
    else:
        generation = keys.learn_generation(bumpable, raws[0])
    if generation == used.get(bumpable.prefix, 0):
        return raws[1], full, guards
    # the key was built for another generation than the one just read: read it again
    full = keys.resolve(key, namespace, {**used, bumpable.prefix: generation})[0]
    raw = yield Io(backend, "get", (full,), "get", label, started)
    return raw, full, guards


def _kept(
    self: Cache, full: str, type: Any, label: str, started: float, guards: Guards
) -> tuple[Any, Seen]:
    """A read the backend did not answer: its fail-safe copy, served as stale, or a miss.

    A backend that keeps the last values it read (``TieredBackend(fail_safe=...)``) has a
    ``kept(key)`` method, local and without I/O, asked when a call failed or the breaker
    keeps the cache from calling. A tagged entry is not served: its stamps cannot be
    checked. What was seen is unreadable, so nothing computed after it is stored.
    """
    kept = getattr(self.backend, "kept", None)
    raw: Any = None
    if kept is not None:
        try:
            raw = kept(full)
        except Exception:  # noqa: BLE001 - a fail-safe that fails is no fail-safe: a miss
            raw = None
    if not isinstance(raw, bytes) or raw.startswith(TOMBSTONE) or is_stamped(raw):
        return MISSING, (full, UNREAD, guards)
    try:
        value = self.codec.loads(raw, type, full)
    except CorruptValueError:
        return MISSING, (full, UNREAD, guards)
    self.guard.observe("get", label, "stale", started, full)
    return value, (full, UNREAD, guards)


def _unreadable(
    self: Cache, full: str, raw: bytes, guards: Guards, type: Any, label: str, started: float
) -> Flow[tuple[Any, Any]]:
    """What bytes the codec refused hold: a tagged entry's value, or ``MISSING``.

    A tagged entry is opened when its tags' stamps still hold what it carries (``guards``
    has those read with the key). Returns the value (``MISSING`` when the entry is stale,
    corrupt or of another type) and what the key holds now: a corrupt entry is deleted, a
    sound one that does not decode into ``type`` is kept (see ``_of_another_type``).
    """
    data = raw
    if is_stamped(raw):
        [frame] = yield from self.invalidator.unstamped([raw], dict(guards), label, started)
        if frame is None:
            return MISSING, raw  # stale: a tag was invalidated, or its stamp is gone
        try:
            return self.codec.loads(frame, type, full), raw
        except CorruptValueError:
            data = frame
    if _of_another_type(self, data, type, full):
        self.guard.observe("decode", label, "error", started, full)
        return MISSING, raw
    return MISSING, (yield from _drop_corrupt(self, full, raw, label, started))


def _of_another_type(self: Cache, data: bytes, type: Any, full: str) -> bool:
    """Whether ``data`` is a sound entry that only does not decode into ``type``.

    A typed read (``get(key, type=Profile)``) of an entry of another shape is a miss
    counted as a ``decode`` error, and the entry stays for the readers of its own type (a
    ``@cached`` write replaces it, as it expects these bytes). Only a failed typed read
    pays this second, untyped decode.
    """
    if type is None:
        return False
    try:
        self.codec.loads(data, None, full)
    except CorruptValueError:
        return False
    return True


def _drop_corrupt(self: Cache, full: str, raw: bytes, label: str, started: float) -> Flow[Any]:
    """Delete a corrupt entry if it is still there; returns what the key now holds.

    A compare-and-delete, so a tombstone written since the read is kept: ``None`` when the
    entry was deleted, else the corrupt bytes (a write expecting them fails).
    """
    ops = [Op("delete_if", full, expected=raw)]
    results = yield Io(self.backend, "execute", (ops,), "delete", label, started)
    if results is FAILED or self.guard.slot_failure("delete", label, results, started):
        return raw
    deleted = results[0]
    return None if deleted is True else raw


# -- many keys ------------------------------------------------------------------------------------


def get_many(  # noqa: D417 - ``self`` is the Cache this function is bound to
    self: Cache, keys: Sequence[str], *, type: Any = None, namespace: Namespace | None = None
) -> dict[str, Any]:
    """Values of the keys that are cached, in one round trip.

    Args:
        keys: The keys to read.
        type: Decode every value into this type.
        namespace: Resolve every key inside this namespace.

    Returns:
        A dict from each key that was a hit to its value; misses are left out (as are all
        keys on a backend fault). Corrupt entries are misses and are deleted.
    """
    return lookup_many(self, keys, type, namespace)[0]


async def aget_many(
    self: Cache, keys: Sequence[str], *, type: Any = None, namespace: Namespace | None = None
) -> dict[str, Any]:
    """Async ``get_many``: the values of the keys that are cached, in one round trip."""
    return (await alookup_many(self, keys, type, namespace))[0]


def lookup_many(
    self: Cache, keys: Sequence[str], type: Any, namespace: Namespace | None
) -> tuple[dict[str, Any], dict[str, Seen]]:
    """The hits, and what was seen for every key (see ``lookup``), in one round trip.

    Twin: ``alookup_many``, below; both take the steps of ``_lookup_many`` when a key is in
    a bumpable namespace or the backend is failing. A key a pending invalidation reaches
    is a miss, read as unreadable (nothing computed for it is stored).
    """
    if not keys:
        return {}, {}
    if self.invalidator.pending.active and _left(self):
        fulls = _fulls(self, keys, namespace)
        blocks = self.invalidator.pending.blocks
        open_keys = [key for key in keys if not blocks(fulls[key])]
        if len(open_keys) < len(keys):
            read = _read_many(self, open_keys, type, namespace) if open_keys else ({}, {})
            return _unblocked(fulls, read)
    return _read_many(self, keys, type, namespace)


def _read_many(
    self: Cache, keys: Sequence[str], type: Any, namespace: Namespace | None
) -> tuple[dict[str, Any], dict[str, Seen]]:
    """``lookup_many`` once the pending invalidations are out of the way."""
    space, guard = self.keyspace, self.guard
    breaker = guard.breaker
    if (
        ((namespace is None or namespace.bumpable) and space.bumpables(keys, namespace))
        or not guard.sync_ok
        or guard.failing
        or (breaker is not None and not breaker.healthy)
    ):
        return run(guard, _lookup_many(self, keys, type, namespace))
    full_keys, labels = space.resolve_many(keys, namespace)
    label = labels[0]
    started = perf_counter()
    try:
        raws = self.backend.get_many(full_keys)
    except Exception as exc:  # noqa: BLE001 - sorted by the guard: faults fail open
        raws = guard.failed("get_many", label, exc, started)
    if raws is FAILED:
        return {}, {key: (full, UNREAD, ()) for key, full in zip(keys, full_keys, strict=True)}
    found, seen, unread = _decode_many(self, keys, full_keys, raws, type)
    if unread:
        run(guard, _settle_many(self, found, seen, unread, type, label, started))
    _observe_many(guard, labels, found, keys, started)
    return found, seen


async def alookup_many(
    self: Cache, keys: Sequence[str], type: Any, namespace: Namespace | None
) -> tuple[dict[str, Any], dict[str, Seen]]:
    """Async ``lookup_many`` (its twin, above)."""
    if not keys:
        return {}, {}
    if self.invalidator.pending.active and await _aleft(self):
        fulls = _fulls(self, keys, namespace)
        blocks = self.invalidator.pending.blocks
        open_keys = [key for key in keys if not blocks(fulls[key])]
        if len(open_keys) < len(keys):
            read = await _aread_many(self, open_keys, type, namespace) if open_keys else ({}, {})
            return _unblocked(fulls, read)
    return await _aread_many(self, keys, type, namespace)


async def _aread_many(
    self: Cache, keys: Sequence[str], type: Any, namespace: Namespace | None
) -> tuple[dict[str, Any], dict[str, Seen]]:
    """``alookup_many`` once the pending invalidations are out of the way."""
    space, guard = self.keyspace, self.guard
    breaker = guard.breaker
    if (
        ((namespace is None or namespace.bumpable) and space.bumpables(keys, namespace))
        or not guard.async_ok
        or guard.failing
        or (breaker is not None and not breaker.healthy)
    ):
        return await arun(guard, _lookup_many(self, keys, type, namespace))
    full_keys, labels = space.resolve_many(keys, namespace)
    label = labels[0]
    started = perf_counter()
    try:
        raws = await self.backend.aget_many(full_keys)
    except Exception as exc:  # noqa: BLE001 - sorted by the guard: faults fail open
        raws = guard.failed("get_many", label, exc, started)
    if raws is FAILED:
        return {}, {key: (full, UNREAD, ()) for key, full in zip(keys, full_keys, strict=True)}
    found, seen, unread = _decode_many(self, keys, full_keys, raws, type)
    if unread:
        await arun(guard, _settle_many(self, found, seen, unread, type, label, started))
    _observe_many(guard, labels, found, keys, started)
    return found, seen


def _observe_many(
    guard: Guard,
    labels: list[str],
    found: Mapping[str, Any],
    keys: Sequence[str],
    started: float,
) -> None:
    """``guard.observe_many`` for the hot twins: one label (the usual case) tallied at once."""
    label = labels[0]
    if labels.count(label) != len(labels):
        guard.observe_many("get_many", labels, found, keys, started)
        return
    hits = len(keys) if len(found) == len(keys) else sum(1 for key in keys if key in found)
    if hits:
        guard.observe("get_many", label, "hit", started, count=hits)
    if hits < len(keys):
        guard.observe("get_many", label, "miss", started, count=len(keys) - hits)


def _decode_many(
    self: Cache, keys: Sequence[str], full_keys: Sequence[str], raws: Sequence[Any], type: Any
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The hits, what was seen per key, and the keys the codec refused (see ``_settle_many``).

    Plain JSON entries read without a type are decoded together: their headers and
    checksums are checked as ``OrjsonSerializer.loads`` checks them, all at once, then
    their payloads go through ``orjson.loads`` without the codec's per-entry dispatch (as
    one JSON array when they are small).
    """
    seen: dict[str, Any] = {
        key: (full, raw, ()) for key, full, raw in zip(keys, full_keys, raws, strict=True)
    }
    codec = self.codec
    if type is None and codec.serializer.__class__ is OrjsonSerializer:
        joined = _joined(keys, raws)
        if joined is not None:
            return joined, seen, []
    found: dict[str, Any] = {}
    unread: list[str] = []
    loads = codec.loads
    for key, full, raw in zip(keys, full_keys, raws, strict=True):
        if raw is not None and not raw.startswith(TOMBSTONE):
            try:
                found[key] = loads(raw, type, full)
            except CorruptValueError:
                unread.append(key)
    return found, seen, unread


def _settle_many(
    self: Cache,
    found: dict[str, Any],
    seen: dict[str, Any],
    unread: list[str],
    type: Any,
    label: str,
    started: float,
) -> Flow[None]:
    """Open the tagged entries among ``unread`` and drop the corrupt ones, in place.

    The stamps of every tagged entry are read in one round trip. An entry that is sound
    but does not decode into ``type`` is kept (see ``_of_another_type``).
    """
    tagged = [key for key in unread if is_stamped(seen[key][1])]
    raws = [seen[key][1] for key in tagged]
    frames = (yield from self.invalidator.unstamped(raws, {}, label, started)) if raws else []
    corrupt = [(key, seen[key][1]) for key in unread if key not in set(tagged)]
    for key, frame in zip(tagged, frames, strict=True):
        if frame is not None:
            try:
                found[key] = self.codec.loads(frame, type, seen[key][0])
            except CorruptValueError:
                corrupt.append((key, frame))
    for key, data in corrupt:
        full, raw, _ = seen[key]
        if _of_another_type(self, data, type, full):
            self.guard.observe("decode", label, "error", started, full)
            continue
        seen[key] = (full, (yield from _drop_corrupt(self, full, raw, label, started)), ())


def _lookup_many(
    self: Cache, keys: Sequence[str], type: Any, namespace: Namespace | None
) -> Flow[tuple[dict[str, Any], dict[str, Seen]]]:
    """``lookup_many``'s rare path, written once: generations checked, faults guarded."""
    space, guard, backend = self.keyspace, self.guard, self.backend
    if namespace is not None and not namespace.bumpable:
        spaces: list[Namespace] = []  # the common case, without a call per key
    else:
        spaces = space.bumpables(keys, namespace)
    used = dict(space.generations)
    full_keys, labels = space.resolve_many(keys, namespace, used)
    label = labels[0]
    started = perf_counter()
    heads = [space.generation_key(s) for s in spaces]
    raws = yield Io(backend, "get_many", ([*heads, *full_keys],), "get_many", label, started)
    if raws is not FAILED and heads:
        read = {s.prefix: space.learn_generation(s, raw) for s, raw in zip(spaces, raws)}  # noqa: B905 - raws is longer
        absent = [s for s, raw in zip(spaces, raws) if raw is None]  # noqa: B905 - raws is longer
        if absent:  # never used, or evicted: fresh generations, never past ones
            if not (yield from fresh_generations(self, absent, label, started)):
                raws = FAILED
            read = {s.prefix: space.generations.get(s.prefix, 0) for s in spaces}
    if raws is not FAILED and heads:
        if any(read[prefix] != used.get(prefix, 0) for prefix in read):
            # keys built for other generations than the ones just read: read again
            full_keys, labels = space.resolve_many(keys, namespace, {**used, **read})
            raws = yield Io(backend, "get_many", (full_keys,), "get_many", label, started)
        else:
            raws = raws[len(heads) :]
    if raws is FAILED:
        return {}, {key: (full, UNREAD, ()) for key, full in zip(keys, full_keys, strict=True)}
    found, seen, unread = _decode_many(self, keys, full_keys, raws, type)
    if unread:
        yield from _settle_many(self, found, seen, unread, type, label, started)
    guard.observe_many("get_many", labels, found, keys, started)
    return found, seen


# -- guarded writes of computed values ----------------------------------------------------------


def store(
    self: Cache,
    key: str,
    value: object,
    ttl: Duration | None,
    *,
    namespace: Namespace | None,
    seen: Seen,
    read_at: float,
    tags: Sequence[str] = (),
    payload: bytes | None = None,
) -> bool:
    """Store a computed value unless the key changed since it was read (one round trip).

    ``seen`` and ``read_at`` come from the ``lookup`` before the computation: when an
    invalidation (or another writer) changed the key since, or when a tombstone seen then
    may have expired by now, nothing is written: a value loaded before an invalidation
    never lands after it. The value goes to the key that was read, so a namespace bumped
    meanwhile keeps it out of its new generation. ``payload``: the value's JSON, already
    encoded (``@cached``'s check made it), framed rather than encoded again when the
    serializer is the plain ``OrjsonSerializer`` (see ``Codec.dumps``).
    """
    flow = _store(self, key, value, ttl, namespace, seen, read_at, tags, payload)
    return run(self.guard, flow)


async def astore(
    self: Cache,
    key: str,
    value: object,
    ttl: Duration | None,
    *,
    namespace: Namespace | None,
    seen: Seen,
    read_at: float,
    tags: Sequence[str] = (),
    payload: bytes | None = None,
) -> bool:
    """Async ``store``."""
    flow = _store(self, key, value, ttl, namespace, seen, read_at, tags, payload)
    return await arun(self.guard, flow)


def _store(
    self: Cache,
    key: str,
    value: object,
    ttl: Duration | None,
    namespace: Namespace | None,
    seen: Seen,
    read_at: float,
    tags: Sequence[str],
    payload: bytes | None = None,
) -> Flow[bool]:
    guard, invalidator = self.guard, self.invalidator
    _, label, default_ttl = self.keyspace.resolve(key, namespace)
    full, expected, guards = seen
    seconds = self.keyspace.ttl(ttl, default_ttl, value)
    started = perf_counter()
    data = self.codec.dumps(full, value, payload)
    if (
        expected == UNREAD
        or invalidator.too_late(read_at)
        or (invalidator.pending.active and invalidator.pending.blocks(full))
    ):
        guard.observe("set", label, "skip", started, full)
        return False
    ops = invalidator.store_ops(full, data, seconds, expected, tags, guards)
    results = yield Io(self.backend, "execute", (ops,), "set", label, started)
    if results is FAILED or guard.slot_failure("set", label, results, started):
        return False
    stored = results[-1] is True
    guard.observe("set", label, "set" if stored else "skip", started, full)
    return stored


def store_many(
    self: Cache,
    mapping: Mapping[str, object],
    ttl: Duration | Mapping[str, Duration] | None,
    *,
    namespace: Namespace | None,
    seen: Mapping[str, Seen],
    read_at: float,
) -> int:
    """``store`` for many keys in one round trip; returns how many were stored.

    ``ttl`` may be a mapping: each key's own TTL (a key left out gets the default).
    """
    return run(self.guard, _store_many(self, mapping, ttl, namespace, seen, read_at))


async def astore_many(
    self: Cache,
    mapping: Mapping[str, object],
    ttl: Duration | Mapping[str, Duration] | None,
    *,
    namespace: Namespace | None,
    seen: Mapping[str, Seen],
    read_at: float,
) -> int:
    """Async ``store_many``."""
    return await arun(self.guard, _store_many(self, mapping, ttl, namespace, seen, read_at))


def _store_many(
    self: Cache,
    mapping: Mapping[str, object],
    ttl: Duration | Mapping[str, Duration] | None,
    namespace: Namespace | None,
    seen: Mapping[str, Seen],
    read_at: float,
) -> Flow[int]:
    if not mapping:
        return 0
    guard, invalidator, keys = self.guard, self.invalidator, self.keyspace
    started = perf_counter()
    ops = []
    label = "default"
    per_key = ttl if isinstance(ttl, Mapping) else None
    for key, value in mapping.items():
        full, label, default_ttl = keys.resolve(key, namespace)
        full, expected, guards = seen.get(key, (full, UNREAD, ()))
        if expected == UNREAD or (invalidator.pending.active and invalidator.pending.blocks(full)):
            continue
        data = self.codec.dumps(full, value)
        chosen = per_key.get(key) if per_key is not None else ttl
        seconds = keys.ttl(chosen, default_ttl, value)  # type: ignore[arg-type]
        ops += invalidator.store_ops(full, data, seconds, expected, (), guards)
    if invalidator.too_late(read_at):
        guard.observe("set_many", label, "skip", started, count=len(ops))
        return 0
    results = yield Io(self.backend, "execute", (ops,), "set_many", label, started)
    if results is FAILED:
        return 0
    guard.slot_failure("set_many", label, results, started)
    stored = sum(1 for r in results if r is True)
    guard.observe("set_many", label, "set", started, count=stored)
    if stored < len(results):
        guard.observe("set_many", label, "skip", started, count=len(results) - stored)
    return stored
