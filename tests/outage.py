"""``outage``: a ``FaultyBackend`` that, while failing, refuses writes (or every call)."""

from __future__ import annotations

from typing import Any

from kirocache.testing import FaultyBackend


def outage(inner: Any, *, writes_only: bool = True) -> FaultyBackend:
    """Writes refused while reads are served is what ``maxmemory`` with ``noeviction`` does."""
    return FaultyBackend(inner, reads_work=writes_only)
