"""The in-process hit and the 50 KB miss, kirocache and its peers interleaved in one process.

Run with ``python benchmarks/interleaved_memory.py`` (``--rounds``, ``--calls``: by default
the fastest of 100 rounds of 1,000 calls, as the figures in commits quote). On a
shared machine two cases timed a minute apart are not comparable; here each round times
every participant back to back, so a busy moment slows all of them, and the fastest round
of each is reported (the one least disturbed). Metrics stay on in kirocache, as they are
by default. Prints a table of per-call times and kirocache's ratios to cachetools and
dogpile.cache; no assertion, no time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent)]

from _peers import KIROCACHE, MEMORY_URL, Calls, async_participant, sync_participant  # noqa: E402
from _workload import FROZEN, LARGE, SMALL, FrozenProfile  # noqa: E402

from kirocache import Cache, cached  # noqa: E402

USER = 42


def frozen_sync(cache: Cache) -> Callable[[int], Any]:
    @cached(prefix="bench:frozen:", ttl=60, cache=cache)
    def profile(user_id: int) -> FrozenProfile:
        return FROZEN

    return profile


def frozen_async(cache: Cache) -> Callable[[int], Any]:
    @cached(prefix="bench:afrozen:", ttl=60, cache=cache)
    async def profile(user_id: int) -> FrozenProfile:
        return FROZEN

    return profile


def timed_sync(call: Callable[[int], Any], calls: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(calls):
        call(USER)
    return (time.perf_counter_ns() - started) / calls


def timed_async(loop: asyncio.AbstractEventLoop, call: Callable[[int], Any], calls: int) -> float:
    async def many() -> None:
        for _ in range(calls):
            await call(USER)

    started = time.perf_counter_ns()
    loop.run_until_complete(many())
    return (time.perf_counter_ns() - started) / calls


def timed_misses(call: Callable[[int], Any], users: itertools.count[int], calls: int) -> float:
    keys = [next(users) for _ in range(calls)]
    started = time.perf_counter_ns()
    for user in keys:
        call(user)
    return (time.perf_counter_ns() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--calls", type=int, default=1_000)
    parser.add_argument("--misses", type=int, default=100, help="50 KB misses per round")
    parser.add_argument("--only", default="", help="comma-separated participant names")
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    with ExitStack() as stack:
        cache = stack.enter_context(Cache.from_url(MEMORY_URL))
        hits: dict[str, Callable[[], float]] = {}
        for lib in ("cachetools", "dogpile"):
            call = sync_participant(lib, SMALL, MEMORY_URL, stack, Calls())
            hits[lib] = lambda call=call: timed_sync(call, args.calls)  # type: ignore[misc]
        sync_small = sync_participant(KIROCACHE, SMALL, MEMORY_URL, stack, Calls())
        hits["sync/small"] = lambda: timed_sync(sync_small, args.calls)
        sync_frozen = frozen_sync(cache)
        hits["sync/frozen"] = lambda: timed_sync(sync_frozen, args.calls)
        async_small = async_participant(KIROCACHE, SMALL, MEMORY_URL, loop, stack, Calls())
        hits["async/small"] = lambda: timed_async(loop, async_small, args.calls)
        async_frozen = frozen_async(cache)
        hits["async/frozen"] = lambda: timed_async(loop, async_frozen, args.calls)
        miss = sync_participant(KIROCACHE, LARGE, MEMORY_URL, stack, Calls())
        users = itertools.count(1_000_000)
        hits["miss/large"] = lambda: timed_misses(miss, users, args.misses)
        if args.only:
            wanted = set(args.only.split(",")) | {"cachetools", "dogpile"}
            hits = {name: run for name, run in hits.items() if name in wanted}
        for name in hits:
            if not name.startswith("miss"):
                hits[name]()  # the first call misses and stores; every later one hits
        best = dict.fromkeys(hits, float("inf"))
        for _ in range(args.rounds):
            for name, run in hits.items():
                best[name] = min(best[name], run())
        loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    tools, dogpile = best["cachetools"], best["dogpile"]
    print(f"{'case':<14}{'ns/call':>10}{'x cachetools':>14}{'dogpile / it':>14}")
    for name, ns in best.items():
        print(f"{name:<14}{ns:>10.0f}{ns / tools:>14.2f}{dogpile / ns:>14.2f}")


if __name__ == "__main__":
    main()
