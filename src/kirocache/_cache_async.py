"""The async half of ``Cache``: thin shells over ``CacheCore`` that await the backend.

The sync half, ``_cache_sync.py``, is generated from this file by ``tools/unasync.py``
(``a``-prefixes and ``await`` removed); a test fails when the two differ, so edit this
file and regenerate the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from kirocache._core import FAILED, TOMBSTONE, CacheCore
from kirocache._types import MISSING
from kirocache.backends._protocol import Op
from kirocache.exceptions import BackendError, CorruptValueError, KirocacheError

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
        if not self._allow(op, label, started):
            return FAILED
        try:
            result = await call(*args, **kwargs)
        except BackendError as exc:
            self._fault(op, label, exc, started)
            return FAILED
        except (KirocacheError, TypeError, AttributeError):
            raise  # programming errors (ours or a backend's) are not faults of the store
        except Exception as exc:  # noqa: BLE001 - any fault of a third-party backend fails open
            self._fault(op, label, exc, started)
            return FAILED
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

    async def _alookup(self, key: str, type: Any, namespace: Namespace | None) -> tuple[Any, Any]:
        """``(value or MISSING, the bytes read)``: what a conditional write compares with.

        The bytes are ``None`` when the key was absent (or unreadable), a tombstone after
        an invalidation, or the entry itself on a hit.
        """
        full, label, _ = self._key(key, namespace)
        started = time.perf_counter()
        raw = await self._arun("get", label, started, self.backend.aget, full)
        if raw is FAILED:
            return MISSING, None
        if raw is None or raw.startswith(TOMBSTONE):
            self._observe("get", label, "miss", started, full)
            return MISSING, raw
        try:
            value = self._loads(raw, type)
        except CorruptValueError:
            await self._arun("delete", label, started, self.backend.adelete, full)
            self._observe("get", label, "miss", started, full)
            return MISSING, None
        self._observe("get", label, "hit", started, full)
        return value, raw

    async def _aindex(
        self, key: str, tags: Sequence[str], ttl: Duration | None, namespace: Namespace | None
    ) -> None:
        """Enter ``key`` in its tags' indexes before its value is computed.

        A tag invalidation that comes while the value is loading then finds the key and
        leaves a tombstone, so the loaded (now stale) value is not stored.
        """
        full, label, default_ttl = self._key(key, namespace)
        seconds = self._ttl(ttl, default_ttl)
        started = time.perf_counter()
        ops = [Op("tag_add", self._tag_key(tag), ttl=seconds, members=(full,)) for tag in tags]
        results = await self._arun("tag", label, started, self.backend.aexecute, ops)
        failed = (
            None
            if results is FAILED
            else next((r for r in results if isinstance(r, Exception)), None)
        )
        if failed is not None:
            self._fault("tag", label, failed, started)

    async def _astore(
        self,
        key: str,
        value: object,
        ttl: Duration | None,
        *,
        namespace: Namespace | None,
        tags: Sequence[str],
        seen: bytes | None,
        read_at: float,
    ) -> bool:
        """Store a computed value unless the key changed since it was read (one round trip).

        ``seen`` and ``read_at`` come from the ``_alookup`` before the computation: when an
        invalidation (or another writer) changed the key since, or when a tombstone seen
        then may have expired by now, nothing is written: a value loaded before an
        invalidation never lands after it.
        """
        full, label, default_ttl = self._key(key, namespace)
        seconds = self._ttl(ttl, default_ttl)
        started = time.perf_counter()
        data = self._dumps(full, value)
        if self._too_late(read_at):
            self._observe("set", label, "skip", started, full)
            return False
        ops = self._store_ops(full, data, seconds, seen, [self._tag_key(tag) for tag in tags])
        results = await self._arun("set", label, started, self.backend.aexecute, ops)
        if results is FAILED:
            return False
        failed = next((r for r in results if isinstance(r, Exception)), None)
        if failed is not None:
            self._fault("set", label, failed, started)
            return False
        stored = results[0] is True
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
        full, label, default_ttl = self._key(key, namespace)
        seconds = self._ttl(ttl, default_ttl)
        started = time.perf_counter()
        data = self._dumps(full, value)
        if tags:
            ops = [Op("set", full, data, ttl=seconds, nx=nx)]
            ops += [Op("tag_add", self._tag_key(t), ttl=seconds, members=(full,)) for t in tags]
            results = await self._arun("set", label, started, self.backend.aexecute, ops)
            stored = FAILED if results is FAILED else results[0]
        else:
            stored = await self._arun(
                "set", label, started, self.backend.aset, full, data, seconds, nx=nx
            )
        if stored is False and nx:
            # An invalidated key holds a tombstone, which is absent for ``nx``.
            held = await self._arun("get", label, started, self.backend.aget, full)
            if isinstance(held, bytes) and held.startswith(TOMBSTONE):
                ops = self._store_ops(full, data, seconds, held, [])
                results = await self._arun("set", label, started, self.backend.aexecute, ops)
                stored = FAILED if results is FAILED else results[0]
        if stored is FAILED or isinstance(stored, Exception):
            if isinstance(stored, Exception):
                self._fault("set", label, stored, started)
            return False
        self._observe("set", label, "set" if stored else "skip", started, full)
        return bool(stored)

    async def adelete(self, key: str, *, namespace: Namespace | None = None) -> bool:
        """Remove ``key``; returns whether it existed (``False`` on a backend fault)."""
        full, label, _ = self._key(key, namespace)
        started = time.perf_counter()
        removed = await self._aerase("delete", label, started, [full])
        return removed > 0

    async def _aerase(self, op: str, label: str, started: float, fulls: Sequence[str]) -> int:
        """Invalidate ``fulls`` in one round trip; returns how many held a live value."""
        if not fulls:
            return 0
        results = await self._arun(
            op, label, started, self.backend.aexecute, self._erase_ops(fulls)
        )
        if results is FAILED:
            return 0
        removed, failed = self._erased(results)
        if failed is not None:
            self._fault(op, label, failed, started)
        self._observe(op, label, "delete", started, count=removed)
        return removed

    async def aexists(self, key: str, *, namespace: Namespace | None = None) -> bool:
        """Whether ``key`` holds a live value (``False`` on a backend fault)."""
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
    ) -> tuple[dict[str, Any], dict[str, bytes | None]]:
        """The hits, and the bytes read for every key (see ``_alookup``), in one round trip."""
        resolved = [self._key(key, namespace) for key in keys]
        if not resolved:
            return {}, {}
        label = resolved[0][1]
        started = time.perf_counter()
        full_keys = [full for full, _, _ in resolved]
        raws = await self._arun("get_many", label, started, self.backend.aget_many, full_keys)
        if raws is FAILED:
            return {}, dict.fromkeys(keys)
        found: dict[str, Any] = {}
        seen: dict[str, bytes | None] = {}
        corrupt: list[str] = []
        for key, full, raw in zip(keys, full_keys, raws, strict=True):
            seen[key] = raw
            if raw is not None and not raw.startswith(TOMBSTONE):
                try:
                    found[key] = self._loads(raw, type)
                except CorruptValueError:
                    corrupt.append(full)
                    seen[key] = None
        if corrupt:
            await self._arun("delete_many", label, started, self.backend.adelete_many, corrupt)
        self._observe_many("get_many", resolved, found, keys, started)
        return found, seen

    async def _astore_many(
        self,
        mapping: Mapping[str, object],
        ttl: Duration | None,
        *,
        namespace: Namespace | None,
        seen: Mapping[str, bytes | None],
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
            data = self._dumps(full, value)
            ops += self._store_ops(full, data, self._ttl(ttl, default_ttl), seen.get(key), [])
        if self._too_late(read_at):
            self._observe("set_many", label, "skip", started, count=len(ops))
            return 0
        results = await self._arun("set_many", label, started, self.backend.aexecute, ops)
        if results is FAILED:
            return 0
        failed = next((r for r in results if isinstance(r, Exception)), None)
        if failed is not None:
            self._fault("set_many", label, failed, started)
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

    async def adelete_many(self, keys: Sequence[str], *, namespace: Namespace | None = None) -> int:
        """Remove ``keys``; returns how many existed (0 on a backend fault)."""
        resolved = [self._key(key, namespace) for key in keys]
        if not resolved:
            return 0
        started = time.perf_counter()
        return await self._aerase(
            "delete_many", resolved[0][1], started, [full for full, _, _ in resolved]
        )

    async def attl(self, key: str, *, namespace: Namespace | None = None) -> float | None:
        """Seconds ``key`` has left.

        Returns:
            ``None`` if absent (or on a backend fault), ``math.inf`` if it never expires.
        """
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
        full, label, _ = self._key(key, namespace)
        seconds = self._ttl(ttl, None)
        started = time.perf_counter()
        if seconds is None:
            done = await self._arun("persist", label, started, self.backend.apersist, full)
        else:
            done = await self._arun("expire", label, started, self.backend.aexpire, full, seconds)
        if done is FAILED:
            return False
        self._observe("expire", label, "set" if done else "miss", started, full)
        return bool(done)

    async def apersist(self, key: str, *, namespace: Namespace | None = None) -> bool:
        """Remove the TTL of ``key``; returns whether it had one."""
        full, label, _ = self._key(key, namespace)
        started = time.perf_counter()
        done = await self._arun("persist", label, started, self.backend.apersist, full)
        if done is FAILED:
            return False
        self._observe("persist", label, "set" if done else "miss", started, full)
        return bool(done)

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
            ops = self._store_ops(full, fresh, seconds, held, [])
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

    async def adelete_pattern(self, pattern: str, *, namespace: Namespace | None = None) -> int:
        """Delete the keys matching a glob ``pattern`` under this cache's key prefix.

        Uses SCAN and UNLINK in batches, never KEYS or FLUSHDB; a key outside the cache's
        ``key_prefix`` (and ``namespace``, when given) is never touched.

        Returns:
            How many keys were deleted (0 on a backend fault).

        Raises:
            ConfigurationError: The pattern would match the whole database.
        """
        glob = self._pattern(pattern, namespace)
        label = namespace.prefix if namespace is not None else "default"
        started = time.perf_counter()
        removed = await self._arun(
            "delete_pattern", label, started, self.backend.adelete_pattern, glob
        )
        if removed is FAILED:
            return 0
        self._observe("delete_pattern", label, "delete", started, glob, count=int(removed))
        return int(removed)

    async def ainvalidate_tags(self, *tags: str) -> int:
        """Remove every entry carrying any of ``tags``, and the tags' indexes.

        Returns:
            How many entries were removed (0 on a backend fault).
        """
        started = time.perf_counter()
        removed = 0
        for tag in tags:
            tag_key = self._tag_key(tag)
            members = await self._arun(
                "invalidate_tags", "tags", started, self.backend.atag_members, tag_key
            )
            if members is FAILED:
                continue
            ops = [*self._erase_ops(members), Op("delete", tag_key)]
            results = await self._arun(
                "invalidate_tags", "tags", started, self.backend.aexecute, ops
            )
            if results is not FAILED:
                count, failed = self._erased(results[:-1])
                if failed is not None:
                    self._fault("invalidate_tags", "tags", failed, started)
                removed += count
        self._observe("invalidate_tags", "tags", "delete", started, count=removed)
        return removed

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
