"""Polling with a bound, for what another thread or process makes true (no timing asserted)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

BOUND = 20.0  # seconds any awaited condition may take on a loaded machine
_EVERY = 0.005


def eventually(check: Callable[[], object], bound: float = BOUND) -> bool:
    """Poll ``check`` until it holds; whether it did within ``bound`` seconds."""
    deadline = time.monotonic() + bound
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(_EVERY)
    return True


async def aeventually(check: Callable[[], object], bound: float = BOUND) -> bool:
    """:func:`eventually` without blocking the event loop."""
    deadline = time.monotonic() + bound
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(_EVERY)
    return True


async def until(check: Callable[[], Awaitable[object]], bound: float = BOUND) -> bool:
    """:func:`aeventually` of a check that must be awaited."""
    deadline = time.monotonic() + bound
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(_EVERY)
    return True
