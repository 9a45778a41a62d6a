"""The commands on a cache besides ``invalidate``; each returns its exit code.

``ping``, ``stats``, ``health``, ``alerts``, ``keys`` and ``inspect`` read; ``bump`` and
``cleanup`` act. Each takes the cache and the parsed arguments.
"""

from __future__ import annotations

import argparse
from typing import Final

from kirocache import Cache, Namespace
from kirocache._cli.failures import FAILED, OK, UNREACHABLE, USAGE, CliError
from kirocache._cli.output import echo, emit, jsonable, print_fields
from kirocache._cli.settings import describe_target
from kirocache.cleanup import Cleanup
from kirocache.monitoring import HealthChecker, HealthReport, Monitor

__all__ = ["alerts", "bump", "cleanup", "health", "inspect", "keys", "ping", "stats"]

_ORDER: Final = ("low", "medium", "high", "critical")


def ping(cache: Cache, args: argparse.Namespace) -> int:
    """``kirocache ping``: one round trip to the backend."""
    latency = cache.ping()
    target = describe_target(args, cache)
    if args.json:
        emit({"ok": True, "target": target, "latency_ms": latency * 1000})
    else:
        echo(f"PONG from {target} in {latency * 1000:.3g} ms")
    return OK


def stats(cache: Cache, args: argparse.Namespace) -> int:
    """``kirocache stats``: the backend's own figures (keys, memory, clients, hits...)."""
    figures = cache.stats()
    data = jsonable(figures)
    data["memory_ratio"] = figures.memory_ratio
    if args.json:
        emit(data)
    else:
        extra = data.pop("extra")
        print_fields({**data, **extra})
    return OK


def _print_report(report: HealthReport) -> None:
    latency = report.ping_latency
    backend = report.backend
    print_fields(
        {
            "status": report.status,
            "ping": "failed" if latency is None else f"{latency * 1000:.3g} ms",
            "backend": None if backend is None else backend.backend,
            "keys": None if backend is None else backend.keys,
            "memory": None if report.memory_ratio is None else f"{report.memory_ratio:.0%}",
        }
    )
    for issue in report.issues:
        echo(f"[{issue.severity}] {issue.message}: {issue.recommendation}")


def _check_exit(report: HealthReport, fail_on: str) -> int:
    if report.ping_latency is None:
        return UNREACHABLE
    if report.status == "unhealthy" or (fail_on == "degraded" and report.status == "degraded"):
        return FAILED
    return OK


def health(cache: Cache, args: argparse.Namespace) -> int:
    """``kirocache health``: the health check, its issues and what to do about them."""
    report = HealthChecker(cache).check()
    if args.json:
        emit(report.to_dict())
    else:
        _print_report(report)
    return _check_exit(report, args.fail_on)


def alerts(cache: Cache, args: argparse.Namespace) -> int:
    """``kirocache alerts``: the alert rules evaluated on a health check now."""
    monitor = Monitor(cache)
    monitor.monitor_and_alert()
    report = monitor.last_report
    assert report is not None  # monitor_and_alert keeps its report
    firing = monitor.active()
    if args.json:
        emit({"status": report.status, "alerts": firing})
    elif not firing:
        echo(f"no alert firing (status: {report.status})")
    else:
        for alert in firing:
            echo(f"[{alert.severity}] {alert.rule}: {alert.message}")
    if report.ping_latency is None:
        return UNREACHABLE
    if args.fail_on is not None:
        floor = _ORDER.index(args.fail_on)
        if any(_ORDER.index(alert.severity) >= floor for alert in firing):
            return FAILED
    return OK


def keys(cache: Cache, args: argparse.Namespace) -> int:
    """``kirocache keys PATTERN``: the keys under the key prefix matching a glob, by SCAN."""
    if args.limit < 0:
        raise CliError(USAGE, f"--limit must be 0 (no limit) or more, got {args.limit}")
    found: list[str] = []
    cursor = args.cursor
    while True:
        page = cache.scan_keys(args.pattern, cursor=cursor, count=args.count)
        cursor = page.cursor
        for key in page.keys:
            if args.limit and len(found) >= args.limit:
                break
            found.append(key)
            if not args.json:
                echo(key)
        if cursor == 0 or (args.limit and len(found) >= args.limit):
            break
    if args.json:
        emit({"pattern": args.pattern, "keys": found, "count": len(found), "cursor": cursor})
    elif cursor != 0:
        echo(
            f"kirocache: listed the first {len(found)} keys; --limit 0 lists all, "
            f"--cursor {cursor} goes on",
            err=True,
        )
    return OK


def inspect(cache: Cache, args: argparse.Namespace) -> int:
    """``kirocache inspect KEY``: TTL, size, format and tags of one entry (never its value)."""
    info = cache.inspect(args.key)
    if info is None:
        raise CliError(FAILED, f"no entry at key {args.key!r}")
    data = jsonable(info)
    if args.json:
        emit(data)
    else:
        print_fields(data)
    return OK


def bump(cache: Cache, args: argparse.Namespace) -> int:
    """``kirocache bump NAMESPACE``: raise a bumpable namespace's generation."""
    namespace = Namespace(args.namespace, bumpable=True)
    generation = cache.bump(namespace)
    if args.json:
        emit({"namespace": namespace.prefix, "generation": generation})
    else:
        echo(f"namespace {namespace.prefix!r} is at generation {generation}")
    if not args.json:
        # Nothing tells the CLI whether the application reads generations under this
        # prefix: a namespace it did not make bumpable ignores them.
        echo(
            f"kirocache: note: a bump of {namespace.prefix!r} invalidates only if the "
            "application made the namespace with bumpable=True; otherwise use "
            "'kirocache invalidate --namespace'",
            err=True,
        )
    return OK


def cleanup(cache: Cache, args: argparse.Namespace) -> int:
    """``kirocache cleanup``: one cleanup run (expired entries, dead index entries)."""
    report = Cleanup(cache).run_once()
    if args.json:
        emit(report)
    else:
        print_fields(jsonable(report))
    if report.errors:
        raise CliError(FAILED, f"cleanup finished with {report.errors} failed backend call(s)")
    return OK
