"""A cluster's statistics: each primary's, and their sum (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

from kirocache.backends._protocol import BackendStats

__all__ = ["summed"]

_SUMMED = (
    "keys",
    "used_memory",
    "max_memory",
    "connected_clients",
    "evictions",
    "expired",
    "hits",
    "misses",
)


def _total(values: list[int | None]) -> int | None:
    """The sum, or ``None`` when any node could not tell."""
    return None if any(value is None for value in values) else sum(v or 0 for v in values)


def summed(
    nodes: Mapping[str, BackendStats],
    breakers: Mapping[str, Mapping[str, object]] | None = None,
) -> BackendStats:
    """The cluster as one :class:`BackendStats` (``backend="redis-cluster"``).

    Counts and memory are summed over the primaries (``max_memory`` too: the room of the
    whole cluster, 0 when no primary has a limit, unknown when only some have);
    ``uptime_seconds`` is the youngest primary's. ``extra`` has ``primaries`` (how
    many answered), ``redis_version`` when they all agree, and ``nodes``: each primary's
    own figures by ``host:port``. With ``breakers`` (the backend's ``node_states()``),
    each node's entry also has ``breaker`` (its state, faults, ...), a node whose breaker
    kept it out of the sum has that entry alone, and ``unavailable`` lists those nodes.
    """
    stats = list(nodes.values())
    totals = {name: _total([getattr(s, name) for s in stats]) for name in _SUMMED}
    if any(not s.max_memory for s in stats):  # a node without a limit: no cluster limit
        totals["max_memory"] = 0 if all(s.max_memory == 0 for s in stats) else None
    uptimes = [s.uptime_seconds for s in stats if s.uptime_seconds is not None]
    versions = {s.extra.get("redis_version") for s in stats}
    extra: dict[str, object] = {
        "primaries": len(stats),
        "nodes": {
            name: {k: v for k, v in asdict(s).items() if k != "backend"}
            for name, s in nodes.items()
        },
    }
    if breakers:
        shown: dict[str, dict[str, object]] = extra["nodes"]  # type: ignore[assignment]
        for name, breaker in breakers.items():
            shown.setdefault(name, {})["breaker"] = dict(breaker)
        extra["unavailable"] = sorted(name for name in breakers if name not in nodes)
    if len(versions) == 1 and None not in versions:
        extra["redis_version"] = versions.pop()
    return BackendStats(
        backend="redis-cluster",
        uptime_seconds=min(uptimes) if uptimes else None,
        extra=extra,
        **totals,
    )
