"""The async half of ``Cache``: thin shells over ``CacheCore`` that await the backend.

The sync half, ``_cache_sync.py``, is generated from this file by ``tools/unasync.py``
(``a``-prefixes and ``await`` removed); a test fails when the two differ, so edit this
file and regenerate the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from kirocache._core import FAILED, TOMBSTONE, UNREAD, CacheCore, Guards, Seen
from kirocache._types import MISSING
from kirocache.backends._protocol import Op
from kirocache.exceptions import CorruptValueError

if TYPE_CHECKING:
    from kirocache._types import Duration
    from kirocache.backends._protocol import BackendStats
    from kirocache.keys import Namespace

__all__ = ["AsyncCacheMethods"]

R = TypeVar("R")


class AsyncCacheMethods(CacheCore):
    """The async methods of ``Cache`` (see there for the class documentation)."""

    async def _arun(
        self,
        op: str,
        label: str,
        started: float,
        call: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Call the backend under the breaker; ``FAILED`` when it failed open."""
        if not self._async_ok:
            self._need_async()
        breaker = self.breaker
        if breaker is not None and not breaker.healthy and not self._allow(op, label, started):
            return FAILED
        try:
            result = await call(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - sorted by _failed: faults fail open
            return self._failed(op, label, exc, started)
        if self._failing or (breaker is not None and not breaker.healthy):
            self._ok()
        return result

    async def aget(
        self, key: str, default: Any = None, *, type: Any = None, namespace: Namespace | None = None
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
        value, _ = await self._alookup(key, type, namespace)
        return default if value is MISSING else value

    async def _alookup(
        self, key: str, type: Any, namespace: Namespace | None, tags: Sequence[str] = ()
    ) -> tuple[Any, Seen]:
        """``(value or MISSING, what was seen)``: what a conditional write compares with.

        What was seen is the full key read, its bytes (``None`` when the key was absent or
        unreadable, a tombstone after an invalidation, or the entry itself on a hit) and
        the stamps of ``tags``, all read in one round trip. A key of a bumpable namespace
        is read with the namespace's generation too; when that changed, the key is read
        again under the new generation.
        """
        full, label, _ = self._key(key, namespace)
        started = time.perf_counter()
        if namespace is not None and not namespace.bumpable:
            bumpable = None  # the common case, without a call
        else:
            bumpable = self._bumpable(key, namespace)
        breaker = self.breaker
        guards: Guards = ()
        if (
            bumpable is None
            and not tags
            and self._async_ok
            and not self._failing
            and (breaker is None or breaker.healthy)
        ):
            # ``_arun``'s work, inlined for the one call every hit makes
            try:
                raw = await self.backend.aget(full)
            except Exception as exc:  # noqa: BLE001 - sorted by _failed: faults fail open
                raw = self._failed("get", label, exc, started)
        elif bumpable is None and not tags:
            raw = await self._arun("get", label, started, self.backend.aget, full)
        else:
            raw, full, guards = await self._aread_with(key, namespace, bumpable, tags, started)
        if raw is FAILED:
            return MISSING, (full, UNREAD, guards)
        if raw is None or raw.startswith(TOMBSTONE):
            self._observe("get", label, "miss", started, full)
            return MISSING, (full, raw, guards)
        try:
            value = self._loads(raw, type)
        except CorruptValueError:
            self._observe("get", label, "miss", started, full)
            return MISSING, (full, await self._adrop_corrupt(full, raw, label, started), guards)
        metrics = self.metrics
        if metrics is not None and not self.debug:  # ``_observe``, inlined for the hit
            metrics.record("get", label, "hit", time.perf_counter() - started)
        else:
            self._observe("get", label, "hit", started, full)
        return value, (full, raw, guards)

    async def _adrop_corrupt(self, full: str, raw: bytes, label: str, started: float) -> Any:
        """Delete a corrupt entry if it is still there; returns what the key now holds.

        A compare-and-delete, so a tombstone written since the read is kept: ``None``
        when the entry was deleted, else the corrupt bytes (a write expecting them fails).
        """
        deleted = await self._arun(
            "delete", label, started, self.backend.adelete_if_equals, full, raw
        )
        return None if deleted is True else raw

    async def _aread_with(
        self,
        key: str,
        namespace: Namespace | None,
        bumpable: Namespace | None,
        tags: Sequence[str],
        started: float,
    ) -> tuple[Any, str, Guards]:
        """Read a key with its namespace's generation and its tags' stamps, in one round trip.

        Returns:
            The bytes (or ``FAILED``), the full key they were read at (when the generation
            moved, the key is read again under the new one) and the stamps read.
        """
        # the one generation this read checks (a plain dict, not a copy of all of them)
        used = (
            {} if bumpable is None else {bumpable.prefix: self._generations.get(bumpable.prefix, 0)}
        )
        full, label, _ = self._key(key, namespace, used)
        stamps = [self._stamp_key(tag) for tag in tags] if self.tombstone_ttl else []
        head = [self._generation_key(bumpable)] if bumpable is not None else []
        raws = await self._arun(
            "get", label, started, self.backend.aget_many, [*head, full, *stamps]
        )
        if raws is FAILED:
            return FAILED, full, ()
        guards = tuple(zip(stamps, raws[len(head) + 1 :], strict=True))
        if bumpable is None:
            return raws[0], full, guards
        generation = self._learn_generation(bumpable, raws[0])
        if generation == used.get(bumpable.prefix, 0):
            return raws[1], full, guards
        # the key was built for another generation than the one just read: read it again
        full = self._key(key, namespace, {**used, bumpable.prefix: generation})[0]
        return await self._arun("get", label, started, self.backend.aget, full), full, guards

    async def _arefresh_generations(self, keys: Sequence[str], namespace: Namespace | None) -> None:
        """Read the generations of the bumpable namespaces of ``keys`` (one round trip).

        Writes and deletes call it first, so they reach the keys readers use even when
        another process bumped a namespace since this one last read it.
        """
        found = {self._bumpable(key, namespace) for key in keys} - {None}
        if not found:
            return
        spaces = [space for space in found if space is not None]
        started = time.perf_counter()
        reads = [self._generation_key(space) for space in spaces]
        raws = await self._arun("get", "generations", started, self.backend.aget_many, reads)
        if raws is not FAILED:
            for space, raw in zip(spaces, raws, strict=True):
                self._learn_generation(space, raw)

    async def _astore(
        self,
        key: str,
        value: object,
        ttl: Duration | None,
        *,
        namespace: Namespace | None,
        seen: Seen,
        read_at: float,
        tags: Sequence[str] = (),
    ) -> bool:
        """Store a computed value unless the key changed since it was read (one round trip).

        ``seen`` and ``read_at`` come from the ``_alookup`` before the computation: when an
        invalidation (or another writer) changed the key since, or when a tombstone seen
        then may have expired by now, nothing is written: a value loaded before an
        invalidation never lands after it. The value goes to the key that was read, so a
        namespace bumped meanwhile keeps it out of its new generation.
        """
        _, label, default_ttl = self._key(key, namespace)
        full, expected, guards = seen
        seconds = self._ttl(ttl, default_ttl)
        started = time.perf_counter()
        data = self._dumps(full, value)
        if expected == UNREAD or self._too_late(read_at):
            self._observe("set", label, "skip", started, full)
            return False
        ops = self._store_ops(full, data, seconds, expected, tags, guards)
        results = await self._arun("set", label, started, self.backend.aexecute, ops)
        if results is FAILED or self._slot_failure("set", label, results, started):
            return False
        stored = results[-1] is True
        self._observe("set", label, "set" if stored else "skip", started, full)
        return stored

    async def aset(
        self,
        key: str,
        value: object,
        ttl: Duration | None = None,
        *,
        nx: bool = False,
        namespace: Namespace | None = None,
        tags: Sequence[str] = (),
    ) -> bool:
        """Store ``value`` at ``key``.

        Args:
            key: The key.
            value: Any value the serializer can encode.
            ttl: Seconds (or a timedelta) to live; ``None``: the namespace's or the cache's
                default; ``NEVER``: no expiry.
            nx: Only store if the key is absent.
            namespace: Resolve ``key`` inside this namespace.
            tags: Tags for the entry; ``invalidate_tags`` removes every entry of a tag.

        Returns:
            Whether the value was stored (``False`` on a backend fault or when ``nx`` found
            the key present).

        Raises:
            SerializationError: The value cannot be serialized.
            ValueTooLargeError: It is larger than ``max_value_size`` once serialized.
            InvalidTTLError: ``ttl`` is not a positive duration.
        """
        await self._arefresh_generations((key,), namespace)
        full, label, default_ttl = self._key(key, namespace)
        seconds = self._ttl(ttl, default_ttl)
        started = time.perf_counter()
        data = self._dumps(full, value)
        if tags:
            ops = [Op("tag_add", self._tag_key(t), ttl=seconds, members=(full,)) for t in tags]
            ops.append(Op("set", full, data, ttl=seconds, nx=nx))
            results = await self._arun("set", label, started, self.backend.aexecute, ops)
            if results is not FAILED and self._slot_failure("set", label, results[:-1], started):
                results = FAILED
            stored = FAILED if results is FAILED else results[-1]
        else:
            stored = await self._arun(
                "set", label, started, self.backend.aset, full, data, seconds, nx=nx
            )
        if stored is False and nx:
            # An invalidated key holds a tombstone, which is absent for ``nx``.
            held = await self._arun("get", label, started, self.backend.aget, full)
            if isinstance(held, bytes) and held.startswith(TOMBSTONE):
                ops = self._store_ops(full, data, seconds, held)
                results = await self._arun("set", label, started, self.backend.aexecute, ops)
                stored = FAILED if results is FAILED else results[0]
        if stored is FAILED or isinstance(stored, Exception):
            if isinstance(stored, Exception):
                self._failed("set", label, stored, started)
            return False
        self._observe("set", label, "set" if stored else "skip", started, full)
        return bool(stored)

    async def aexists(self, key: str, *, namespace: Namespace | None = None) -> bool:
        """Whether ``key`` holds a live value (``False`` on a backend fault)."""
        await self._arefresh_generations((key,), namespace)
        full, label, _ = self._key(key, namespace)
        started = time.perf_counter()
        if self.tombstone_ttl is None:
            found = await self._arun("exists", label, started, self.backend.aexists, full)
        else:
            raw = await self._arun("exists", label, started, self.backend.aget, full)
            found = raw if raw is FAILED else raw is not None and not raw.startswith(TOMBSTONE)
        if found is FAILED:
            return False
        self._observe("exists", label, "hit" if found else "miss", started, full)
        return bool(found)

    async def aget_many(
        self, keys: Sequence[str], *, type: Any = None, namespace: Namespace | None = None
    ) -> dict[str, Any]:
        """Values of the keys that are cached, in one round trip.

        Args:
            keys: The keys to read.
            type: Decode every value into this type.
            namespace: Resolve every key inside this namespace.

        Returns:
            A dict from each key that was a hit to its value; misses are left out (as are
            all keys on a backend fault). Corrupt entries are misses and are deleted.
        """
        found, _ = await self._alookup_many(keys, type, namespace)
        return found

    async def _alookup_many(
        self, keys: Sequence[str], type: Any, namespace: Namespace | None
    ) -> tuple[dict[str, Any], dict[str, Seen]]:
        """The hits, and what was seen for every key (see ``_alookup``), in one round trip."""
        if not keys:
            return {}, {}
        if namespace is not None and not namespace.bumpable:
            spaces: list[Namespace] = []  # the common case, without a call per key
        else:
            spaces = [s for s in {self._bumpable(key, namespace) for key in keys} if s]
        used = dict(self._generations)
        resolved = [self._key(key, namespace, used) for key in keys]
        label = resolved[0][1]
        started = time.perf_counter()
        heads = [self._generation_key(space) for space in spaces]
        full_keys = [full for full, _, _ in resolved]
        raws = await self._arun(
            "get_many", label, started, self.backend.aget_many, [*heads, *full_keys]
        )
        if raws is not FAILED and heads:
            read = {s.prefix: self._learn_generation(s, raw) for s, raw in zip(spaces, raws)}  # noqa: B905 - raws is longer
            if any(read[prefix] != used.get(prefix, 0) for prefix in read):
                # keys built for other generations than the ones just read: read again
                resolved = [self._key(key, namespace, {**used, **read}) for key in keys]
                full_keys = [full for full, _, _ in resolved]
                raws = await self._arun(
                    "get_many", label, started, self.backend.aget_many, full_keys
                )
            else:
                raws = raws[len(heads) :]
        if raws is FAILED:
            return {}, {key: (full, UNREAD, ()) for key, full in zip(keys, full_keys, strict=True)}
        found: dict[str, Any] = {}
        seen: dict[str, Seen] = {}
        corrupt: list[str] = []
        for key, full, raw in zip(keys, full_keys, raws, strict=True):
            seen[key] = (full, raw, ())
            if raw is not None and not raw.startswith(TOMBSTONE):
                try:
                    found[key] = self._loads(raw, type)
                except CorruptValueError:
                    corrupt.append(key)
        for key in corrupt:
            full, raw, _ = seen[key]
            assert raw is not None
            seen[key] = (full, await self._adrop_corrupt(full, raw, label, started), ())
        self._observe_many("get_many", resolved, found, keys, started)
        return found, seen

    async def _astore_many(
        self,
        mapping: Mapping[str, object],
        ttl: Duration | None,
        *,
        namespace: Namespace | None,
        seen: Mapping[str, Seen],
        read_at: float,
    ) -> int:
        """``_astore`` for many keys in one round trip; returns how many were stored."""
        if not mapping:
            return 0
        started = time.perf_counter()
        ops = []
        label = "default"
        for key, value in mapping.items():
            full, label, default_ttl = self._key(key, namespace)
            full, expected, guards = seen.get(key, (full, UNREAD, ()))
            if expected == UNREAD:
                continue
            data = self._dumps(full, value)
            ops += self._store_ops(full, data, self._ttl(ttl, default_ttl), expected, (), guards)
        if self._too_late(read_at):
            self._observe("set_many", label, "skip", started, count=len(ops))
            return 0
        results = await self._arun("set_many", label, started, self.backend.aexecute, ops)
        if results is FAILED:
            return 0
        self._slot_failure("set_many", label, results, started)
        stored = sum(1 for r in results if r is True)
        self._observe("set_many", label, "set", started, count=stored)
        if stored < len(results):
            self._observe("set_many", label, "skip", started, count=len(results) - stored)
        return stored

    async def aset_many(
        self,
        mapping: Mapping[str, object],
        ttl: Duration | None = None,
        *,
        namespace: Namespace | None = None,
    ) -> bool:
        """Store every item of ``mapping``, in one round trip per distinct TTL.

        Returns:
            Whether everything was stored (``False`` on a backend fault).
        """
        await self._arefresh_generations(list(mapping), namespace)
        groups = self._group_by_ttl(mapping, ttl, namespace)
        started = time.perf_counter()
        stored = True
        for (seconds, label), items in groups.items():
            done = await self._arun(
                "set_many", label, started, self.backend.aset_many, items, seconds
            )
            if done is FAILED:
                stored = False
            else:
                self._observe("set_many", label, "set", started, count=len(items))
        return stored

    async def attl(self, key: str, *, namespace: Namespace | None = None) -> float | None:
        """Seconds ``key`` has left.

        Returns:
            ``None`` if absent (or on a backend fault), ``math.inf`` if it never expires.
        """
        await self._arefresh_generations((key,), namespace)
        full, label, _ = self._key(key, namespace)
        started = time.perf_counter()
        if self.tombstone_ttl is None:
            left = await self._arun("ttl", label, started, self.backend.attl, full)
        else:
            ops = [Op("ttl", full), Op("get", full)]
            results = await self._arun("ttl", label, started, self.backend.aexecute, ops)
            if results is FAILED:
                left = FAILED
            elif isinstance(results[1], bytes) and results[1].startswith(TOMBSTONE):
                left = None  # an invalidated key is absent
            else:
                # a tag set fails GET (WRONGTYPE) but has a TTL of its own
                left = None if isinstance(results[0], Exception) else results[0]
        if left is FAILED:
            return None
        self._observe("ttl", label, "miss" if left is None else "hit", started, full)
        return left  # type: ignore[no-any-return]

    async def aexpire(self, key: str, ttl: Duration, *, namespace: Namespace | None = None) -> bool:
        """Give ``key`` a new TTL (``NEVER`` removes it); returns whether the key existed."""
        await self._arefresh_generations((key,), namespace)
        full, label, _ = self._key(key, namespace)
        seconds = self._ttl(ttl, None)
        started = time.perf_counter()
        done: Any = await self._atombstoned(full, label, started)
        if done is not None:
            pass  # the key is invalidated (False: absent) or the backend failed (FAILED)
        elif seconds is None:
            done = await self._arun("persist", label, started, self.backend.apersist, full)
        else:
            done = await self._arun("expire", label, started, self.backend.aexpire, full, seconds)
        if done is FAILED:
            return False
        self._observe("expire", label, "set" if done else "miss", started, full)
        return bool(done)

    async def apersist(self, key: str, *, namespace: Namespace | None = None) -> bool:
        """Remove the TTL of ``key``; returns whether it had one."""
        await self._arefresh_generations((key,), namespace)
        full, label, _ = self._key(key, namespace)
        started = time.perf_counter()
        done: Any = await self._atombstoned(full, label, started)
        if done is None:
            done = await self._arun("persist", label, started, self.backend.apersist, full)
        if done is FAILED:
            return False
        self._observe("persist", label, "set" if done else "miss", started, full)
        return bool(done)

    async def _atombstoned(self, full: str, label: str, started: float) -> Any:
        """Check ``full`` for a tombstone before acting on the key.

        The read is a pipelined ``get``, which leaves a tag set's WRONGTYPE in its slot
        rather than raising: ``expire`` and ``persist`` work on tag sets too.

        Returns:
            ``False`` if it holds one (an invalidated key is absent to every method),
            ``FAILED`` if the backend failed, else ``None``: go on.
        """
        if self.tombstone_ttl is None:
            return None
        ops = [Op("get", full)]
        results = await self._arun("get", label, started, self.backend.aexecute, ops)
        if results is FAILED:
            return FAILED
        held = results[0]
        return False if isinstance(held, bytes) and held.startswith(TOMBSTONE) else None

    async def aincr(
        self,
        key: str,
        amount: int = 1,
        *,
        ttl: Duration | None = None,
        namespace: Namespace | None = None,
    ) -> int | None:
        """Add ``amount`` to the counter at ``key`` (created at 0 with the TTL).

        Counters are stored as plain integers so the backend adds atomically; ``get``
        reads them back as ``int``.

        Returns:
            The new value, or ``None`` when the backend failed (with ``on_error="ignore"``).
        """
        if isinstance(amount, bool) or not isinstance(amount, int):
            msg = f"amount must be an int, not {amount!r}"
            raise TypeError(msg)
        await self._arefresh_generations((key,), namespace)
        full, label, default_ttl = self._key(key, namespace)
        seconds = self._ttl(ttl, default_ttl)
        started = time.perf_counter()
        results = await self._arun(
            "incr",
            label,
            started,
            self.backend.aexecute,
            [Op("incr", full, ttl=seconds, amount=amount)],
        )
        value = FAILED if results is FAILED else results[0]
        if isinstance(value, Exception):
            # An invalidated counter holds a tombstone: start it again from ``amount``.
            held = await self._arun("incr", label, started, self.backend.aget, full)
            fresh = str(amount).encode("ascii")
            ops = self._store_ops(full, fresh, seconds, held)
            if isinstance(held, bytes) and held.startswith(TOMBSTONE):
                replaced = await self._arun("incr", label, started, self.backend.aexecute, ops)
                if replaced is not FAILED and replaced[0] is True:
                    value = amount
            if isinstance(value, Exception):
                self._fault("incr", label, value, started)
                return None
        if value is FAILED:
            return None
        self._observe("incr", label, "set", started, full)
        return int(value)

    async def aping(self) -> float:
        """Round-trip latency to the backend in seconds.

        Raises:
            BackendError: The backend did not answer (a probe never fails open).
        """
        self._need_async()
        return float(await self.backend.aping())

    async def astats(self) -> BackendStats:
        """The backend's own figures (memory, clients, keys, evictions...).

        Raises:
            BackendError: The backend did not answer.
        """
        self._need_async()
        stats: BackendStats = await self.backend.astats()
        return stats

    async def aclose(self) -> None:
        """Release the backend's connections (the cache can be used again afterwards)."""
        if self._async_ok:
            await self.backend.aclose()
