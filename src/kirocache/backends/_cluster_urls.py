"""``redis+cluster://`` and ``redis+sentinel://`` URLs: several hosts, one deployment (no I/O).

Both schemes take a comma-separated list of ``host:port`` seeds where a ``redis://`` URL
takes one host; everything else reads as it does there:

* ``redis+cluster://[user[:password]@]host:port[,host:port...][/][?options]`` -- seed
  nodes of a Redis Cluster (any reachable one is enough; the others are found), with
  ``node_failure_threshold`` and ``node_retry_interval`` besides.
* ``redis+sentinel://[user[:password]@]host:port[,host:port...]/<master>[/<db>][?options]``
  -- the Sentinels, and the name of the master they watch.

``rediss+cluster://`` and ``rediss+sentinel://`` (or ``?ssl=true``) speak TLS. The query
takes the connection options of a ``redis://`` URL (``timeout``, ``max_connections``,
``socket_connect_timeout``, ``ssl_cert_reqs``, ...: ``query_options``, one parser). The
password in the user info is the data nodes' password, as in ``redis://``; a Sentinel's
own password is the ``sentinel_password`` option (``sentinel_username`` for its ACL
user). A cluster has only database 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, unquote

from kirocache.backends._config import mask_url, parse_db, query_options, url_query_names
from kirocache.exceptions import ConfigurationError

__all__ = [
    "CLUSTER_SCHEMES",
    "SENTINEL_SCHEMES",
    "NodesURL",
    "parse_nodes_url",
    "shown_nodes_url",
]

CLUSTER_SCHEMES: Final = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES: Final = ("redis+sentinel", "rediss+sentinel")
_DEFAULT_PORTS: Final = {"cluster": 6379, "sentinel": 26379}
# Besides a redis:// URL's query options: ``ssl``, and each kind's own.
_OWN: Final = {
    "cluster": frozenset({"ssl", "node_failure_threshold", "node_retry_interval"}),
    "sentinel": frozenset({"ssl", "sentinel_password", "sentinel_username"}),
}
_NOT_CONNECTION: Final = frozenset({"ssl", "sentinel_password", "sentinel_username"})
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_HOST: Final = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[^:\[\]]+))(?::(?P<port>\d+))?")


@dataclass(frozen=True)
class NodesURL:
    """The parts of a cluster or Sentinel URL.

    Attributes:
        kind: ``"cluster"`` or ``"sentinel"``.
        tls: Whether to speak TLS.
        nodes: ``(host, port)`` of each seed node or Sentinel, in the URL's order.
        username: ACL user of the data nodes.
        password: Password of the data nodes.
        master: The master's name (Sentinel).
        db: The database (Sentinel; a cluster has only 0).
        client_name: ``CLIENT SETNAME``.
        sentinel_username: ACL user of the Sentinels.
        sentinel_password: Password of the Sentinels.
        options: The query's connection options, parsed as in a ``redis://`` URL
            (``RedisURL.options``); the backends map them onto their own.
    """

    kind: str
    tls: bool
    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    master: str = ""
    db: int | None = None
    client_name: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)


def _fail(source: str, url: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"{source} is not a valid {why}: {mask_url(url)!r}")


def _flag(value: str, source: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE | _FALSE:
        return lowered in _TRUE
    msg = f"{source} ssl must be true or false, got {value!r}"
    raise ConfigurationError(msg)


def _nodes(hosts: str, kind: str, source: str, url: str) -> tuple[tuple[str, int], ...]:
    found: list[tuple[str, int]] = []
    for item in hosts.split(","):
        match = _HOST.fullmatch(item.strip())
        port = None if match is None else match.group("port")
        if match is None or (port is not None and not 0 < int(port) < 65536):
            raise _fail(source, url, f"{kind} URL (each node is host:port)")
        host = unquote(match.group("v6") or match.group("name"))
        found.append((host, _DEFAULT_PORTS[kind] if port is None else int(port)))
    return tuple(found)


def parse_nodes_url(url: str, *, source: str = "url") -> NodesURL:
    """Split a ``redis+cluster://`` or ``redis+sentinel://`` URL into its parts.

    Args:
        url: The URL (see the module's docstring for the shapes).
        source: What gave the URL (``"url"``, ``"REDIS_URL"``), named in errors.

    Returns:
        The parsed URL.

    Raises:
        ConfigurationError: The scheme, a node, the master name, the database or a query
            option is wrong; the message masks any password.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
        msg = (
            f"{source} must start with redis+cluster://, rediss+cluster://, "
            f"redis+sentinel:// or rediss+sentinel://, got {mask_url(url)!r}"
        )
        raise ConfigurationError(msg)
    kind = "cluster" if scheme in CLUSTER_SCHEMES else "sentinel"
    if "#" in rest:
        raise _fail(source, url, f"{kind} URL ('#': percent-encode the password)")
    rest, _, query_text = rest.partition("?")
    userinfo, at, rest = rest.rpartition("@")
    if not at:
        userinfo = ""
    hosts, _, path = rest.partition("/")
    if not hosts:
        raise _fail(source, url, f"{kind} URL (no host:port)")
    query = {n: v[-1] for n, v in parse_qs(query_text, keep_blank_values=True).items()}
    known = url_query_names() | _OWN[kind]
    unknown = sorted(set(query) - known)
    if unknown:
        # beside a password an unknown "name" may be the piece after an unencoded "&"
        hidden = {"password", "sentinel_password"} & query.keys()
        readable = not hidden and all(re.fullmatch(r"\w{1,40}", n) for n in unknown)
        msg = (
            f"{source} has unsupported query option(s) "
            f"{', '.join(unknown) if readable else '(names not shown)'} (known: "
            f"{', '.join(sorted(known))}); pass others as keyword arguments"
        )
        raise ConfigurationError(msg)
    options = query_options({n: v for n, v in query.items() if n not in _NOT_CONNECTION}, source)
    user, colon, secret = userinfo.partition(":")
    username = unquote(user) if user else query.get("username")
    password = unquote(secret) if colon and secret else query.get("password")
    tls = scheme.startswith("rediss") or _flag(query.get("ssl", "false"), source)
    parts = [unquote(p) for p in path.split("/") if p]
    master, db_text = "", query.get("db")
    if kind == "sentinel":
        if not parts:
            raise _fail(source, url, "Sentinel URL (name the master: .../mymaster)")
        master, *more = parts
        if more:
            db_text = db_text if db_text is not None else more[0]
        if len(more) > 1:
            raise _fail(source, url, "Sentinel URL (the path is /<master>[/<db>])")
    elif parts not in ([], ["0"]) or db_text not in (None, "0"):
        raise _fail(source, url, "cluster URL (a Redis Cluster has only database 0)")
    return NodesURL(
        kind=kind,
        tls=tls,
        nodes=_nodes(hosts, kind, source, url),
        username=username,
        password=password,
        master=master,
        db=None
        if db_text is None or kind == "cluster"
        else parse_db(db_text, source=f"{source} db"),
        client_name=query.get("client_name"),
        sentinel_username=query.get("sentinel_username"),
        sentinel_password=query.get("sentinel_password"),
        options=options,
    )


def shown_nodes_url(
    parsed: NodesURL, username: str | None, password: str | None, *, watched: bool = False
) -> str:
    """The URL as ``repr()`` and error messages show it: passwords masked.

    ``watched``: the Sentinels have a password (shown as ``?sentinel_password=***``).
    """
    scheme = f"{'rediss' if parsed.tls else 'redis'}+{parsed.kind}"
    userinfo = f"{username or ''}{':***' if password else ''}@" if username or password else ""
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in parsed.nodes)
    if parsed.kind == "cluster":
        return f"{scheme}://{userinfo}{hosts}"
    query = "?sentinel_password=***" if watched else ""
    return f"{scheme}://{userinfo}{hosts}/{parsed.master}/{parsed.db or 0}{query}"
