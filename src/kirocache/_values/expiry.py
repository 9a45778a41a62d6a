"""How long a value lives: a fixed TTL or one read from the value, for ``None`` too, with jitter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from kirocache._values.randomness import RANDOM
from kirocache._values.types import Duration, to_seconds, ttl_seconds
from kirocache.exceptions import ConfigurationError, InvalidTTLError

__all__ = ["NO_VALUE", "Expiry", "TtlOption", "checked_jitter", "expiry_of"]

TtlOption: TypeAlias = "Duration | Callable[[Any], Duration | None] | None"
"""What ``ttl=`` accepts: a duration, ``NEVER``, ``None`` (the default) or ``f(value)``."""
NO_VALUE: Final[Any] = object()
"""What ``Expiry.seconds`` is given when there is no value to read a TTL from (``incr``)."""


@dataclass(frozen=True, slots=True)
class Expiry:
    """A TTL rule: ``seconds(value)`` is how long one value lives (``None``: no expiry).

    Attributes:
        ttl: The fixed TTL in seconds (``None``: no expiry), used when ``of`` is unset or
            there is no value to ask.
        of: ``of(value)`` returns the value's TTL (a duration, ``NEVER`` or ``None`` for no
            expiry).
        none_ttl: The TTL of a ``None`` value ("not found"), whatever the rest says.
        jitter: Up to this many seconds are added at random, so values written together
            do not expire together: the TTL ends up in ``[ttl, ttl + jitter]``.
    """

    ttl: float | None = None
    of: Callable[[Any], Duration | None] | None = None
    none_ttl: float | None = None
    jitter: float = 0.0

    def seconds(self, value: Any = NO_VALUE) -> float | None:
        """The TTL of ``value`` in seconds, jittered; ``None`` for no expiry.

        Raises:
            InvalidTTLError: ``of`` returned something that is not a TTL; the message
                names the function.
        """
        if value is None and self.none_ttl is not None:
            seconds: float | None = self.none_ttl
        elif self.of is not None and value is not NO_VALUE:
            answer = self.of(value)
            try:
                seconds = ttl_seconds(answer)
            except InvalidTTLError as exc:
                name = getattr(self.of, "__qualname__", repr(self.of))
                msg = f"the TTL function {name} returned {answer!r} for a result: {exc}"
                raise InvalidTTLError(msg) from None
        else:
            seconds = self.ttl
        if seconds is not None and self.jitter:
            seconds += RANDOM.uniform(0.0, self.jitter)
        return seconds

    @property
    def fixed(self) -> bool:
        """Whether every value gets ``ttl`` exactly (no function, no jitter, no ``none_ttl``)."""
        return self.of is None and not self.jitter and self.none_ttl is None


def checked_jitter(jitter: Duration | None) -> float:
    """``jitter`` in seconds (``None``: 0).

    Raises:
        ConfigurationError: Negative, infinite or not a duration.
    """
    if jitter is None:
        return 0.0
    try:
        seconds = to_seconds(jitter, name="jitter")
    except InvalidTTLError as exc:
        raise ConfigurationError(str(exc)) from None
    if seconds == float("inf"):
        msg = f"jitter must be a finite duration >= 0, not {jitter!r}"
        raise ConfigurationError(msg)
    return seconds


def expiry_of(ttl: TtlOption) -> tuple[float | None, Callable[[Any], Duration | None] | None]:
    """Split a ``ttl=`` option into a fixed TTL and a function of the value.

    Returns:
        ``(seconds, None)`` for a duration (``None`` seconds: no expiry, or not given), or
        ``(None, function)``.

    Raises:
        InvalidTTLError: A duration that is zero, negative or not a duration.
    """
    if callable(ttl) and not isinstance(ttl, (int, float)):
        return None, ttl
    return ttl_seconds(ttl), None
