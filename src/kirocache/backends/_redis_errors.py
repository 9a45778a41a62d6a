"""What redis-py raises, sorted and said plainly: outages, refusals, and no secret in them.

An error reply either says the server cannot serve anyone now (an outage, which the
circuit breaker counts) or refuses one command; a refusal of this client's settings (a
wrong or missing password, an ACL, a database the server lacks) is said in plain words
with the fix. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Final

from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import (
    ClusterDownError,
    DataError,
    MovedError,
    NoPermissionError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

from kirocache.exceptions import (
    AuthenticationError,
    BackendError,
    CommandError,
    PermissionDeniedError,
)

__all__ = ["NEEDS_AUTH", "WRONG_AUTH", "forget_secret_frames", "is_outage", "refusal", "scrub"]

# Error replies that say the server cannot serve anyone now (an outage, counted by the
# breaker), where any other error reply refuses one command only. redis-py strips the code
# from some replies and raises a class instead: those classes are listed beside it.
_UNAVAILABLE_CODES: Final = frozenset(
    {"READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "MISCONF"}
)
_UNAVAILABLE_REPLIES: Final = (ReadOnlyError, ClusterDownError, TryAgainError)


def is_outage(exc: BaseException) -> bool:
    """Whether an error says the server is unavailable, not that it refused one command."""
    if isinstance(exc, ResponseError):
        if isinstance(exc, _UNAVAILABLE_REPLIES):
            return True
        return str(exc).split(" ", 1)[0] in _UNAVAILABLE_CODES
    # DataError: redis-py refused the arguments before sending anything.
    return not isinstance(exc, DataError)


# Redis's words for a missing password: NOAUTH to a command (redis-py's parsers drop the
# code: "Authentication required."), and what HELLO says to a client that did not
# authenticate (redis-py sends HELLO 3 on connect).
_NEEDS_AUTH_WORDS: Final = (
    "NOAUTH",
    "Authentication required",
    "HELLO must be called with the client already authenticated",
)
_NO_AUTH_SET: Final = "without any password configured"
NEEDS_AUTH: Final = (
    "the server needs a password: put it in the URL (redis://:password@host) or REDIS_PASSWORD"
)
WRONG_AUTH: Final = (
    "authentication failed: the server refused the user name or password (WRONGPASS): check "
    "the password in the URL or REDIS_PASSWORD, and that the ACL user exists and is enabled"
)
_NO_DATABASE: Final = "DB index is out of range"


def refusal(exc: BaseException, where: str) -> BackendError | None:
    """A refusal of this client's settings in redis's words, made plain; ``None`` if not one.

    Args:
        exc: What redis-py raised.
        where: The operation and the masked URL, for the message.

    Returns:
        An ``AuthenticationError``, a ``PermissionDeniedError`` or a ``CommandError`` for a
        missing database; ``None`` for anything else.
    """
    text = str(exc)
    needs_auth = any(words in text for words in _NEEDS_AUTH_WORDS)
    if isinstance(exc, RedisAuthenticationError) or needs_auth:
        if needs_auth:
            return AuthenticationError(f"{NEEDS_AUTH} (authentication required; {where})")
        if _NO_AUTH_SET in text:
            return AuthenticationError(
                f"authentication failed: the URL or REDIS_PASSWORD gives a password, but the "
                f"server has none set: remove it ({where})"
            )
        return AuthenticationError(f"{WRONG_AUTH} ({where})")
    if isinstance(exc, NoPermissionError) or text.startswith("NOPERM"):
        return PermissionDeniedError(_refused_by_acl(text, where))
    if text.startswith((_NO_DATABASE, "MOVED")) or isinstance(exc, MovedError):
        return CommandError(_misdirected(text, where))
    return None


def _misdirected(text: str, where: str) -> str:
    """The message of a server that is not the one the URL means to name."""
    if text.startswith(_NO_DATABASE):
        return (
            f"the server has no such database ({where}): fix the /db of the URL or "
            f"REDIS_DB (redis said: {text})"
        )
    return (
        f"the server is a node of a Redis Cluster ({where}): it answered {text[:60]!r}; "
        "name the cluster with a redis+cluster:// URL (redis+cluster://host:7000,host:7001)"
    )


def _refused_by_acl(text: str, where: str) -> str:
    """The message of a NOPERM: which grant is missing, the scripts' category by name."""
    if "'eval" in text:  # 'eval' or 'evalsha'
        return (
            f"the server's ACL refused a script ({where}): {text}; kirocache runs short Lua "
            "scripts (EVALSHA, EVAL) for conditional writes, invalidations, tags, locks and "
            "sessions: grant the ACL user the @scripting category (ACL SETUSER <user> "
            "+@scripting), see the configuration guide's ACL matrix"
        )
    return (
        f"the server's ACL refused it ({where}): {text}; grant the ACL user the command "
        "and the keys under the cache's key prefix (ACL SETUSER <user> ~<prefix>* +@all "
        "-@dangerous), see the troubleshooting guide"
    )


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _holds(value: object, secrets: Sequence[str]) -> bool:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return any(secret in value for secret in secrets)
    if isinstance(value, (tuple, list)):
        return any(_holds(item, secrets) for item in value[:8])
    return False


def forget_secret_frames(error: BaseException, secrets: Sequence[str]) -> None:
    """Cut each traceback of ``error``'s chain before the first frame holding a secret.

    Error trackers (Sentry, Rollbar) record the local variables of every frame of a
    traceback, causes included: redis-py's handshake keeps the password in ``auth_args``.
    What is cut is redis-py's inside; the frames that led there remain.
    """
    if not secrets:
        return
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        previous: TracebackType | None = None
        tb = exc.__traceback__
        while tb is not None:
            if any(_holds(value, secrets) for value in tb.tb_frame.f_locals.values()):
                if previous is None:
                    exc.__traceback__ = None
                else:
                    previous.tb_next = None
                break
            previous, tb = tb, tb.tb_next
        pending += [exc.__cause__, exc.__context__]
