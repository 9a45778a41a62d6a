"""What every benchmark caches, and how each one labels itself for the report.

Every benchmark sets ``benchmark.group`` to its case (``hit/memory/sync/small``) and
``extra_info`` to ``lib`` (who ran it) and ``ops`` (calls per timed round), so
``tools/bench_report.py`` can set kirocache against each peer of the same case.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from pytest_benchmark.fixture import BenchmarkFixture

# A user profile as an API would cache it: about 200 bytes of JSON.
SMALL: dict[str, Any] = {
    "id": 42,
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "locale": "en-GB",
    "roles": ["admin", "editor"],
    "created": "2024-03-01T12:00:00Z",
    "active": True,
    "score": 98.5,
    "plan": "pro",
    "avatar": "https://img.example.com/a/42.png",
}


def _event(i: int) -> dict[str, Any]:
    return {
        "at": f"2024-03-01T12:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "event": ("login", "view", "edit", "logout")[i % 4],
        "ip": f"203.0.113.{i % 250}",
        "path": f"/projects/{i % 17}/items/{i}",
        "ok": i % 9 != 0,
        "ms": i % 300,
    }


# The same profile with its activity history: about 50 KB of JSON, where encoding,
# decoding, checksums and compression cost more than the round trip.
LARGE: dict[str, Any] = {**SMALL, "history": [_event(i) for i in range(430)]}

VALUES: dict[str, dict[str, Any]] = {"small": SMALL, "large": LARGE}

# Awaited calls per timed round in async cases: one run_until_complete() costs more than
# an in-memory hit, so it is spread over many calls (the report divides by ``ops``).
ASYNC_CALLS = 100


def label(benchmark: BenchmarkFixture, case: str, lib: str, ops: int = 1, **extra: Any) -> None:
    """Put a benchmark in its case's group and say who ran it and how many calls a round is."""
    benchmark.group = case
    benchmark.extra_info.update(case=case, lib=lib, ops=ops, **extra)


def repeat_async(
    loop: asyncio.AbstractEventLoop, call: Callable[[], Awaitable[Any]], times: int = ASYNC_CALLS
) -> Callable[[], None]:
    """A sync callable that awaits ``call()`` ``times`` times in one pass of ``loop``."""

    async def many() -> None:
        for _ in range(times):
            await call()

    def run() -> None:
        loop.run_until_complete(many())

    return run


class FrozenProfile(msgspec.Struct, frozen=True):
    """The small profile as an immutable result: a hit may hand out one decoded copy."""

    id: int
    name: str
    email: str
    locale: str
    roles: tuple[str, ...]
    created: str
    active: bool
    score: float
    plan: str
    avatar: str


FROZEN = FrozenProfile(**{**SMALL, "roles": tuple(SMALL["roles"])})
