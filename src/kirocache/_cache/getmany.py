"""``get_many`` and ``aget_many``: many keys in one round trip, at about the cost of ``MGET``.

Why twinned: as the single-key hit (``readthrough.lookup``), a read of many keys is one
backend call, and the generic drivers cost a noticeable share of it, so ``get_many`` and
``aget_many`` below are a hand-written sync/async pair, each next to its twin.

``readthrough.lookup_many`` reads keys for ``@cached_many`` and keeps, per key, what it
read (the ``Seen`` records its guarded writes compare against). A plain ``get_many`` has
no use for those, so its common path keeps none: the keys are resolved together
(``KeySpace.resolve_many``: the checks once over all keys, not once per key), the
backend's replies are taken as they come, and plain JSON entries are decoded together.
Everything rare (a pending invalidation, a bumpable namespace, a failing backend, a
tagged, corrupt or typed-elsewhere entry) is ``readthrough``'s, with the same answers.

These functions are bound as methods of ``Cache``, so their first parameter is the cache.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kirocache._cache import readthrough
from kirocache._cache.decoding import joined as _joined
from kirocache._cache.driver import Flow, arun, run
from kirocache._cache.guard import FAILED
from kirocache._cache.invalidator import TOMBSTONE
from kirocache._values.formats import OrjsonSerializer
from kirocache.exceptions import CorruptValueError

if TYPE_CHECKING:
    from kirocache._cache.cache import Cache
    from kirocache._cache.guard import Guard
    from kirocache.keys import Namespace

__all__ = ["aget_many", "get_many"]


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

    Raises:
        InvalidKeyError: A key is not a valid key, or is in the reserved key space.
    """
    if not keys:
        return {}
    space, guard = self.keyspace, self.guard
    breaker = guard.breaker
    if (
        self.invalidator.pending.active
        or ((namespace is None or namespace.bumpable) and space.bumpables(keys, namespace))
        or not guard.sync_ok
        or guard.failing
        or (breaker is not None and not breaker.healthy)
    ):
        return readthrough.lookup_many(self, keys, type, namespace)[0]
    fulls, labels = space.resolve_many(keys, namespace)
    label = labels[0]
    started = time.perf_counter()
    try:
        raws = self.backend.get_many(fulls)
    except Exception as exc:  # noqa: BLE001 - sorted by the guard: faults fail open
        raws = guard.failed("get_many", label, exc, started)
    if raws is FAILED:
        return {}
    found, unread = _decoded(self, keys, fulls, raws, type)
    if unread:
        run(guard, _settled(self, found, unread, keys, fulls, raws, type, label, started))
    _observe(guard, labels, found, keys, started)
    return found


async def aget_many(
    self: Cache, keys: Sequence[str], *, type: Any = None, namespace: Namespace | None = None
) -> dict[str, Any]:
    """Async ``get_many``: the values of the keys that are cached, in one round trip."""
    if not keys:
        return {}
    space, guard = self.keyspace, self.guard
    breaker = guard.breaker
    if (
        self.invalidator.pending.active
        or ((namespace is None or namespace.bumpable) and space.bumpables(keys, namespace))
        or not guard.async_ok
        or guard.failing
        or (breaker is not None and not breaker.healthy)
    ):
        return (await readthrough.alookup_many(self, keys, type, namespace))[0]
    fulls, labels = space.resolve_many(keys, namespace)
    label = labels[0]
    started = time.perf_counter()
    try:
        raws = await self.backend.aget_many(fulls)
    except Exception as exc:  # noqa: BLE001 - sorted by the guard: faults fail open
        raws = guard.failed("get_many", label, exc, started)
    if raws is FAILED:
        return {}
    found, unread = _decoded(self, keys, fulls, raws, type)
    if unread:
        await arun(guard, _settled(self, found, unread, keys, fulls, raws, type, label, started))
    _observe(guard, labels, found, keys, started)
    return found


def _decoded(
    self: Cache, keys: Sequence[str], fulls: Sequence[str], raws: Sequence[Any], type: Any
) -> tuple[dict[str, Any], list[int]]:
    """The hits, and the positions of the entries the codec refused (see ``_settled``).

    Plain JSON entries read without a type are decoded together (``decoding.joined``);
    any other entry makes all of them go through the codec one by one.
    """
    codec = self.codec
    if type is None and codec.serializer.__class__ is OrjsonSerializer:
        found = _joined(keys, raws)
        if found is not None:
            return found, []
    found = {}
    unread: list[int] = []
    loads, tomb = codec.loads, TOMBSTONE
    for at, raw in enumerate(raws):
        if raw is not None and not raw.startswith(tomb):
            try:
                found[keys[at]] = loads(raw, type, fulls[at])
            except CorruptValueError:
                unread.append(at)
    return found, unread


def _settled(
    self: Cache,
    found: dict[str, Any],
    unread: list[int],
    keys: Sequence[str],
    fulls: Sequence[str],
    raws: Sequence[Any],
    type: Any,
    label: str,
    started: float,
) -> Flow[None]:
    """Open the tagged entries among ``unread`` and drop the corrupt ones, as ``lookup_many``.

    What was read is recorded for these keys only, as ``readthrough._settle_many`` wants.
    """
    seen = {keys[at]: (fulls[at], raws[at], ()) for at in unread}
    refused = [keys[at] for at in unread]
    yield from readthrough._settle_many(self, found, seen, refused, type, label, started)


def _observe(
    guard: Guard, labels: list[str], found: dict[str, Any], keys: Sequence[str], started: float
) -> None:
    """The hits and misses of one read: at once for one label (the usual case)."""
    label, count = labels[0], len(keys)
    if labels.count(label) != count:
        guard.observe_many("get_many", labels, found, keys, started)
        return
    hits = count if len(found) == count else sum(1 for key in keys if key in found)
    if hits:
        guard.observe("get_many", label, "hit", started, count=hits)
    if hits < count:
        guard.observe("get_many", label, "miss", started, count=count - hits)
