"""Cache URLs: the backend and the cache options that ``Cache.from_url`` builds from one."""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kirocache.backends._config import (
    MULTI_NODE_SCHEMES,
    check_options,
    mask_url,
    settings_from_env,
)
from kirocache.exceptions import (
    AuthenticationError,
    BackendError,
    ConfigurationError,
    PermissionDeniedError,
)

__all__ = ["CACHE_OPTIONS", "backend_from_url", "verify"]

CACHE_OPTIONS = frozenset(
    {
        "serializer",
        "metrics",
        "key_prefix",
        "namespaces",
        "default_ttl",
        "on_error",
        "max_value_size",
        "breaker",
        "debug",
        "tombstone_ttl",
        "invalidation_log_size",
        "clock",
    }
)
_MEMORY_OPTIONS = {"max_entries": int, "max_bytes": int}
_CACHE_AND_CHECK = CACHE_OPTIONS | {"check"}


def backend_from_url(url: str | None, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The backend a URL names, and the options meant for ``Cache`` (see ``Cache.from_url``).

    Args:
        url: ``memory://...``, ``redis://``, ``rediss://`` or ``unix://``; ``None``:
            ``REDIS_URL`` from the environment, else ``memory://``.
        options: ``Cache`` options and backend options, mixed; ``check=True`` pings the
            backend (authenticating, and reading a key under ``key_prefix``) before it is
            returned.

    Returns:
        The backend, and the ``Cache`` options taken out of ``options``.

    Raises:
        ConfigurationError: The URL scheme or an option is not understood (the message
            lists the known options), or ``check`` found the backend unusable (the message
            names why: authentication, ACL, unreachable, no such database).
    """
    options = dict(options)
    check = options.pop("check", False)
    cache_options = {name: options.pop(name) for name in list(options) if name in CACHE_OPTIONS}
    if url is None:
        url = settings_from_env().redis_url or "memory://"
    scheme = _scheme(url)
    if scheme == "null":  # caching switched off: every read a miss, nothing stored
        from kirocache.backends.null import NullBackend

        check_options(NullBackend, options, "null://", also=_CACHE_AND_CHECK)
        return NullBackend.from_url(url), cache_options
    if scheme == "memory":
        from kirocache.backends.memory import MemoryBackend

        check_options(MemoryBackend, options, "memory://", also=_CACHE_AND_CHECK)
        for name, value in parse_qsl(urlsplit(url).query):
            if name not in _MEMORY_OPTIONS:
                msg = f"unknown memory:// option {name!r}; known: {sorted(_MEMORY_OPTIONS)}"
                raise ConfigurationError(msg)
            try:
                options.setdefault(name, _MEMORY_OPTIONS[name](value))
            except ValueError:
                msg = f"memory:// option {name}={value!r} is not a whole number"
                raise ConfigurationError(msg) from None
        return MemoryBackend(**options), cache_options
    if scheme in ("redis", "rediss", "unix"):
        from kirocache.backends.redis import RedisBackend

        check_options(RedisBackend, options, f"{scheme}://", also=_CACHE_AND_CHECK)
        try:
            backend = RedisBackend.from_url(url, **options)
        except ConfigurationError as exc:
            # error trackers record the locals of every frame: these hold the URL
            url = options = None  # type: ignore[assignment]
            raise exc.with_traceback(None) from None
        if check:
            verify(backend, cache_options.get("key_prefix", ""))
        return backend, cache_options
    if scheme in MULTI_NODE_SCHEMES:
        from kirocache.backends.cluster import multi_node_backend

        try:
            backend = multi_node_backend(url, options, also=_CACHE_AND_CHECK)
        except ConfigurationError as exc:
            url = options = None  # type: ignore[assignment]
            raise exc.with_traceback(None) from None
        if check:
            verify(backend, cache_options.get("key_prefix", ""))
        return backend, cache_options
    msg = (
        f"unsupported cache URL {mask_url(url)!r}: use memory://, redis://, rediss://, "
        "unix://, redis+cluster:// or redis+sentinel://"
    )
    url = options = None  # type: ignore[assignment]
    raise ConfigurationError(msg)


def _scheme(url: str) -> str:
    try:
        return urlsplit(url).scheme
    except ValueError:  # "[" in an unencoded password: the Redis parser says what is wrong
        return url.partition(":")[0].lower()


def verify(backend: Any, key_prefix: str = "") -> None:
    """Ping ``backend`` and read one key under ``key_prefix``: usable as configured?

    Args:
        backend: A backend with sync methods.
        key_prefix: The cache's key prefix; an ACL that confines the user to it must allow
            reading there.

    Raises:
        ConfigurationError: Naming the problem (authentication, ACL, unreachable, no
            such database), chained from the backend's error. The backend is closed.
    """
    try:
        backend.ping()
        backend.exists(f"{key_prefix}kirocache:check")
    except BackendError as exc:
        with contextlib.suppress(Exception):
            backend.close()
        raise ConfigurationError(f"{_problem(exc)}: {exc}") from exc


def _problem(exc: BackendError) -> str:
    if isinstance(exc, AuthenticationError):
        return "the cache's backend refused to authenticate this client"
    if isinstance(exc, PermissionDeniedError):
        return "the cache's backend ACL refuses this client what the cache needs"
    if "no such database" in str(exc):
        return "the cache's backend has no such database"
    if exc.outage:
        return "the cache's backend is unreachable"
    return "the cache's backend refused the start-up check"
