"""The errors kirocache raises: one base class, one subclass per kind of problem."""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BackendError",
    "CircuitOpenError",
    "CommandError",
    "ConfigurationError",
    "CorruptValueError",
    "InvalidKeyError",
    "InvalidTTLError",
    "KirocacheError",
    "LockNotAcquiredError",
    "NodeUnavailableError",
    "PermissionDeniedError",
    "SerializationError",
    "ValueTooLargeError",
]


class KirocacheError(Exception):
    """Base class of every error kirocache raises on purpose."""


class ConfigurationError(KirocacheError, ValueError):
    """A setting, URL, template or option is wrong; the message names it and the fix."""


class InvalidKeyError(KirocacheError, TypeError, ValueError):
    """A cache key is not a non-empty ``str``, or a key cannot be built from arguments."""


class InvalidTTLError(KirocacheError, TypeError, ValueError):
    """A TTL is negative, zero, NaN, a bool or not a number of seconds."""


class SerializationError(KirocacheError, TypeError):
    """A value cannot be turned into bytes, or bytes cannot be turned back into a value."""


class CorruptValueError(SerializationError):
    """Stored bytes are not a valid kirocache entry (foreign, truncated or tampered with)."""


class ValueTooLargeError(KirocacheError, ValueError):
    """A serialized value is larger than the cache's ``max_value_size``."""


class BackendError(KirocacheError):
    """The backend failed: connection refused, timeout, READONLY, LOADING and the like.

    The original exception is chained as ``__cause__``. Messages never contain passwords.

    Attributes:
        outage: Whether the store is unavailable (it counts toward opening the circuit
            breaker). ``False`` for :class:`CommandError`, and for a call that could not get
            a pooled connection in time on a busy client (the server is fine).
        timed_out: Whether the call used up its whole deadline without an answer (a
            server that accepts connections and never answers): the circuit breaker opens
            at once rather than after ``failure_threshold`` such calls.
    """

    outage: bool = True
    timed_out: bool = False


class CommandError(BackendError):
    """The store answered, refusing this one command: WRONGTYPE, NOPERM, OOM, a script error.

    Only the call fails (open, or raising under ``on_error="raise"``); the store is up, so
    it never counts toward opening the circuit breaker, and an answer closes a half-open one.
    """

    outage = False


class NodeUnavailableError(BackendError):
    """One node of a Redis Cluster is down: its circuit breaker is open, nothing was sent.

    Raised (or put in an op's slot) at once, without a connect attempt, for a call whose
    keys live in that node's slots. While other primaries answer, it is not an outage of
    the cache (``outage`` is ``False``): the cache fails that call open, and its own
    breaker stays closed for the keys of the healthy nodes. When every primary's breaker
    is open, ``outage`` is ``True``.

    Attributes:
        node: The node, as ``host:port``.
    """

    node: str = ""


class AuthenticationError(BackendError):
    """The store refused this client's credentials (WRONGPASS, NOAUTH).

    A wrong password or user, or none where the server needs one: a misconfiguration that
    looks like an outage. Every call fails until the settings are fixed, so it counts toward
    the circuit breaker (no call pays for a refused handshake while it is open), is logged
    as an error, and makes health checks ``unhealthy``.
    """


class PermissionDeniedError(CommandError):
    """The store's ACL refused one command or key to this client's user (NOPERM).

    The store is up and answers every other call; the message names what was refused and
    the grant that allows it. Logged as an error: it is a misconfiguration, not a fault.
    """


class CircuitOpenError(BackendError):
    """The circuit breaker is open: the backend failed recently and is not being called."""


class LockNotAcquiredError(KirocacheError):
    """``with cache.lock(name):`` could not take the lock within its ``blocking_timeout``.

    Another holder kept it the whole time; the block did not run.
    """
