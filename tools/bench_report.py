"""Turn pytest-benchmark's JSON into kirocache's ratio table, a plot, and docs/performance.md.

Usage::

    pytest benchmarks/ --benchmark-only --benchmark-json benchmarks/results/latest.json
    python tools/bench_report.py benchmarks/results/latest.json --docs docs/performance.md

Each benchmark labels itself (``extra_info``: ``case``, ``lib``, ``ops`` calls per round);
the table sets kirocache against every other participant of its case as
``kirocache time / peer time`` (below 1: kirocache is faster), with its target
and whether it is met. Round trips of a miss and function calls of a stampede come from
the same run. Nothing here times anything: it only reads the file.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

KIROCACHE = "kirocache"
START = "<!-- bench-report:start -->"
END = "<!-- bench-report:end -->"
# A start-of-run 1-minute load average above this share of the cores marks the run as
# measured under load (the run itself adds about one core, so the end is not a fair test).
BUSY_SHARE = 0.25


@dataclass(frozen=True)
class Target:
    """A bound on ``kirocache / peer`` for the cases matching ``cases`` (a glob)."""

    cases: str
    peer: str
    bound: float
    text: str

    def verdict(self, ratio: float) -> str:
        """``met`` or how far the ratio is from the bound, in the target's own terms."""
        if ratio <= self.bound:
            return "met"
        if self.bound < 1:  # "at least N times faster"
            needs = f"needs {1 / self.bound:.0f}x faster"
            if ratio >= 1:
                return f"missed: {ratio:.2f}x slower, {needs}"
            return f"missed: {1 / ratio:.2f}x faster, {needs}"
        if self.bound == 1:
            return f"missed: {ratio:.2f}x slower"
        over = ratio / self.bound
        if over >= 2:
            return f"missed: {over:.1f}x the bound"
        share = (over - 1) * 100
        return f"missed by {share:.1f}%" if share < 1 else f"missed by {share:.0f}%"


TARGETS = [
    Target("hit/memory/sync/*", "cachetools", 2.0, "≤ 2x"),
    Target("hit/memory/sync/*", "dogpile", 1 / 6, "≥ 6x faster"),
    Target("hit/memory/async/*", "cachetools (sync)", 2.0, "≤ 2x"),
    Target("hit/memory/async/*", "dogpile (sync)", 1 / 6, "≥ 6x faster"),
    Target("hit/redis/*", "redis-py", 1.0, "≤ 1.0x (floor)"),
    Target("hit/redis/*", "dogpile", 1.0, "faster"),
    Target("hit/redis/*", "aiocache", 1.0, "faster"),
    Target("hit/redis/*", "cashews", 1.0, "faster"),
    Target("get-many-10/*", "redis-py", 1.15, "≤ 1.15x (MGET)"),
    Target("get-many-100/*", "redis-py", 1.15, "≤ 1.15x (MGET)"),
    Target("get-many-1000/*", "redis-py", 1.3, "≤ 1.3x (MGET)"),
    Target("get-many-10000/*", "redis-py", 1.3, "≤ 1.3x (MGET)"),
    Target("get-many-100/*", "kirocache one by one", 0.1, "≥ 10x faster"),
    Target("batch-100/redis/*", "redis-py", 1.15, "≤ 1.15x (pipeline)"),
    Target("batch-100/redis/*", "kirocache one by one", 0.1, "≥ 10x faster"),
    Target("throughput/*", "redis-py", 1 / 0.95, "≥ 0.95x raw throughput"),
    Target("stampede/*", "one call", 1.5, "≤ 1.5x one call"),
]
# The in-process peers have no async API: an async memory hit is held against their sync
# figures of the same value size, under these names.
SYNC_PEERS = ("cachetools", "dogpile")
ROUND_TRIPS_TARGET = 2
STAMPEDE_CALLS_TARGET = 1


@dataclass(frozen=True)
class Row:
    """One participant of one case: seconds per call by the chosen statistic."""

    case: str
    lib: str
    seconds: float
    extra: dict[str, Any]


