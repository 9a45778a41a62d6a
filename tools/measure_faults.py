"""Measure the breaker against a real redis-server: congestion, and recovery after outages.

Usage::

    python tools/measure_faults.py load [--seconds 12] [--bursts 20]
    python tools/measure_faults.py recovery [--outages 2 5 20]

Each run starts a private redis-server on a free loopback port (stopped by its pid at the
end) and a ``Cache`` over ``RedisBackend`` with the library's default settings.

``load``: the server stays healthy. First ``--bursts`` bursts of 300 concurrent ``aget``
calls on one event loop; then, for ``--seconds``, 8 threads running ``get``/``set`` in
loops beside one event loop running 200 tasks that do the same. It prints the breaker's
openings, ``errors_total``, the warning lines logged and the caller-visible fallbacks (a
``get`` of a key known to be there that answered the default), all of which should be 0.

``recovery``: for each outage length, a sync reader runs ``get`` every 10 ms; the server is
stopped (the breaker opens), kept down for the outage, then started again on the same port;
it prints the time from the server answering PING again to the reader's first hit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from kirocache import Cache
from kirocache.backends import RedisBackend
from redis_server import RedisServer


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines = 0
        self.kinds: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1
        text = record.getMessage()
        kind = text.split(": ", 3)[-1][:60] if "Error" in text else text[:60]
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


def _watch() -> _Count:
    handler = _Count()
    logging.getLogger("kirocache").addHandler(handler)
    return handler


def load(url: str, seconds: float, bursts: int) -> None:
    """The burst, then threads and tasks together; prints what went wrong (nothing)."""
    warnings = _watch()
    cache = Cache(RedisBackend(url))
    cache.set("good", "value", ttl=3600)
    fallbacks = 0
    burst_times = []

    async def burst() -> int:
        started = time.perf_counter()
        got = await asyncio.gather(*(cache.aget("good", "FALLBACK") for _ in range(300)))
        burst_times.append(time.perf_counter() - started)
        return sum(value != "value" for value in got)

    async def bursts_run() -> int:
        return sum([await burst() for _ in range(bursts)])

    fallbacks += asyncio.run(bursts_run())
    breaker = cache.breaker
    assert breaker is not None
    print(  # noqa: T201 - a script's report
        f"burst: {bursts} x 300 aget: fallbacks={fallbacks} "
        f"breaker_openings={breaker.times_opened} errors_total={cache.errors_total} "
        f"warnings={warnings.lines} slowest burst={max(burst_times) * 1000:.0f} ms"
    )

    stop = threading.Event()
    counts = {"sync": 0, "async": 0, "sync_fallbacks": 0, "async_fallbacks": 0}
    lock = threading.Lock()

    def worker(number: int) -> None:
        done = bad = 0
        while not stop.is_set():
            cache.set(f"t{number}", done, ttl=60)
            if cache.get("good", "FALLBACK") != "value":
                bad += 1
            done += 1
        with lock:
            counts["sync"] += done
            counts["sync_fallbacks"] += bad

    async def task(number: int) -> None:
        done = bad = 0
        while not stop.is_set():
            await cache.aset(f"a{number}", done, ttl=60)
            if await cache.aget("good", "FALLBACK") != "value":
                bad += 1
            done += 1
        with lock:
            counts["async"] += done
            counts["async_fallbacks"] += bad

    async def tasks() -> None:
        await asyncio.gather(*(task(n) for n in range(200)))

    opened, errors, lines = breaker.times_opened, cache.errors_total, warnings.lines
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    loop_thread = threading.Thread(target=asyncio.run, args=(tasks(),))
    for thread in (*threads, loop_thread):
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in (*threads, loop_thread):
        thread.join()
    print(  # noqa: T201 - a script's report
        f"8 threads + 200 tasks for {seconds:.0f} s: rounds sync={counts['sync']} "
        f"async={counts['async']} fallbacks={counts['sync_fallbacks'] + counts['async_fallbacks']} "
        f"breaker_openings={breaker.times_opened - opened} "
        f"errors_total={cache.errors_total - errors} warnings={warnings.lines - lines}"
    )
    for kind, count in sorted(warnings.kinds.items(), key=lambda item: -item[1]):
        print(f"  {count} x {kind}")  # noqa: T201
    cache.close()


def recovery(server: RedisServer, outage: float) -> tuple[float, float]:
    """Seconds to the reader's first hit: from the server answering PING, and from its launch.

    The background probe may see the server before the launcher's own PING does, so the
    first figure can be close to 0; the second bounds it from above.
    """
    cache = Cache(RedisBackend(server.url))
    cache.set("good", "value")
    hits: list[float] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            if cache.get("good") == "value":
                hits.append(time.monotonic())
            time.sleep(0.01)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(0.2)
    server.stop()
    time.sleep(outage)
    breaker = cache.breaker
    assert breaker is not None
    assert breaker.state != "closed", "the breaker should have opened during the outage"
    launched = time.monotonic()
    server.start()  # returns once the server answers PING
    back = time.monotonic()
    # The restart lost the data: another process of the application writes it again.
    with Cache(RedisBackend(server.url)) as writer:
        writer.set("good", "value")
    hits.clear()
    deadline = back + 60
    while not hits and time.monotonic() < deadline:
        time.sleep(0.005)
    stop.set()
    thread.join()
    cache.close()
    if not hits:
        return float("inf"), float("inf")
    return hits[0] - back, hits[0] - launched


def main() -> None:
    """Parse the arguments, start the server, run the measurement."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    load_args = sub.add_parser("load")
    load_args.add_argument("--seconds", type=float, default=12.0)
    load_args.add_argument("--bursts", type=int, default=20)
    rec_args = sub.add_parser("recovery")
    rec_args.add_argument("--outages", type=float, nargs="+", default=[2.0, 5.0, 20.0])
    args = parser.parse_args()
    with RedisServer() as server:
        server.start()
        if args.what == "load":
            load(server.url, args.seconds, args.bursts)
        else:
            for outage in args.outages:
                ready, launched = recovery(server, outage)
                print(  # noqa: T201 - a script's report
                    f"outage {outage:.0f} s: hits resumed {ready:.2f} s after the server "
                    f"answered PING again ({launched:.2f} s after its restart began)"
                )


if __name__ == "__main__":
    main()
