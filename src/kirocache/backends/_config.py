"""Settings from arguments first, then the environment; Redis URL parsing and masking."""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from kirocache.exceptions import ConfigurationError

__all__ = [
    "ENV_CACHE_DEBUG",
    "ENV_REDIS_DB",
    "ENV_REDIS_PASSWORD",
    "ENV_REDIS_URL",
    "MULTI_NODE_SCHEMES",
    "REDIS_SCHEMES",
    "RedisURL",
    "Settings",
    "check_options",
    "check_redis_url",
    "debug_from_env",
    "known_options",
    "mask_url",
    "parse_db",
    "parse_redis_url",
    "query_options",
    "resolve_settings",
    "settings_from_env",
    "url_keywords",
    "url_query_names",
]

ENV_REDIS_URL = "REDIS_URL"
ENV_REDIS_PASSWORD = "REDIS_PASSWORD"  # noqa: S105 - the variable's name, not a secret
ENV_REDIS_DB = "REDIS_DB"
ENV_CACHE_DEBUG = "CACHE_DEBUG"

REDIS_SCHEMES = ("redis", "rediss", "unix")
_TRUTHY = frozenset({"1", "true", "yes", "on"})
_MASK = "***"
_IDENTITY_OPTIONS = frozenset({"db", "username", "password", "client_name"})
# What redis-py's parse_url reads from a query string besides the identity, by name: those
# it parses (redis.connection.URL_QUERY_ARGUMENT_PARSERS) and the TLS files it passes as
# text. kirocache accepts the same names; ``url_options`` maps them onto its own.
_TEXT_OPTIONS = frozenset(
    {"ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_ciphers"}
)
# Options whose job kirocache does by its own rule: one deadline per call and a retry
# count (``timeout=``, ``retries=``), so redis-py's retry switches are refused by name.
_OWN_RULE = {
    "retry_on_timeout": "kirocache retries by its own rule: pass retries= (0 to turn it off)",
    "retry_on_error": "kirocache retries by its own rule: pass retries= (0 to turn it off)",
    "legacy_responses": "kirocache reads replies its own way; the option does not apply",
}


def _redis_py_parsers() -> Mapping[str, Callable[[Any], Any]]:
    from redis.connection import URL_QUERY_ARGUMENT_PARSERS

    return URL_QUERY_ARGUMENT_PARSERS  # type: ignore[return-value]


def url_query_names() -> frozenset[str]:
    """The query options a ``redis://`` URL takes: the identity and redis-py's own."""
    return _IDENTITY_OPTIONS | _TEXT_OPTIONS | frozenset(_redis_py_parsers())


# kirocache's own options a URL may carry (those of a cluster's per-node breakers).
_OWN_PARSERS: Final[Mapping[str, Callable[[str], Any]]] = {
    "node_failure_threshold": int,
    "node_retry_interval": float,
}
# The query options that stand for a constructor's keyword argument (named as the value):
# a keyword argument left at its default takes the URL's value.
_URL_KEYWORDS: Final = {
    "timeout": "timeout",
    "socket_timeout": "socket_timeout",
    "socket_connect_timeout": "connect_timeout",
    "max_connections": "max_connections",
    "health_check_interval": "health_check_interval",
    "ssl_ca_certs": "ssl_ca_certs",
    "ssl_certfile": "ssl_certfile",
    "ssl_keyfile": "ssl_keyfile",
    "ssl_cert_reqs": "ssl_cert_reqs",
    "node_failure_threshold": "node_failure_threshold",
    "node_retry_interval": "node_retry_interval",
}
_TLS_ONLY: Final = frozenset(
    {
        "ssl_ca_path",
        "ssl_ciphers",
        "ssl_check_hostname",
        "ssl_min_version",
        "ssl_include_verify_flags",
        "ssl_exclude_verify_flags",
        "ssl_cert_reqs",
    }
)


