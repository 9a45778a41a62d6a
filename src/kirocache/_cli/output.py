"""What commands print: JSON for scripts or aligned text for people, and a progress line."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["Progress", "echo", "emit", "jsonable", "print_fields"]

JSONValue = Any


def jsonable(value: object) -> JSONValue:  # noqa: PLR0911 - a return per kind
    """``value`` as plain dicts, lists, strings, numbers, booleans and ``None``.

    Dataclasses become dicts of their fields; non-finite floats become ``None`` (JSON has
    no infinity); anything else unknown becomes its ``str``.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def echo(text: str, *, err: bool = False) -> None:
    """Write one line to stdout, or to stderr with ``err`` (read at call time, for tests).

    Only stderr is flushed line by line; ``main`` flushes stdout at the end, so a long
    listing into a pipe is not one system call per key.
    """
    if err:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    else:
        sys.stdout.write(text + "\n")


def emit(data: object) -> None:
    """Print ``data`` as one JSON document (indented, parseable with ``json.loads``)."""
    echo(json.dumps(jsonable(data), indent=2, allow_nan=False, ensure_ascii=False))


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(item) for item in value) or "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{key}={_text(item)}" for key, item in value.items()) or "-"
    return str(value)


def print_fields(fields: Mapping[str, object]) -> None:
    """Print ``name: value`` lines with the values aligned."""
    width = max((len(name) for name in fields), default=0) + 1
    for name, value in fields.items():
        echo(f"{name + ':':<{width}} {_text(value)}")


class Progress:
    """A progress line on stderr, redrawn in place, only when stderr is a terminal.

    Pass it as the ``on_progress`` callback of a long operation. It redraws at most every
    ``interval`` seconds, so a million keys in batches of 500 cost a few hundred writes.

    Args:
        label: What is being done, shown before the count.
        enabled: Draw at all (``False`` for ``--quiet``).
        interval: Seconds between redraws.
    """

    def __init__(self, label: str, *, enabled: bool = True, interval: float = 0.1) -> None:
        self.stream = sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.label = label
        self.interval = interval
        self.done = 0
        self._drawn_at: float | None = None

    def __call__(self, done: int) -> None:
        """Record ``done`` keys so far; redraw when the last draw is old enough."""
        self.done = done
        now = time.monotonic()
        if self.enabled and (self._drawn_at is None or now - self._drawn_at >= self.interval):
            self._draw()
            self._drawn_at = now

    def _draw(self) -> None:
        self.stream.write(f"\r\x1b[2K{self.label}: {self.done:,} keys removed")
        self.stream.flush()

    def finish(self) -> None:
        """Draw the last count and end the line (nothing if nothing was drawn)."""
        if self.enabled and self._drawn_at is not None:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
