"""Cache URLs: the backend and the cache options that ``Cache.from_url`` builds from one."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kirocache.backends._config import mask_url, settings_from_env
from kirocache.exceptions import ConfigurationError

__all__ = ["CACHE_OPTIONS", "backend_from_url"]

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


def backend_from_url(url: str | None, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The backend a URL names, and the options meant for ``Cache`` (see ``Cache.from_url``).

    Args:
        url: ``memory://...``, ``redis://``, ``rediss://`` or ``unix://``; ``None``:
            ``REDIS_URL`` from the environment, else ``memory://``.
        options: ``Cache`` options and backend options, mixed.

    Returns:
        The backend, and the ``Cache`` options taken out of ``options``.

    Raises:
        ConfigurationError: The URL scheme or an option is not understood.
    """
    options = dict(options)
    cache_options = {name: options.pop(name) for name in list(options) if name in CACHE_OPTIONS}
    if url is None:
        url = settings_from_env().redis_url or "memory://"
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from kirocache.backends.memory import MemoryBackend

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

        return RedisBackend.from_url(url, **options), cache_options
    msg = f"unsupported cache URL {mask_url(url)!r}: use memory://, redis://, rediss:// or unix://"
    raise ConfigurationError(msg)
