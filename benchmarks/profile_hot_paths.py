"""Profile kirocache's decorated hit on memory and on Redis, sync and async.

Run with ``python benchmarks/profile_hot_paths.py`` (cProfile: where the time goes, by
function, own time first) or ``--pyinstrument`` (a call tree). It starts its own
redis-server on a free loopback port and stops it at the end. Metrics stay on, as in the
benchmarks. What it found is written up in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path[:0] = [
    str(Path(__file__).resolve().parent),
    str(Path(__file__).resolve().parents[1] / "tests"),
]

from _workload import VALUES  # noqa: E402 - after the path set-up above

from kirocache import Cache, cached  # noqa: E402
from redis_server import RedisServer  # noqa: E402

CALLS = {"memory": 200_000, "redis": 20_000}


def sync_hit(cache: Cache, value: Any) -> Callable[[int], Any]:
    @cached(prefix="bench:", ttl=60, cache=cache)
    def profile(user_id: int) -> dict[str, Any]:
        return value  # type: ignore[no-any-return]

    return profile


def async_hit(cache: Cache, value: Any) -> Callable[[int], Any]:
    @cached(prefix="bench:", ttl=60, cache=cache)
    async def profile(user_id: int) -> dict[str, Any]:
        return value  # type: ignore[no-any-return]

    return profile


def workload(url: str, kind: str, mode: str, size: str) -> tuple[Callable[[], None], Cache]:
    """A callable making ``CALLS[kind]`` hits, warmed up, and the cache to close after."""
    cache = Cache.from_url(url)
    value, calls = VALUES[size], CALLS[kind]
    if mode == "sync":
        profile = sync_hit(cache, value)
        profile(42)

        def run() -> None:
            for _ in range(calls):
                profile(42)

        return run, cache
    aprofile = async_hit(cache, value)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(aprofile(42))

    async def many() -> None:
        for _ in range(calls):
            await aprofile(42)

    def arun() -> None:
        loop.run_until_complete(many())
        loop.run_until_complete(cache.aclose())
        loop.close()

    return arun, cache


def with_cprofile(run: Callable[[], None], calls: int, top: int) -> str:
    profiler = cProfile.Profile()
    profiler.runcall(run)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    total = stats.total_tt  # type: ignore[attr-defined]
    out.write(f"{calls} hits, {total / calls * 1e6:.2f} us per hit under cProfile\n")
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def with_pyinstrument(run: Callable[[], None]) -> str:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0002)
    profiler.start()
    run()
    profiler.stop()
    text: str = profiler.output_text(unicode=True, color=False, show_all=False)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyinstrument", action="store_true", help="a call tree, not cProfile")
    parser.add_argument("--size", choices=list(VALUES), default="small")
    parser.add_argument("--top", type=int, default=18, help="functions listed per profile")
    parser.add_argument("--only", help="e.g. memory/sync; default: all four paths")
    args = parser.parse_args()
    with RedisServer() as server:
        urls = {"memory": "memory://", "redis": server.url}
        for kind in ("memory", "redis"):
            for mode in ("sync", "async"):
                if args.only and args.only != f"{kind}/{mode}":
                    continue
                run, cache = workload(urls[kind], kind, mode, args.size)
                header = f"==== {kind} hit, {mode}, {args.size} value ===="
                if args.pyinstrument:
                    report = with_pyinstrument(run)
                else:
                    report = with_cprofile(run, CALLS[kind], args.top)
                if mode == "sync":
                    cache.close()
                print(header, report, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
