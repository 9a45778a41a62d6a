"""Django's cache API on kirocache: a ``CACHES`` backend, sync and async.

Point a ``CACHES`` alias at it::

    CACHES = {
        "default": {
            "BACKEND": "kirocache.contrib.django.KirocacheCache",
            "LOCATION": "redis://localhost:6379/0",  # or "memory://"
            "TIMEOUT": 300,
            "KEY_PREFIX": "shop",
            "OPTIONS": {"key_prefix": "django:", "socket_timeout": 0.2},
        }
    }

``django.core.cache.cache``, ``cache_page``, the cache middleware and the cache session
engine then run on kirocache, with its fault tolerance (a Redis outage is a miss,
not a 500), metrics and key-prefix confinement.
"""

from __future__ import annotations

import hmac
import math
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Final

from django.core.cache.backends.base import (  # type: ignore[import-untyped]
    DEFAULT_TIMEOUT,
    BaseCache,
)
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]

from kirocache import MISSING, NEVER, BackendError, Cache, ConfigurationError
from kirocache.backends import escape_glob, mask_url
from kirocache.serializers import PickleSerializer

__all__ = ["KirocacheCache", "SettingsPickleSerializer"]

DEFAULT_KEY_PREFIX: Final = "django:"
"""The kirocache key prefix of a ``CACHES`` alias whose OPTIONS give none."""

_INT64: Final = range(-(2**63), 2**63)
# add() with a timeout of 0 answers as if it stored: it stores this briefly and deletes,
# so a delete lost to a fault leaves nothing behind for long
_BRIEF: Final = 1.0
_SALT: Final = b"kirocache.contrib.django.KirocacheCache"

_shared: dict[tuple[object, ...], Cache] = {}
_shared_lock = threading.Lock()


class SettingsPickleSerializer:
    """Signed pickle for Django's values, keyed by ``SECRET_KEY``; ints stored as counters.

    Django caches any picklable object, so values are pickled, and signed with HMAC under a
    key derived from ``SECRET_KEY`` (and verified with those of ``SECRET_KEY_FALLBACKS``
    too, so a rotation keeps values readable): bytes written by anyone without the secret
    are never unpickled, they read as a miss. The keys are derived again whenever the
    settings change. A plain ``int`` in the 64-bit range is stored as its decimal digits,
    the form kirocache keeps counters in, so ``incr``/``decr`` add atomically in the
    backend (``INCRBY``).
    """

    __slots__ = ("_pickle", "_secrets")

    binds_key: Final = True
    """The cache passes each entry's key, for the signature to cover (see ``dumps``)."""

    def __init__(self) -> None:
        self._secrets: tuple[object, ...] = ()
        self._pickle: PickleSerializer | None = None

    def _current(self) -> PickleSerializer:
        # imported here, not at module level: the lazy settings object answers any
        # attribute lookup (doctest's, say) by demanding configured settings
        from django.conf import settings  # type: ignore[import-untyped]

        secrets = (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ()))
        pickler = self._pickle
        if pickler is None or secrets != self._secrets:
            keys = [
                hmac.digest(key.encode() if isinstance(key, str) else key, _SALT, "sha256")
                for key in secrets
            ]
            pickler = self._pickle = PickleSerializer(keys)
            self._secrets = secrets
        return pickler

    def dumps(self, value: object, *, key: str | None = None) -> bytes:
        """Serialize ``value``: a counter's digits for an int, else a signed pickle frame.

        Args:
            value: Any picklable value.
            key: The backend key the entry is stored at, which the signature covers when
                the pickle serializer binds entries to their keys.

        Returns:
            The bytes to store.

        Raises:
            SerializationError: The value cannot be pickled.
        """
        if type(value) is int and value in _INT64:
            return str(value).encode("ascii")
        pickler = self._current()
        if key is not None and _binds_key(pickler):
            return pickler.dumps(value, key=key)  # type: ignore[call-arg, unused-ignore]
        return pickler.dumps(value)

    def loads(
        self, data: bytes, type: Any = None, *, key: str | None = None, limit: int | None = None
    ) -> Any:
        """Verify and unpickle a frame (the cache reads counters back as ``int`` itself).

        Args:
            data: Bytes made by ``dumps``.
            type: What the value must be an instance of, or ``None``.
            key: The backend key the bytes were read at.
            limit: The largest value accepted (the cache's ``max_value_size``).

        Returns:
            The value.

        Raises:
            CorruptValueError: The bytes are not a frame signed with one of the secrets.
        """
        pickler = self._current()
        if key is not None and _binds_key(pickler):
            return pickler.loads(data, type, key=key, limit=limit)  # type: ignore[call-arg, unused-ignore]
        return pickler.loads(data, type)


