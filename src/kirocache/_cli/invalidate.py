"""``kirocache invalidate``: keys, tags, patterns, namespaces and events, with progress."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kirocache import BackendError, Cache, Namespace
from kirocache._cli.failures import INTERRUPTED, UNREACHABLE, USAGE, CliError, describe, exit_code
from kirocache._cli.output import Progress, echo, emit
from kirocache.invalidation import InvalidationEvent, InvalidationRecord

__all__ = ["invalidate", "parse_fields"]


@dataclass
class Action:
    """One invalidation the command was asked for, and what it did."""

    kind: str
    target: object
    removed: int = 0
    record: dict[str, Any] | None = field(default=None)

    def line(self) -> str:
        """The action's result, for people."""
        what = {
            "keys": "key(s)",
            "tags": "tag(s)",
            "pattern": "pattern",
            "namespace": "namespace",
            "event": "event",
        }[self.kind]
        target = self.target
        if isinstance(target, list):
            target = " ".join(repr(item) for item in target)
        elif isinstance(target, dict):
            target = repr(target["type"])
        else:
            target = repr(target)
        return f"{what} {target}: removed {self.removed}"


def parse_fields(items: list[str]) -> dict[str, str]:
    """``--field name=value`` options as a dict.

    Raises:
        CliError: An item has no ``=`` or no name.
    """
    fields: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise CliError(USAGE, f"--field takes name=value, got {item!r}")
        fields[name.strip()] = value
    return fields


def _event(cache: Cache, args: argparse.Namespace) -> InvalidationEvent:
    event = InvalidationEvent(
        args.event,
        entity_id=args.entity_id,
        user_id=args.user_id,
        data=parse_fields(args.field),
    )
    if not cache.rules.matching(event.type):
        msg = (
            f"no invalidation rule matches event {event.type!r}: rules are set in the "
            "application's code; pass --app module:cache to use its cache and rules"
        )
        raise CliError(USAGE, msg)
    return event


def _plan(cache: Cache, args: argparse.Namespace) -> list[tuple[Action, Callable[[], int]]]:
    """Every action asked for, checked before the first one runs."""
    plan: list[tuple[Action, Callable[[], int]]] = []
    batch_size: int = args.batch_size
    quiet: bool = args.quiet
    if args.key:
        keys = list(args.key)
        plan.append((Action("keys", keys), lambda: cache.delete_many(keys)))
    if args.tag:
        tags = list(args.tag)
        plan.append((Action("tags", tags), lambda: cache.invalidate_tags(*tags)))

    def pattern_delete(pattern: str, namespace: Namespace | None) -> Callable[[], int]:
        def run() -> int:
            shown = namespace.prefix + pattern if namespace is not None else pattern
            progress = Progress(f"deleting {shown!r}", enabled=not quiet)
            try:
                return cache.delete_pattern(
                    pattern, namespace=namespace, batch_size=batch_size, on_progress=progress
                )
            except KeyboardInterrupt:
                msg = (
                    f"interrupted: {progress.done:,} keys matching {shown!r} removed, "
                    "the others are still there"
                )
                raise CliError(INTERRUPTED, msg) from None
            finally:
                progress.finish()

        return run

    plan += [(Action("pattern", p), pattern_delete(p, None)) for p in args.pattern]
    for prefix in args.namespace:
        # A plain namespace: the pattern reaches the keys of every generation, so this
        # empties a bumpable namespace of the application's too.
        namespace = Namespace(prefix)
        plan.append((Action("namespace", prefix), pattern_delete("*", namespace)))
    if args.event is not None:
        event = _event(cache, args)
        target = {"type": event.type, **event.fields()}
        target.pop("timestamp", None)
        plan.append(
            (Action("event", target), lambda: cache.invalidate(event, source="cli").removed)
        )
    if not plan:
        msg = "say what to invalidate: --key, --tag, --pattern, --namespace or --event"
        raise CliError(USAGE, msg)
    if batch_size < 1:
        raise CliError(USAGE, f"--batch-size must be 1 or more, got {batch_size}")
    return plan


def _last_record(cache: Cache) -> InvalidationRecord | None:
    records = list(cache.invalidation_log)
    return records[-1] if records else None


def invalidate(cache: Cache, args: argparse.Namespace) -> int:
    """``kirocache invalidate``: run each invalidation asked for, in the order of the help.

    An invalidation the backend did not apply is an error (exit 3): a cache of the CLI's
    own raises, and an application's cache that fails open keeps it pending, which ends
    with this process; either way the command says so and should be run again.
    """
    plan = _plan(cache, args)
    done: list[Action] = []
    for action, run in plan:
        pending = cache.pending_invalidations()["invalidations_pending"]
        last = _last_record(cache)
        try:
            action.removed = run()
        except BackendError as exc:
            msg = f"{action.kind} not invalidated ({describe(exc)}); run it again"
            raise CliError(exit_code(exc), msg) from None
        if cache.pending_invalidations()["invalidations_pending"] > pending:
            msg = (
                f"{action.kind} not invalidated: the backend refused it (the cache fails "
                "open and kept it pending in this process only); run it again"
            )
            raise CliError(UNREACHABLE, msg)
        record = _last_record(cache)
        action.record = None if record is None or record is last else record.as_dict()
        done.append(action)
        if not args.json:
            echo(action.line())
    total = sum(action.removed for action in done)
    if args.json:
        emit({"removed": total, "actions": done})
    elif len(done) > 1:
        echo(f"removed {total} in total")
    return 0
