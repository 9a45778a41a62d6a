"""The performance issue's targets against a pytest-benchmark JSON, as a markdown table.

Usage::

    python benchmarks/targets_table.py benchmarks/results/latest.json --docs docs/performance.md

``tools/bench_report.py`` writes the summary, the plot and the page's results section; this
replaces that section's table with one judged against the current targets (2x cachetools,
the raw floor, 1.15x ``MGET`` at 100 keys and 1.3x at 10,000, 0.95x raw throughput under
200 tasks and 8 threads, 1.5x one call for a stampede), and adds the fallbacks and breaker
openings the throughput cases recorded. The plot is left as ``bench_report`` drew it.
Nothing here times anything: it only reads the file.
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

START = "<!-- bench-report:start -->"
END = "<!-- bench-report:end -->"
KIROCACHE = "kirocache"

# (cases, peer, bound on kirocache / peer, how the target reads)
TARGETS: list[tuple[str, str, float, str]] = [
    ("hit/memory/sync/*", "cachetools", 2.0, "≤ 2x"),
    ("hit/memory/sync/*", "dogpile", 1 / 6, "≥ 6x faster"),
    ("hit/memory/async/*", "cachetools (sync)", 2.0, "≤ 2x"),
    ("hit/memory/async/*", "dogpile (sync)", 1 / 6, "≥ 6x faster"),
    ("hit/redis/*", "redis-py", 1.0, "≤ 1.0x (floor)"),
    ("hit/redis/*", "dogpile", 1.0, "faster"),
    ("hit/redis/*", "aiocache", 1.0, "faster"),
    ("hit/redis/*", "cashews", 1.0, "faster"),
    ("get-many-10/*", "redis-py", 1.15, "≤ 1.15x (MGET)"),
    ("get-many-100/*", "redis-py", 1.15, "≤ 1.15x (MGET)"),
    ("get-many-1000/*", "redis-py", 1.3, "≤ 1.3x (MGET)"),
    ("get-many-10000/*", "redis-py", 1.3, "≤ 1.3x (MGET)"),
    ("get-many-100/*", "kirocache one by one", 0.1, "≥ 10x faster"),
    ("batch-100/redis/*", "redis-py", 1.15, "≤ 1.15x (pipeline)"),
    ("batch-100/redis/*", "kirocache one by one", 0.1, "≥ 10x faster"),
    ("throughput/*", "redis-py", 1 / 0.95, "≥ 0.95x raw throughput"),
    ("stampede/*", "one call", 1.5, "≤ 1.5x one call"),
]
ORDER = ["hit/", "throughput/", "get-many-", "batch-", "miss-store/", "stampede/"]


def target(case: str, peer: str) -> tuple[float, str] | None:
    """The bound and its wording for kirocache against ``peer`` in ``case``, if any."""
    for cases, who, bound, text in TARGETS:
        if who == peer and fnmatch.fnmatchcase(case, cases):
            return bound, text
    return None


def shown(seconds: float) -> str:
    """A time in the unit that suits it."""
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    return f"{seconds * 1e3:.3g} ms"


def verdict(ratio: float, bound: float) -> str:
    """``met``, or by how much the ratio is over its bound."""
    if ratio <= bound:
        return "met"
    over = ratio / bound
    return f"missed by {over - 1:.0%}" if over < 2 else f"missed: {over:.1f}x the bound"


def times(data: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Seconds per call of each participant, by case; async memory hits get the sync peers."""
    groups: dict[str, dict[str, float]] = collections.defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        groups[bench["group"]][info["lib"]] = bench["stats"]["min"] / info.get("ops", 1)
    for case in list(groups):
        if case.startswith("hit/memory/async/"):
            sync = groups.get(case.replace("/async/", "/sync/"), {})
            for peer in ("cachetools", "dogpile"):
                if peer in sync:
                    groups[case][f"{peer} (sync)"] = sync[peer]
    return groups


def commit() -> str:
    """The checked-out commit, when there is one."""
    out = subprocess.run(
        ["git", "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "unknown"


def table(data: dict[str, Any]) -> str:
    """The run's context, the ratio table and the throughput cases' fault counts."""
    groups = times(data)
    rows = [
        "| case | kirocache | peer | peer time | kirocache / peer | target | |",
        "| --- | ---: | --- | ---: | ---: | --- | --- |",
    ]
    met = judged = 0

    def order(case: str) -> tuple[int, str]:
        rank = next((i for i, prefix in enumerate(ORDER) if case.startswith(prefix)), 99)
        return rank, case

    for case in sorted(groups, key=order):
        libs = groups[case]
        mine = libs.get(KIROCACHE)
        if mine is None:
            continue
        first = True
        for peer, seconds in sorted(libs.items()):
            if peer == KIROCACHE:
                continue
            ratio = mine / seconds
            found = target(case, peer)
            said = ""
            if found is not None:
                judged += 1
                said = verdict(ratio, found[0])
                met += said == "met"
            lead = f"`{case}` | {shown(mine)}" if first else " | "
            rows.append(
                f"| {lead} | {peer} | {shown(seconds)} | {ratio:.2f} | "
                f"{found[1] if found else ''} | {said} |"
            )
            first = False
    machine = data["machine_info"]
    versions = machine.get("versions", {})
    load = data.get("load", {})
    head = [
        f"- Run: {data['datetime'][:19].replace('T', ' ')} UTC, commit `{commit()}`",
        (
            f"- Machine: {machine.get('cpu_count')} CPUs, {machine.get('system')} "
            f"{machine.get('release')}, Python {machine.get('python_version')}, "
            f"redis-server {machine.get('redis_server')} on loopback"
        ),
        "- Versions: " + ", ".join(f"{name} {v}" for name, v in versions.items() if v),
        (
            f"- Load average (1 min): {(load.get('start') or [0])[0]:.2f} at the start, "
            f"{(load.get('end') or [0])[0]:.2f} at the end"
        ),
        "- Statistic: min of the rounds, per call (per hit across all callers for throughput)",
        "",
        (
            f"{met} of {judged} timed targets met. Ratios are kirocache's time over the peer's: "
            "below 1 kirocache is faster."
        ),
        "",
    ]
    faults = [
        (bench["group"], bench["extra_info"])
        for bench in data["benchmarks"]
        if "fallbacks" in bench["extra_info"]
    ]
    tail: list[str] = []
    if faults:
        tail = [
            "",
            "Fallbacks and breaker openings under load (the suite asserts both are zero):",
            "",
            "| case | fallbacks | breaker openings |",
            "| --- | ---: | ---: |",
        ]
        tail += [f"| `{case}` | {i['fallbacks']} | {i['breaker_openings']} |" for case, i in faults]
    return "\n".join(head + rows + tail) + "\n"


def main() -> int:
    """Print the table, or write it into the results section of ``--docs``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--docs", type=Path, help="replace this page's results table")
    args = parser.parse_args()
    text = table(json.loads(args.results.read_text()))
    if args.docs is None:
        sys.stdout.write(text)
        return 0
    page = args.docs.read_text()
    start, end = page.index(START) + len(START), page.index(END)
    image = next((line for line in page[start:end].splitlines() if line.startswith("![")), "")
    body = f"\n\n{text}" + (f"\n{image}\n" if image else "") + "\n"
    args.docs.write_text(page[:start] + body + page[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