@dataclass(frozen=True)
class Comparison:
    """kirocache against one peer in one case."""

    case: str
    peer: str
    kirocache: float
    other: float
    target: Target | None

    @property
    def ratio(self) -> float:
        """``kirocache / peer``: below 1, kirocache is faster."""
        return self.kirocache / self.other

    @property
    def verdict(self) -> str:
        """``met``, how it was missed, or empty without a target."""
        return self.target.verdict(self.ratio) if self.target else ""


def load_rows(data: dict[str, Any], stat: str) -> list[Row]:
    """Every labelled benchmark of a pytest-benchmark JSON, per call.

    Args:
        data: The parsed ``--benchmark-json`` file.
        stat: The statistic to use: ``min``, ``median`` or ``mean``.

    Returns:
        One row per benchmark that says its case and lib, in file order.
    """
    rows = []
    for bench in data.get("benchmarks", []):
        extra = bench.get("extra_info", {})
        if "case" not in extra or "lib" not in extra:
            continue
        per_call = bench["stats"][stat] / extra.get("ops", 1)
        rows.append(Row(extra["case"], extra["lib"], per_call, extra))
    return rows + _sync_peers(rows)


def _sync_peers(rows: list[Row]) -> list[Row]:
    """The sync in-process peers' rows again, under each async memory-hit case."""
    sync = {(row.case, row.lib): row for row in rows if row.lib in SYNC_PEERS}
    cases = {row.case for row in rows if row.case.startswith("hit/memory/async/")}
    added = []
    for case in sorted(cases):
        for peer in SYNC_PEERS:
            found = sync.get((case.replace("/async/", "/sync/"), peer))
            if found is not None:
                added.append(Row(case, f"{peer} (sync)", found.seconds, found.extra))
    return added


def target_for(case: str, peer: str) -> Target | None:
    """The target that applies to kirocache against ``peer`` in ``case``, if any."""
    for target in TARGETS:
        if target.peer == peer and fnmatch.fnmatchcase(case, target.cases):
            return target
    return None


def compare(rows: list[Row]) -> list[Comparison]:
    """Kirocache against every other participant of its case, cases in a stable order.

    Args:
        rows: The rows of one run.

    Returns:
        The comparisons, ordered by case and then by peer as the run listed them.
    """
    by_case: dict[str, list[Row]] = {}
    for row in rows:
        by_case.setdefault(row.case, []).append(row)
    found = []
    for case in sorted(by_case, key=_case_order):
        mine = [row for row in by_case[case] if row.lib == KIROCACHE]
        if not mine:
            continue
        for row in by_case[case]:
            if row.lib != KIROCACHE:
                target = target_for(case, row.lib)
                found.append(Comparison(case, row.lib, mine[0].seconds, row.seconds, target))
    return found


_KINDS = ["hit/", "throughput/", "get-many-", "batch-", "miss-store/", "stampede/"]


def _case_order(case: str) -> tuple[Any, ...]:
    kind = next((i for i, prefix in enumerate(_KINDS) if case.startswith(prefix)), len(_KINDS))
    head, _, rest = case.partition("/")
    number = re.search(r"-(\d+)", head)
    size = int(number.group(1)) if number else 0
    return (kind, size, head, rest)


