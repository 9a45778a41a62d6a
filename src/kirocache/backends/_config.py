"""Settings from arguments first, then the environment; Redis URL parsing and masking."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from kirocache.exceptions import ConfigurationError

__all__ = [
    "ENV_CACHE_DEBUG",
    "ENV_REDIS_DB",
    "ENV_REDIS_PASSWORD",
    "ENV_REDIS_URL",
    "REDIS_SCHEMES",
    "RedisURL",
    "Settings",
    "mask_url",
    "parse_db",
    "parse_redis_url",
    "resolve_settings",
    "settings_from_env",
]

ENV_REDIS_URL = "REDIS_URL"
ENV_REDIS_PASSWORD = "REDIS_PASSWORD"  # noqa: S105 - the variable's name, not a secret
ENV_REDIS_DB = "REDIS_DB"
ENV_CACHE_DEBUG = "CACHE_DEBUG"

REDIS_SCHEMES = ("redis", "rediss", "unix")
_TRUTHY = frozenset({"1", "true", "yes", "on"})
_MASK = "***"
_URL_QUERY_OPTIONS = frozenset({"db", "username", "password", "client_name"})


@dataclass(frozen=True)
class Settings:
    """Connection and logging settings after arguments and environment were merged.

    Attributes:
        redis_url: The Redis URL, or ``None`` when neither an argument nor ``REDIS_URL``
            gave one.
        redis_password: The password to use when the URL carries none.
        redis_db: The database number to use when the URL names none.
        debug: Log every operation with key, outcome and latency (``CACHE_DEBUG``).
    """

    redis_url: str | None = None
    redis_password: str | None = field(default=None, repr=False)
    redis_db: int | None = None
    debug: bool = False

    def __repr__(self) -> str:
        url = None if self.redis_url is None else mask_url(self.redis_url)
        password = None if self.redis_password is None else _MASK
        return (
            f"Settings(redis_url={url!r}, redis_password={password!r}, "
            f"redis_db={self.redis_db!r}, debug={self.debug!r})"
        )


@dataclass(frozen=True)
class RedisURL:
    """The parts of a ``redis://``, ``rediss://`` or ``unix://`` URL.

    Attributes:
        scheme: ``"redis"``, ``"rediss"`` (TLS) or ``"unix"``.
        host: Host name for TCP schemes.
        port: Port for TCP schemes.
        path: Socket path for ``unix://``.
        username: ACL user name, if the URL has one.
        password: Password, if the URL has one.
        db: Database number, if the URL names one (path ``/3`` or ``?db=3``).
        client_name: ``?client_name=`` if given.
    """

    scheme: str
    host: str = "localhost"
    port: int = 6379
    path: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int | None = None
    client_name: str | None = None

    @property
    def tls(self) -> bool:
        """Whether the URL asks for TLS (``rediss://``)."""
        return self.scheme == "rediss"


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``.

    Both ``scheme://user:password@host`` and a ``?password=`` query option are masked.
    The function never raises, even on a malformed URL.

    Args:
        url: A URL that may carry a password.

    Returns:
        The same URL, safe to log.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is not None and "@" in parts.netloc:
        userinfo, _, hostport = parts.netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + _MASK
        url = url.replace(parts.netloc, f"{userinfo}@{hostport}", 1)
    elif parts is None:
        url = re.sub(r"(//[^/?#@]*?:)[^@]*@", rf"\g<1>{_MASK}@", url)
    return re.sub(r"([?&]password=)[^&#]*", rf"\g<1>{_MASK}", url)


def parse_db(value: object, *, source: str) -> int:
    """Validate a Redis database number.

    Args:
        value: An ``int`` or a decimal string.
        source: What gave the value (an argument or variable name), for the message.

    Returns:
        The database number.

    Raises:
        ConfigurationError: The value is not a non-negative integer.
    """
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or number < 0:
        msg = f"{source} must be a non-negative integer database number, got {value!r}"
        raise ConfigurationError(msg)
    return number


def parse_redis_url(url: str, *, source: str = "url") -> RedisURL:
    """Split a Redis URL into its parts, validating scheme, port and database.

    Args:
        url: ``redis://[user[:password]@]host[:port][/db]``,
            ``rediss://...`` (TLS) or ``unix://[user[:password]@]/path/to.sock[?db=N]``.
        source: What gave the URL (``"url"``, ``"REDIS_URL"``), named in errors.

    Returns:
        The parsed URL.

    Raises:
        ConfigurationError: The scheme, port, database or a query option is wrong.
    """
    safe = mask_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        msg = f"{source} is not a valid Redis URL ({exc}): {safe!r}"
        raise ConfigurationError(msg) from None
    if parts.scheme not in REDIS_SCHEMES:
        msg = f"{source} must start with redis://, rediss:// or unix://, got {safe!r}"
        raise ConfigurationError(msg)
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - _URL_QUERY_OPTIONS)
    if unknown:
        msg = (
            f"{source} has unsupported query option(s) {', '.join(unknown)}; "
            "pass them as keyword arguments instead"
        )
        raise ConfigurationError(msg)
    username = unquote(parts.username) if parts.username else query.get("username")
    password = unquote(parts.password) if parts.password else query.get("password")
    db_text = query.get("db")
    if parts.scheme == "unix":
        if not parts.path:
            msg = f"{source} must name a socket path, e.g. unix:///run/redis.sock: {safe!r}"
            raise ConfigurationError(msg)
        return RedisURL(
            scheme="unix",
            path=unquote(parts.path),
            username=username,
            password=password,
            db=None if db_text is None else parse_db(db_text, source=f"{source} db"),
            client_name=query.get("client_name"),
        )
    path_db = unquote(parts.path).strip("/")
    if db_text is None and path_db:
        db_text = path_db
    return RedisURL(
        scheme=parts.scheme,
        host=unquote(parts.hostname) if parts.hostname else "localhost",
        port=port if port is not None else 6379,
        username=username,
        password=password,
        db=None if db_text is None else parse_db(db_text, source=f"{source} db"),
        client_name=query.get("client_name"),
    )


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``REDIS_URL``, ``REDIS_PASSWORD``, ``REDIS_DB`` and ``CACHE_DEBUG``.

    Empty variables count as unset. ``CACHE_DEBUG`` is on for ``1``, ``true``, ``yes``
    or ``on`` (any case).

    Args:
        environ: The environment to read; ``os.environ`` by default.

    Returns:
        The settings the environment gives.

    Raises:
        ConfigurationError: ``REDIS_URL`` has a wrong scheme or ``REDIS_DB`` is not a
            non-negative integer; the message names the variable.
    """
    env = os.environ if environ is None else environ
    url = env.get(ENV_REDIS_URL) or None
    if url is not None:
        parse_redis_url(url, source=ENV_REDIS_URL)
    db_text = env.get(ENV_REDIS_DB) or None
    return Settings(
        redis_url=url,
        redis_password=env.get(ENV_REDIS_PASSWORD) or None,
        redis_db=None if db_text is None else parse_db(db_text, source=ENV_REDIS_DB),
        debug=env.get(ENV_CACHE_DEBUG, "").strip().lower() in _TRUTHY,
    )


def resolve_settings(
    *,
    url: str | None = None,
    password: str | None = None,
    db: int | None = None,
    debug: bool | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge explicit arguments over the environment: an argument given wins.

    Args:
        url: Redis URL; ``REDIS_URL`` when ``None``.
        password: Password; ``REDIS_PASSWORD`` when ``None``.
        db: Database number; ``REDIS_DB`` when ``None``.
        debug: Debug logging; ``CACHE_DEBUG`` when ``None``.
        environ: The environment to read; ``os.environ`` by default.

    Returns:
        The merged settings.

    Raises:
        ConfigurationError: An argument or a variable is invalid.
    """
    env = settings_from_env(environ)
    if url is not None:
        parse_redis_url(url)
    return Settings(
        redis_url=env.redis_url if url is None else url,
        redis_password=env.redis_password if password is None else password,
        redis_db=env.redis_db if db is None else parse_db(db, source="db"),
        debug=env.debug if debug is None else debug,
    )