def _binds_key(serializer: object) -> bool:
    return getattr(serializer, "binds_key", False) is True


class KirocacheCache(BaseCache):  # type: ignore[misc]  # Django ships no type hints
    """A Django cache backend on a kirocache ``Cache`` (memory or Redis), sync and async.

    It follows Django's cache contract: ``make_key`` with ``KEY_PREFIX``, ``VERSION`` and
    ``KEY_FUNCTION``; ``TIMEOUT`` (300 s by default, ``None`` keeps values forever, ``0``
    or less stores nothing, or expires the key now); ``add`` answers whether it stored;
    ``incr``/``decr`` raise ``ValueError`` for a missing key; ``set_many`` answers the keys
    it failed to store; every method has its ``a``-prefixed async twin, native rather
    than run in a thread. Backend faults fail open: reads miss and writes are skipped.

    The ``Cache`` is built on first use and shared by every instance (Django makes one
    per thread) with the same ``LOCATION`` and ``OPTIONS``, so ``memory://`` is one store
    per process, as ``locmem`` is, and Redis one pool. ``close()``, which Django calls
    after each request, keeps the connections.

    Args:
        server: ``LOCATION``: a kirocache URL (``memory://``, ``redis://``, ``rediss://``,
            ``unix://``); empty means ``memory://``.
        params: The rest of the alias: ``TIMEOUT``, ``KEY_PREFIX``, ``VERSION``,
            ``KEY_FUNCTION``, and ``OPTIONS``, passed to ``Cache.from_url``. ``key_prefix``
            there is the cache's own (``"django:"`` by default), inside which ``clear()``
            deletes; without a ``serializer`` values are pickled, signed with a key
            derived from ``SECRET_KEY``.

    Raises:
        ImproperlyConfigured: On first use, when ``LOCATION`` or ``OPTIONS`` are not
            understood.
    """

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self._location = server or "memory://"
        self._options: dict[str, Any] = dict(params.get("OPTIONS") or {})
        self._counters = "serializer" not in self._options
        self._kirocache: Cache | None = None

    # -- the kirocache Cache ---------------------------------------------------------------

    @property
    def cache(self) -> Cache:
        """The kirocache ``Cache`` underneath, for tags, ``@cached(cache=...)``, metrics."""
        cache = self._kirocache
        if cache is None:
            cache = self._kirocache = self._shared_cache()
        return cache

    def _shared_cache(self) -> Cache:
        options = dict(self._options)
        options.setdefault("key_prefix", DEFAULT_KEY_PREFIX)
        if self._counters:
            options["serializer"] = SettingsPickleSerializer()
        identity = (self._location, repr(sorted(self._options.items())))
        with _shared_lock:
            cache = _shared.get(identity)
            if cache is None:
                cache = _shared[identity] = self._build(options)
        return cache

    def _build(self, options: dict[str, Any]) -> Cache:
        where = f"CACHES entry with LOCATION {mask_url(self._location)!r} and its OPTIONS"
        try:
            return Cache.from_url(self._location, **options)
        except ConfigurationError as exc:
            msg = f"{where}: {exc}"
            raise ImproperlyConfigured(msg) from exc
        except TypeError as exc:
            msg = (
                f"{where}: an OPTIONS entry is not a kirocache option ({exc}); OPTIONS go "
                "to kirocache.Cache.from_url: see docs/configuration.md"
            )
            raise ImproperlyConfigured(msg) from None

    # -- timeouts and keys -----------------------------------------------------------------

    def get_backend_timeout(self, timeout: Any = DEFAULT_TIMEOUT) -> float | None:
        """The TTL to store with: seconds, ``NEVER`` for ``None``, ``None`` for "expire now".

        Args:
            timeout: Seconds, ``None`` (forever) or ``DEFAULT_TIMEOUT`` (``TIMEOUT``).

        Returns:
            The kirocache TTL, or ``None`` when the key must not be kept (0 or less).
        """
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return NEVER
        return float(timeout) if timeout > 0 else None

    def _clear_pattern(self) -> str:
        # With the default key function every key of this alias starts with KEY_PREFIX:,
        # so clear() spares the other aliases sharing the kirocache key prefix.
        if self.key_prefix and self.make_key("k", version=1) == f"{self.key_prefix}:1:k":
            return escape_glob(f"{self.key_prefix}:") + "*"
        return "*"

    def _key_ttl(self, key: str, timeout: Any, version: int | None) -> tuple[str, float | None]:
        return self.make_and_validate_key(key, version=version), self.get_backend_timeout(timeout)

    def _keys(self, keys: Iterable[str], version: int | None) -> dict[str, str]:
        return {self.make_and_validate_key(key, version=version): key for key in keys}

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        """The value at ``key``, or ``default`` on a miss (or a backend fault)."""
        return self.cache.get(self.make_and_validate_key(key, version=version), default)

    async def aget(self, key: str, default: Any = None, version: int | None = None) -> Any:
        """Async ``get``."""
        return await self.cache.aget(self.make_and_validate_key(key, version=version), default)

    def get_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        """The values of the ``keys`` that are cached, in one round trip; misses left out."""
        names = self._keys(keys, version)
        return {names[full]: value for full, value in self.cache.get_many(list(names)).items()}

    async def aget_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        """Async ``get_many``."""
        names = self._keys(keys, version)
        found = await self.cache.aget_many(list(names))
        return {names[full]: value for full, value in found.items()}

    def has_key(self, key: str, version: int | None = None) -> bool:
        """Whether ``key`` holds a live value."""
        return self.cache.exists(self.make_and_validate_key(key, version=version))

    async def ahas_key(self, key: str, version: int | None = None) -> bool:
        """Async ``has_key``."""
        return await self.cache.aexists(self.make_and_validate_key(key, version=version))

    # -- writes ----------------------------------------------------------------------------

    def set(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Store ``value`` at ``key`` for ``timeout`` seconds (0 or less: delete it)."""
        full, ttl = self._key_ttl(key, timeout, version)
        if ttl is None:
            self.cache.delete(full)
        else:
            self.cache.set(full, value, ttl)

    async def aset(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Async ``set``."""
        full, ttl = self._key_ttl(key, timeout, version)
        if ttl is None:
            await self.cache.adelete(full)
        else:
            await self.cache.aset(full, value, ttl)

    def add(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store ``value`` only if ``key`` is absent; answers whether it stored.

        With a timeout of 0 or less it answers the same but keeps nothing, as Django's
        Redis backend does.
        """
        full, ttl = self._key_ttl(key, timeout, version)
        stored = self.cache.set(full, value, _BRIEF if ttl is None else ttl, nx=True)
        if stored and ttl is None:
            self.cache.delete(full)
        return stored

    async def aadd(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Async ``add``."""
        full, ttl = self._key_ttl(key, timeout, version)
        stored = await self.cache.aset(full, value, _BRIEF if ttl is None else ttl, nx=True)
        if stored and ttl is None:
            await self.cache.adelete(full)
        return stored

    def set_many(
        self, data: Mapping[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        """Store every item of ``data``; answers the keys that were not stored."""
        mapping = {self.make_and_validate_key(k, version=version): v for k, v in data.items()}
        ttl = self.get_backend_timeout(timeout)
        if not mapping:
            return []
        if ttl is None:
            self.cache.delete_many(list(mapping))
            return []
        return [] if self.cache.set_many(mapping, ttl) else list(data)

    async def aset_many(
        self, data: Mapping[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        """Async ``set_many``."""
        mapping = {self.make_and_validate_key(k, version=version): v for k, v in data.items()}
        ttl = self.get_backend_timeout(timeout)
        if not mapping:
            return []
        if ttl is None:
            await self.cache.adelete_many(list(mapping))
            return []
        return [] if await self.cache.aset_many(mapping, ttl) else list(data)

    def touch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Give ``key`` a new timeout (``None``: forever; 0: expire now); whether it existed."""
        full, ttl = self._key_ttl(key, timeout, version)
        if ttl is None:
            return self.cache.delete(full)
        # expire(NEVER) answers whether a TTL was removed: a key without one exists too
        return self.cache.expire(full, ttl) or (ttl == NEVER and self.cache.exists(full))

    async def atouch(
        self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Async ``touch``."""
        full, ttl = self._key_ttl(key, timeout, version)
        if ttl is None:
            return await self.cache.adelete(full)
        return await self.cache.aexpire(full, ttl) or (
            ttl == NEVER and await self.cache.aexists(full)
        )

    # -- counters --------------------------------------------------------------------------

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> Any:
        """Add ``delta`` to the value at ``key``, atomically for an int; answers the sum.

        Raises:
            ValueError: ``key`` holds no value.
            BackendError: The backend failed while adding.
        """
        full = self.make_and_validate_key(key, version=version)
        value = self.cache.get(full, MISSING)
        if value is MISSING:
            msg = f"Key '{key}' not found"
            raise ValueError(msg)
        if self._atomic(value, delta):
            return _added(self.cache.incr(full, delta), full)
        new = value + delta
        left = self.cache.ttl(full)
        self.cache.set(full, new, self._keep(left))
        return new

    async def aincr(self, key: str, delta: int = 1, version: int | None = None) -> Any:
        """Async ``incr``."""
        full = self.make_and_validate_key(key, version=version)
        value = await self.cache.aget(full, MISSING)
        if value is MISSING:
            msg = f"Key '{key}' not found"
            raise ValueError(msg)
        if self._atomic(value, delta):
            return _added(await self.cache.aincr(full, delta), full)
        new = value + delta
        left = await self.cache.attl(full)
        await self.cache.aset(full, new, self._keep(left))
        return new

    def _atomic(self, value: object, delta: object) -> bool:
        # A counter is added to in the backend; anything else (a float, a big int, a
        # value from another serializer) is read, added to here and written back.
        return (
            self._counters and type(value) is int and type(delta) is int and value + delta in _INT64
        )

    def _keep(self, left: float | None) -> float:
        """The TTL to write a changed value with: what the key had left."""
        if left is None:  # gone meanwhile: a new key, with the default timeout
            return self.get_backend_timeout() or NEVER
        return NEVER if math.isinf(left) else max(left, 0.001)

    # -- deletes ---------------------------------------------------------------------------

    def delete(self, key: str, version: int | None = None) -> bool:
        """Delete ``key``; answers whether it held a value."""
        return self.cache.delete(self.make_and_validate_key(key, version=version))

    async def adelete(self, key: str, version: int | None = None) -> bool:
        """Async ``delete``."""
        return await self.cache.adelete(self.make_and_validate_key(key, version=version))

    def delete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        """Delete every key of ``keys``, in one round trip."""
        fulls = list(self._keys(keys, version))
        if fulls:
            self.cache.delete_many(fulls)

    async def adelete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        """Async ``delete_many``."""
        fulls = list(self._keys(keys, version))
        if fulls:
            await self.cache.adelete_many(fulls)

    def clear(self) -> None:
        """Delete this alias's keys: those under its key prefix, never another app's.

        The keys under the kirocache ``key_prefix``, and with the default ``KEY_FUNCTION``
        and a ``KEY_PREFIX`` only those starting with it; SCAN and UNLINK in batches,
        never ``FLUSHDB``.
        """
        self.cache.delete_pattern(self._clear_pattern())

    async def aclear(self) -> None:
        """Async ``clear``."""
        await self.cache.adelete_pattern(self._clear_pattern())

    def close(self, **kwargs: Any) -> None:
        """Keep the connections: Django calls this after every request."""

    async def aclose(self, **kwargs: Any) -> None:
        """Async ``close``: keeps the connections too."""


def _added(new: int | None, full: str) -> int:
    if new is None:
        msg = f"incr of key {full!r} failed: the backend did not answer"
        raise BackendError(msg)
    return new
