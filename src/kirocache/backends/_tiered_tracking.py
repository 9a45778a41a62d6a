"""TieredBackend's server-assisted invalidation: Redis client tracking, redirected to itself.

In ``invalidation="tracking"`` mode the subscriber's own connection turns tracking on in
broadcast mode (``CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX ...``) and then
subscribes to ``__redis__:invalidate``. From then on Redis itself sends the name of every
key under the prefixes that any client changes, deletes, expires or evicts, and a null
for FLUSHALL/FLUSHDB. One connection carries both tracking and messages, so losing it
loses both at once, and the subscriber's usual loss handling covers the two.

The connection speaks RESP2: redirected invalidations reach a RESP2 connection as pub/sub
messages, while under RESP3 they are push frames that redis-py's PubSub does not hand on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, cast

from kirocache.exceptions import ConfigurationError

if TYPE_CHECKING:
    from redis.connection import AbstractConnection

__all__ = ["INVALIDATE_CHANNEL", "decode_keys", "enable", "tracked_prefixes"]

INVALIDATE_CHANNEL: Final = "__redis__:invalidate"


def tracked_prefixes(prefixes: Sequence[str] | None) -> tuple[str, ...]:
    """The prefixes to track, none covering another; ``("",)`` means every key.

    Redis refuses overlapping BCAST prefixes, and a prefix inside another adds nothing,
    so the longer one is dropped.

    Raises:
        ConfigurationError: ``prefixes`` is a single string or holds a non-string.
    """
    if prefixes is None:
        return ("",)
    if isinstance(cast("object", prefixes), (str, bytes)) or not all(
        isinstance(cast("object", p), str) for p in prefixes
    ):
        msg = f"tracking_prefixes must be a sequence of str, got {prefixes!r:.80}"
        raise ConfigurationError(msg)
    if not prefixes or "" in prefixes:
        return ("",)
    kept: list[str] = []
    for prefix in sorted(set(prefixes)):  # a covering prefix sorts before what it covers
        if not any(prefix.startswith(shorter) for shorter in kept):
            kept.append(prefix)
    return tuple(kept)


def enable(connection: AbstractConnection, prefixes: tuple[str, ...]) -> None:
    """Turn broadcast tracking on for ``prefixes``, redirected to ``connection`` itself.

    Raises:
        redis.RedisError: The server refused (an old server, a missing ACL permission).
    """
    connection.send_command("CLIENT", "ID")  # type: ignore[no-untyped-call]
    client_id = connection.read_response()
    command: list[object] = ["CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST"]
    for prefix in prefixes:
        if prefix:
            command += ["PREFIX", prefix]
    connection.send_command(*command)  # type: ignore[no-untyped-call]
    connection.read_response()


def decode_keys(data: object) -> tuple[str, ...] | None:
    """The keys an invalidation names; ``None`` means "drop everything".

    A flush sends a null, and anything else unreadable drops everything too. A key that
    is not UTF-8 is skipped: redis-py writes the cache's str keys as UTF-8, so it cannot
    be one of them.
    """
    if not isinstance(data, list):
        return None
    keys: list[str] = []
    for item in cast("list[object]", data):
        if isinstance(item, bytes):
            try:
                keys.append(item.decode())
            except UnicodeDecodeError:
                continue
        elif isinstance(item, str):
            keys.append(item)
        else:
            return None
    return tuple(keys)