def human(seconds: float) -> str:
    """A duration with three significant digits in ns, µs or ms."""
    for unit, scale in (("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{_sig(seconds / scale)} {unit}"
    return f"{_sig(seconds / 1e-9)} ns"


def _sig(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio_table(comparisons: list[Comparison]) -> list[str]:
    """The markdown table of ratios, one line per (case, peer)."""
    lines = [
        "| case | kirocache | peer | peer time | kirocache / peer | target | |",
        "| --- | ---: | --- | ---: | ---: | --- | --- |",
    ]
    last = None
    for item in comparisons:
        shown = (f"`{item.case}`", human(item.kirocache)) if item.case != last else ("", "")
        last = item.case
        target = item.target.text if item.target else ""
        lines.append(
            f"| {shown[0]} | {shown[1]} | {item.peer} | {human(item.other)} "
            f"| {item.ratio:.2f} | {target} | {item.verdict} |"
        )
    return lines


def behaviour_table(rows: list[Row]) -> list[str]:
    """Round trips of a miss on Redis, and function calls of a stampede."""
    lines = [
        "| case | who | figure | target | |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in sorted(rows, key=lambda r: (_case_order(r.case), r.lib)):
        if "round_trips" in row.extra:
            trips = int(row.extra["round_trips"])
            commands = ", ".join(
                f"{name.upper()} {count}" for name, count in sorted(row.extra["commands"].items())
            )
            ok = "met" if trips <= ROUND_TRIPS_TARGET else f"missed: {trips}"
            lines.append(
                f"| `{row.case}` | {row.lib} | {trips} round trips (server ran: {commands}) "
                f"| {ROUND_TRIPS_TARGET} | {ok} |"
            )
        if "function_calls_max" in row.extra:
            most = int(row.extra["function_calls_max"])
            cold = row.extra.get("function_calls_cold")
            figure = f"{most} call(s) per round at most"
            if cold is not None:
                figure += f" ({cold} in the cold round, untimed)"
            verdict = ""
            if row.lib == KIROCACHE:
                verdict = "met" if most <= STAMPEDE_CALLS_TARGET else f"missed: {most}"
            target = STAMPEDE_CALLS_TARGET if row.lib == KIROCACHE else ""
            lines.append(f"| `{row.case}` | {row.lib} | {figure} | {target} | {verdict} |")
    return lines


def fault_table(rows: list[Row]) -> list[str]:
    """Calls that failed open and breaker openings of the throughput cases (asserted zero)."""
    counted = [row for row in rows if row.lib == KIROCACHE and "fallbacks" in row.extra]
    if not counted:
        return []
    lines = [
        "Fallbacks and breaker openings under load (the suite asserts both are zero):",
        "",
        "| case | fallbacks | breaker openings |",
        "| --- | ---: | ---: |",
    ]
    lines += [
        f"| `{row.case}` | {row.extra['fallbacks']} | {row.extra['breaker_openings']} |"
        for row in sorted(counted, key=lambda r: _case_order(r.case))
    ]
    return lines


def is_busy(data: dict[str, Any]) -> bool:
    """Whether the machine was busy when the run started (see ``BUSY_SHARE``)."""
    load = data.get("load", {}).get("start")
    cores = data.get("machine_info", {}).get("cpu_count") or 1
    return bool(load) and load[0] > BUSY_SHARE * cores


def machine_lines(data: dict[str, Any], stat: str, *, busy: bool) -> list[str]:
    """The machine, the versions and the conditions of the run, as markdown."""
    info = data.get("machine_info", {})
    cpu = info.get("cpu", {})
    load = data.get("load", {})
    commit = data.get("commit_info", {})
    when = data.get("datetime", "")
    dirty = " (uncommitted changes)" if commit.get("dirty") else ""
    lines = [
        f"- Run: {when[:19].replace('T', ' ')} UTC, commit `{str(commit.get('id', '?'))[:10]}`"
        + dirty,
        (
            f"- Machine: {info.get('cpu_count', '?')} CPUs ({cpu.get('brand_raw', '?')}), "
            f"{info.get('system', '?')} {info.get('release', '')}"
        ),
        (
            f"- Python {info.get('python_version', '?')} "
            f"({info.get('python_implementation', '')}), "
            f"redis-server {info.get('redis_server', '?')} on loopback"
        ),
        f"- Statistic: {stat} of the rounds, per call",
    ]
    if load.get("start"):
        start, end = load["start"], load.get("end") or [math.nan]
        lines.append(
            f"- Load average (1 min): {start[0]:.2f} at the start, {end[0]:.2f} at the end"
        )
    if busy:
        lines.append(
            "- **Measured under load**: other work shared the machine, so absolute times are "
            "noisy; ratios within one case ran back to back and are the figures to read."
        )
    versions = info.get("versions", {})
    if versions:
        listed = ", ".join(f"{name} {ver}" for name, ver in versions.items() if ver)
        lines.append(f"- Versions: {listed}")
    return lines


def summary(data: dict[str, Any], stat: str, *, image: str | None = None) -> str:
    """The whole report as markdown (no top-level heading, so it can be embedded).

    Args:
        data: The parsed ``--benchmark-json`` file.
        stat: ``min``, ``median`` or ``mean``.
        image: A path to link the plot from, if any.

    Returns:
        The markdown.
    """
    rows = load_rows(data, stat)
    comparisons = compare(rows)
    busy = is_busy(data)
    judged = [item for item in comparisons if item.target]
    met = sum(item.verdict == "met" for item in judged)
    parts = [
        *machine_lines(data, stat, busy=busy),
        "",
        (
            f"{met} of {len(judged)} timed targets met. Ratios are kirocache's time over the "
            "peer's, per call: below 1 kirocache is faster."
        ),
        "",
        *ratio_table(comparisons),
        "",
        (
            "Behaviour measured in the same run. The suite asserts it, so CI keeps it: two "
            "round trips for a miss, with a tag or without, and one call per stampede."
        ),
        "",
        *behaviour_table(rows),
    ]
    faults = fault_table(rows)
    if faults:
        parts += ["", *faults]
    if image:
        parts += ["", f"![kirocache / peer per case, against the targets]({image})"]
    return "\n".join(parts) + "\n"


def plot(comparisons: list[Comparison], path: Path) -> None:
    """A horizontal bar per targeted (case, peer): the ratio on a log scale, by verdict.

    Args:
        comparisons: What ``compare`` returned; those without a target are left out.
        path: The PNG to write.
    """
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    items = [c for c in reversed(comparisons) if c.target]
    fig, ax = plt.subplots(figsize=(10, max(3.0, 0.24 * len(items) + 1.4)))
    positions = range(len(items))
    colours = ["#2e7d32" if c.verdict == "met" else "#c62828" for c in items]
    ax.barh(positions, [c.ratio for c in items], color=colours, height=0.7)
    for pos, item in zip(positions, items, strict=True):
        bound = item.target.bound if item.target else math.nan
        ax.plot([bound, bound], [pos - 0.45, pos + 0.45], color="black", lw=2)
    ax.set_yticks(list(positions))
    ax.set_yticklabels([f"{c.case}  vs {c.peer}" for c in items], fontsize=8)
    ax.set_ylim(-0.7, len(items) - 0.3)
    ax.set_xscale("log")
    ax.axvline(1.0, color="#555555", lw=0.8, ls="--")
    ax.set_xlabel("kirocache time / peer time (log scale; left of 1: kirocache is faster)")
    ax.set_title("kirocache against its peers: green met, red missed, black tick = target")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def update_docs(doc: Path, report: str) -> None:
    """Replace what lies between the report markers in ``doc`` with ``report``.

    Raises:
        SystemExit: ``doc`` lacks the markers.
    """
    text = doc.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        msg = f"{doc} has no {START} ... {END} markers to put the table between"
        raise SystemExit(msg)
    block = f"{START}\n\n{report}\n{END}"
    doc.write_text(pattern.sub(lambda _: block, text, count=1), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Read the JSON, write the summary and the plot, and update the docs if asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="pytest-benchmark --benchmark-json output")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/summary.md"))
    parser.add_argument("--plot", type=Path, default=Path("benchmarks/results/summary.png"))
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    # The fastest round is the one least disturbed by other work on the machine (and the
    # column pytest-benchmark lists first); ``median`` shows the typical round instead.
    parser.add_argument("--stat", choices=["min", "median", "mean"], default="min")
    parser.add_argument("--docs", type=Path, help="a page with report markers to update")
    parser.add_argument(
        "--docs-plot",
        type=Path,
        default=Path("docs/img/performance.png"),
        help="where the page's copy of the plot goes (with --docs)",
    )
    args = parser.parse_args(argv)

    data = json.loads(args.json.read_text(encoding="utf-8"))
    comparisons = compare(load_rows(data, args.stat))
    if not comparisons:
        sys.stderr.write(
            f"{args.json}: no labelled kirocache benchmarks (timed with --benchmark-disable?)\n"
        )
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"# Benchmark summary\n\n{summary(data, args.stat)}", encoding="utf-8")
    written = [args.out]
    if not args.no_plot:
        plot(comparisons, args.plot)
        written.append(args.plot)
    if args.docs:
        image = None
        if not args.no_plot:
            plot(comparisons, args.docs_plot)
            image = args.docs_plot.resolve().relative_to(args.docs.parent.resolve()).as_posix()
            written.append(args.docs_plot)
        update_docs(args.docs, summary(data, args.stat, image=image))
        written.append(args.docs)
    stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
    sys.stdout.write(f"[{stamp}] wrote {', '.join(map(str, written))}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
