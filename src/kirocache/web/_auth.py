"""Bearer tokens with scopes, compared in constant time; the token buckets of rate limits."""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

from kirocache import ConfigurationError

__all__ = ["MIN_TOKEN_LENGTH", "SCOPES", "RateLimiter", "Scope", "Token", "Tokens", "allows"]

Scope: TypeAlias = Literal["read", "reveal", "admin"]
SCOPES: Final[tuple[Scope, ...]] = ("read", "reveal", "admin")
"""From least to most: ``read`` (metrics, health, alerts, key listing and inspection),
``reveal`` (read, and values of keys), ``admin`` (everything: invalidate, cleanup)."""
MIN_TOKEN_LENGTH: Final = 16
# Callers remembered before refilled buckets are dropped: many addresses cannot grow it.
_MAX_CALLERS: Final = 4096
_ANONYMOUS: Final = "anonymous"


def allows(granted: Scope, needed: Scope) -> bool:
    """Whether a token of scope ``granted`` may call a route that needs ``needed``."""
    return SCOPES.index(granted) >= SCOPES.index(needed)


@dataclass(frozen=True)
class Token:
    """A named bearer token and its scope; its ``repr`` never shows the secret.

    Attributes:
        name: Shown in logs and invalidation records (``"admin"``, ``"ci-bot"``).
        secret: What the client sends as ``Authorization: Bearer <secret>``.
        scope: ``read``, ``reveal`` or ``admin``.
    """

    name: str
    secret: str = field(repr=False)
    scope: Scope

    def __post_init__(self) -> None:
        if not self.name or not self.name.isprintable() or len(self.name) > 64:
            msg = f"token names must be 1 to 64 printable characters, not {self.name!r}"
            raise ConfigurationError(msg)
        if self.scope not in SCOPES:
            msg = f"token {self.name!r}: scope must be one of {', '.join(SCOPES)}"
            raise ConfigurationError(msg)
        secret = self.secret
        # Never echo the secret: only its length and what is wrong.
        if not isinstance(secret, str) or len(secret) < MIN_TOKEN_LENGTH:  # type: ignore[redundant-expr]
            msg = (
                f"token {self.name!r} is too short: use at least {MIN_TOKEN_LENGTH} random "
                "characters, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
            raise ConfigurationError(msg)
        if not secret.isascii() or not secret.isprintable() or " " in secret:
            msg = f"token {self.name!r} must be printable ASCII without spaces"
            raise ConfigurationError(msg)


class Tokens:
    """The tokens an app accepts; finds the one a request carries in constant time.

    Args:
        tokens: The tokens; names and secrets must be unique.
        allow_anonymous_read: A request without ``Authorization`` gets the ``read`` scope.

    Raises:
        ConfigurationError: No token and no anonymous read, or two tokens share a name
            or a secret.
    """

    def __init__(self, tokens: list[Token], *, allow_anonymous_read: bool) -> None:
        if not tokens and not allow_anonymous_read:
            msg = (
                "the admin app needs a token: pass token=... (admin scope) or read_token=... "
                "(read scope), set KIROCACHE_ADMIN_TOKEN / KIROCACHE_READ_TOKEN for "
                "admin_app_from_env, or pass allow_anonymous_read=True for a read-only app "
                "without one"
            )
            raise ConfigurationError(msg)
        names = [token.name for token in tokens]
        if len(set(names)) != len(names):
            msg = f"token names must be unique: {sorted(names)}"
            raise ConfigurationError(msg)
        if len({token.secret for token in tokens}) != len(tokens):
            msg = "two tokens have the same secret; give each its own"
            raise ConfigurationError(msg)
        # Digests of equal length: comparing them tells nothing of the secrets' lengths.
        self._tokens = [(_digest(token.secret), token) for token in tokens]
        self.allow_anonymous_read = allow_anonymous_read

    @property
    def names(self) -> dict[str, Scope]:
        """Each token's name and scope."""
        return {token.name: token.scope for _, token in self._tokens}

    def identify(self, header: str | None) -> tuple[str, Scope] | None:
        """The name and scope a request's ``Authorization`` header grants, or ``None``.

        Every token is compared, each with ``hmac.compare_digest``, so the time taken
        does not tell how much of a guess was right nor which token it was close to.
        """
        if header is None:
            return (_ANONYMOUS, "read") if self.allow_anonymous_read else None
        kind, _, presented = header.partition(" ")
        if kind.lower() != "bearer" or not presented:
            return None
        given = _digest(presented.strip())
        found: Token | None = None
        for secret, token in self._tokens:
            if hmac.compare_digest(secret, given):
                found = token
        return None if found is None else (found.name, found.scope)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "replace")).digest()


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per caller: ``burst`` calls at once, then ``rate`` calls a second.

    Args:
        burst: The bucket's size.
        rate: Calls per second it refills.
        clock: Monotonic seconds (the cache's clock, so tests move time by hand).

    Raises:
        ConfigurationError: ``burst`` below 1 or ``rate`` not positive.
    """

    def __init__(self, burst: int, rate: float, clock: Callable[[], float]) -> None:
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:  # type: ignore[redundant-expr]
            msg = f"rate limit burst must be an int >= 1, got {burst!r}"
            raise ConfigurationError(msg)
        if not isinstance(rate, (int, float)) or not 0 < rate < math.inf:  # type: ignore[redundant-expr]
            msg = f"rate limit rate must be a positive number of calls a second, got {rate!r}"
            raise ConfigurationError(msg)
        self.burst = burst
        self.rate = float(rate)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, caller: str) -> float:
        """Spend one call of ``caller``'s bucket: 0 if allowed, else seconds to wait."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(caller)
            if bucket is None:
                if len(self._buckets) >= _MAX_CALLERS:
                    self._forget_full(now)
                bucket = self._buckets[caller] = _Bucket(float(self.burst), now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled: a new one would be the same (under the lock)."""
        refilled = self.burst / self.rate
        for caller, bucket in list(self._buckets.items()):
            if now - bucket.at >= refilled:
                del self._buckets[caller]

    def __len__(self) -> int:
        return len(self._buckets)


def named_tokens(
    token: str | None,
    read_token: str | None,
    tokens: Mapping[str, tuple[str, Scope]] | None,
) -> list[Token]:
    """The ``Token``s of ``admin_app``'s arguments: ``admin``, ``read`` and any named ones."""
    found = []
    if token is not None:
        found.append(Token("admin", token, "admin"))
    if read_token is not None:
        found.append(Token("read", read_token, "read"))
    for name, (secret, scope) in (tokens or {}).items():
        found.append(Token(name, secret, scope))
    return found