# Through to the end: an unencoded "#" or "&" may be part of the password.
_QUERY_PASSWORD = re.compile(r"([?&](?:sentinel_)?password=).*", re.DOTALL)
_SCHEME_HEAD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*:/*)(.*)", re.DOTALL)
_OPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")
_ENCODE = (
    "percent-encode the password (urllib.parse.quote(password, safe='')), or pass it as "
    "password= or in REDIS_PASSWORD"
)


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
    options: Mapping[str, Any] = field(default_factory=dict)
    """The connection options of the query (``?socket_timeout=2&health_check_interval=10``),
    parsed by redis-py's own parsers and checked (``RedisBackend`` maps them onto its own)."""

    @property
    def tls(self) -> bool:
        """Whether the URL asks for TLS (``rediss://``)."""
        return self.scheme == "rediss"


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``.

    ``scheme://user:password@host``, a ``?password=`` query option (with what follows it)
    and a ``#fragment`` (a
    Redis URL has none: it is a piece of a password whose ``#`` was not percent-encoded)
    are masked. Everything between ``//`` and the last ``@`` counts as the user info, so a
    password with unencoded ``/``, ``?``, ``#`` or ``@`` is masked whole. The function never
    raises, even on a malformed URL.

    Args:
        url: A URL that may carry a password.

    Returns:
        The same URL, safe to log.
    """
    text = _QUERY_PASSWORD.sub(rf"\g<1>{_MASK}", url)
    found = _SCHEME_HEAD.fullmatch(text)
    head, rest = found.groups() if found is not None else ("", text)
    if "@" in rest:
        userinfo, _, tail = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        # "user@host" names a user only; a colon, or "/?#" that only a password has, hides it
        if colon or any(mark in userinfo for mark in "/?#"):
            userinfo = f"{user if colon and not any(m in user for m in '/?#') else ''}:{_MASK}"
        rest = f"{userinfo}@{tail}"
    if "#" in rest:
        rest = rest.partition("#")[0] + "#" + _MASK
    return head + rest


def known_options(target: Callable[..., object]) -> frozenset[str]:
    """The keyword options ``target`` (a class or a function) accepts, but ``url``."""
    parameters = inspect.signature(target).parameters.values()
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(p.name for p in parameters if p.kind in keyword) - {"self", "url"}


def check_options(
    target: Callable[..., object],
    options: Mapping[str, object],
    where: str,
    *,
    also: Iterable[str] = (),
) -> None:
    """Refuse an option ``target`` does not take, listing those it does (and ``also``).

    Raises:
        ConfigurationError: An option is unknown; the message lists the known ones.
    """
    known = known_options(target) | frozenset(also)
    unknown = sorted(set(options) - known)
    if unknown:
        msg = (
            f"{where} got unknown option(s) {', '.join(unknown)}; "
            f"known options: {', '.join(sorted(known))}"
        )
        raise ConfigurationError(msg)


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
    except ValueError:
        # urllib's own words may quote the text around the error: a piece of a password
        msg = (
            f"{source} is not a valid Redis URL ('[' or ']' outside an IPv6 host): {safe!r}; "
            f"if the password contains them, {_ENCODE}"
        )
        raise ConfigurationError(msg) from None
    if parts.scheme not in REDIS_SCHEMES:
        msg = f"{source} must start with redis://, rediss:// or unix://, got {safe!r}"
        raise ConfigurationError(msg)
    _check_shape(url, parts, source, safe)
    try:
        port = parts.port
    except ValueError:
        msg = (
            f"{source} has a port that is not a number from 0 to 65535: {safe!r}; "
            f"if the password contains '/', '?' or '#', {_ENCODE}"
        )
        raise ConfigurationError(msg) from None
    # blank values kept: "?password=a&b" is a password with an unencoded "&", not "a"
    query = {
        name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()
    }
    known = url_query_names()
    unknown = sorted(set(query) - known)
    if unknown:
        # beside a password= an unknown "name" may be the piece after an unencoded "&"
        readable = "password" not in query and all(_OPTION_NAME.fullmatch(n) for n in unknown)
        names = ", ".join(unknown) if readable else "(names not shown)"
        msg = (
            f"{source} has unsupported query option(s) {names} (known: "
            f"{', '.join(sorted(known))}); pass others as keyword arguments"
        )
        raise ConfigurationError(msg)
    options = query_options(query, source)
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
            options=options,
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
        options=options,
    )


def query_options(query: Mapping[str, str], source: str) -> dict[str, Any]:
    """The query's connection options, each parsed as redis-py parses it, or refused.

    The identity (user, password, ``client_name``, ``db``) is left to the caller; the
    ``node_*`` options of a cluster's breakers are read as numbers.

    Args:
        query: The query's options by name (names the caller has checked).
        source: What gave the URL, named in errors.

    Returns:
        The parsed options by name.

    Raises:
        ConfigurationError: An option redis-py would not parse (the message names it and
            its expected form), or one kirocache does by its own rule.
    """
    parsers = {**_redis_py_parsers(), **_OWN_PARSERS}
    options: dict[str, Any] = {}
    for name, text in query.items():
        if name in _IDENTITY_OPTIONS or name == "db":
            continue
        if name in _OWN_RULE:
            msg = f"{source} option {name} is not accepted: {_OWN_RULE[name]}"
            raise ConfigurationError(msg)
        parser = parsers.get(name)
        if parser is None:
            options[name] = text
            continue
        try:
            options[name] = parser(text)
        except (TypeError, ValueError):
            kind = getattr(parser, "__name__", "a value")
            msg = f"{source} option {name}={text!r} is not valid: redis-py reads it as {kind}"
            raise ConfigurationError(msg) from None
    return options


@functools.cache
def _defaults(target: Callable[..., object]) -> dict[str, Any]:
    parameters = inspect.signature(target).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def url_keywords(
    target: Callable[..., object],
    keywords: Mapping[str, Any],
    url_options: Mapping[str, Any],
    *,
    tls: bool,
    refused: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A backend's keyword options with its URL's query options beneath them.

    One rule for every Redis backend: a keyword argument left at its default takes the
    URL's value (``?timeout=0.5`` maps onto ``timeout``, ``?socket_connect_timeout=``
    onto ``connect_timeout``, ...), so keyword arguments win. The URL's other connection
    options are handed back for the client.

    Args:
        target: The backend class (its signature gives the defaults and the options).
        keywords: Its keyword arguments as called (``locals()`` of its ``__init__``).
        url_options: The URL's parsed query options (``query_options``).
        tls: Whether the URL speaks TLS.
        refused: Query options this client cannot take, each with the reason.

    Returns:
        ``(chosen, rest)``: the value of each of ``target``'s options a URL may set, and
        the URL's other options.

    Raises:
        ConfigurationError: An option in ``refused``, a TLS option without TLS, or
            ``protocol`` other than 2.
    """
    defaults = _defaults(target)
    rest = dict(url_options)
    chosen: dict[str, Any] = {}
    for name, keyword in _URL_KEYWORDS.items():
        if keyword in defaults:
            given = keywords[keyword]
            url_value = rest.pop(name, given)
            chosen[keyword] = url_value if given == defaults[keyword] else given
    not_here = sorted((refused or {}).keys() & rest.keys())
    if not_here:
        reasons = "; ".join(f"{name}: {(refused or {})[name]}" for name in not_here)
        msg = f"URL option(s) {', '.join(not_here)} do not apply here ({reasons})"
        raise ConfigurationError(msg)
    if not tls and (misplaced := sorted(url_options.keys() & _TLS_ONLY)):
        msg = (
            f"URL option(s) {', '.join(misplaced)} need a rediss:// URL (several nodes: "
            "rediss+cluster://, rediss+sentinel:// or ?ssl=true)"
        )
        raise ConfigurationError(msg)
    if rest.get("protocol", 2) != 2:
        msg = (
            "URL option protocol must be 2: kirocache reads RESP2 replies (the near cache "
            "uses client tracking over RESP2)"
        )
        raise ConfigurationError(msg)
    return chosen, rest


def _check_shape(url: str, parts: SplitResult, source: str, safe: str) -> None:
    """Refuse what only a typo or an unencoded password makes: the message never quotes it.

    Raises:
        ConfigurationError: One slash after the scheme, an ``@`` after the host (a
            password with ``/``, ``?`` or ``#``), a fragment, or a host in a unix URL.
    """
    if not url[len(parts.scheme) + 1 :].startswith("//"):
        shape = "unix:///path/to.sock" if parts.scheme == "unix" else f"{parts.scheme}://host"
        msg = (
            f"{source} is a malformed URL: {shape} needs two slashes after "
            f"'{parts.scheme}:', got {safe!r}"
        )
        raise ConfigurationError(msg)
    misplaced = (
        "@" in parts.path
        or "@" in parts.fragment
        or any("@" in item.partition("=")[0] for item in parts.query.split("&"))
    )
    if parts.scheme == "unix":
        # nothing but user info stands between // and the socket path
        misplaced = misplaced or (parts.netloc != "" and "@" not in parts.netloc)
    if misplaced or parts.fragment:
        msg = (
            f"{source} is not a valid Redis URL ({safe!r}): it has '@' after the host or a "
            f"'#', which a password with '/', '?', '#' or '@' in it makes; {_ENCODE}"
        )
        raise ConfigurationError(msg)


MULTI_NODE_SCHEMES = ("redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel")


def check_redis_url(url: str, *, source: str = "url") -> None:
    """Validate a Redis URL: one node, or a cluster's or Sentinels' (``MULTI_NODE_SCHEMES``).

    Raises:
        ConfigurationError: The URL is invalid; the message names ``source``.
    """
    if url.partition("://")[0].lower() in MULTI_NODE_SCHEMES:
        from kirocache.backends._cluster_urls import parse_nodes_url  # imports this module

        parse_nodes_url(url, source=source)
    else:
        parse_redis_url(url, source=source)


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
        check_redis_url(url, source=ENV_REDIS_URL)
    db_text = env.get(ENV_REDIS_DB) or None
    return Settings(
        redis_url=url,
        redis_password=env.get(ENV_REDIS_PASSWORD) or None,
        redis_db=None if db_text is None else parse_db(db_text, source=ENV_REDIS_DB),
        debug=debug_from_env(env),
    )


def debug_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``CACHE_DEBUG`` asks for debug logging, reading that variable alone.

    A cache on another backend (memory, a URL given in code) reads this and nothing else
    of the Redis environment, so a malformed ``REDIS_URL`` or ``REDIS_DB`` it does not
    use cannot fail it.

    Args:
        environ: The environment to read; ``os.environ`` by default.

    Returns:
        True for ``1``, ``true``, ``yes`` or ``on`` (any case, spaces ignored).
    """
    env = os.environ if environ is None else environ
    return env.get(ENV_CACHE_DEBUG, "").strip().lower() in _TRUTHY


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
        check_redis_url(url)
    return Settings(
        redis_url=env.redis_url if url is None else url,
        redis_password=env.redis_password if password is None else password,
        redis_db=env.redis_db if db is None else parse_db(db, source="db"),
        debug=env.debug if debug is None else debug,
    )
