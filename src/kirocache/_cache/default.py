"""The process-wide default cache: ``configure()`` sets it, ``get_cache()`` reads it."""

from __future__ import annotations

import threading
from typing import Any

from kirocache._cache import Batch, Cache
from kirocache._cache.urls import verify
from kirocache.exceptions import ConfigurationError

__all__ = ["batch", "configure", "get_cache"]

_lock = threading.Lock()
_default: Cache | None = None


def configure(target: Cache | str | None = None, *, check: bool = False, **options: Any) -> Cache:
    """Set the default cache that ``get_cache()`` (and ``@cached`` without ``cache=``) use.

    Call it at start-up: a bad ``REDIS_URL`` or ``REDIS_DB`` raises here rather than in
    the first request, and with ``check=True`` so does a backend that cannot be used as
    configured (a wrong password, an ACL, an unreachable server, no such database).

    Args:
        target: A ``Cache``, or a URL for ``Cache.from_url``; ``None`` builds one from the
            environment (``REDIS_URL`` set: Redis, otherwise memory).
        check: Ping the backend and read a key under the key prefix before installing
            the cache.
        **options: Options for ``Cache.from_url`` (not allowed with a ``Cache``).

    Returns:
        The new default cache.

    Raises:
        ConfigurationError: Options were given with a ready ``Cache``, or are invalid; or
            ``check`` found the backend unusable (the message names why).

    Examples:
        >>> import kirocache
        >>> cache = kirocache.configure("memory://", key_prefix="demo:")
        >>> kirocache.get_cache() is cache
        True
    """
    global _default  # noqa: PLW0603 - the one process-wide default, guarded by _lock
    if isinstance(target, Cache):
        if options:
            msg = "options cannot be combined with a ready Cache; pass them to Cache()"
            raise ConfigurationError(msg)
        cache = target
        if check:
            verify(cache.backend, cache.key_prefix)
    else:
        try:
            cache = Cache.from_url(target, check=check, **options)
        except ConfigurationError as exc:
            target = options = None  # type: ignore[assignment] # error trackers record locals
            raise exc.with_traceback(None) from None
    with _lock:
        _default = cache
    return cache


def get_cache() -> Cache:
    """Return the default cache, building it from the environment on first use.

    Returns:
        The cache set by ``configure()``; without one, a cache on ``REDIS_URL`` when that is
        set, otherwise an in-memory cache.

    Raises:
        ConfigurationError: No cache was configured and the environment is invalid.
    """
    global _default  # noqa: PLW0603 - the one process-wide default, guarded by _lock
    cache = _default
    if cache is not None:
        return cache
    with _lock:
        if _default is None:
            try:
                _default = Cache.from_url(None)
            except ConfigurationError as exc:
                msg = (
                    f"{exc} (read from the environment at the default cache's first use: "
                    "call kirocache.configure() at start-up to find this there)"
                )
                raise ConfigurationError(msg) from None
        return _default


def _swap_default(cache: Cache | None) -> Cache | None:
    """Install ``cache`` as the default (``None``: none yet) and return the one it replaced.

    One atomic step, so ``kirocache.testing.use_cache`` can restore exactly what it found.
    """
    global _default  # the one process-wide default, guarded by _lock
    with _lock:
        previous, _default = _default, cache
    return previous


def batch(*, transaction: bool = False) -> Batch:
    """A batch on the default cache (see ``configure`` and ``get_cache``).

    Args:
        transaction: Run the operations atomically.

    Returns:
        An empty ``Batch``; chain operations and end with ``execute()``.

    Examples:
        >>> import kirocache
        >>> _ = kirocache.configure("memory://")
        >>> batch().set("a", 1).set("b", 2).delete("a").execute().ok
        True
    """
    return Batch(get_cache(), transaction=transaction)
