"""What the exporters read per node of a Redis Cluster: breakers and each primary's stats.

A cluster backend says how each node's circuit breaker stands (``node_states()``, no
I/O) and what each primary holds (``stats().extra["nodes"]``, one INFO and DBSIZE per
primary). A backend of one node has neither, and the exporters then emit no node
series at all. Only the public backend API is read, by duck typing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["BREAKER_STATES", "FIGURES", "Node", "NodeReader", "read_all"]

BREAKER_STATES: Final = ("closed", "open", "half_open")

FIGURES: Final[Mapping[str, tuple[str, str, str]]] = {
    # stats field: (name suffix, kind, help)
    "keys": ("keys", "gauge", "Keys held by the node."),
    "used_memory": ("used_memory_bytes", "gauge", "Memory the node uses, in bytes."),
    "max_memory": ("max_memory_bytes", "gauge", "The node's maxmemory in bytes (0: none)."),
    "connected_clients": ("connected_clients", "gauge", "Clients connected to the node."),
    "evictions": ("evictions", "counter", "Keys the node evicted since it started."),
    "expired": ("expired", "counter", "Keys that expired on the node since it started."),
    "hits": ("hits", "counter", "Lookups that found a key on the node since it started."),
    "misses": ("misses", "counter", "Lookups that found no key on the node since it started."),
    "uptime_seconds": ("uptime_seconds", "gauge", "Seconds since the node started."),
}
"""The per-node figures of ``stats().extra["nodes"]`` that are exported, and how."""


@dataclass(frozen=True, slots=True)
class Node:
    """One node's figures, as the exporters label them.

    Attributes:
        name: ``host:port``.
        role: ``primary`` (the nodes whose slots the cache reads and writes).
        state: Its breaker: ``closed``, ``open`` or ``half_open``; ``None`` if unknown.
        faults: Connection failures counted against it.
        rejected: Calls failed fast while its breaker was open.
        openings: Times its breaker opened.
        figures: Its stats (keys, memory, ...) when they could be read.
    """

    name: str
    role: str
    state: str | None = None
    faults: int = 0
    rejected: int = 0
    openings: int = 0
    figures: Mapping[str, float] = field(default_factory=dict)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class NodeReader:
    """Reads one cache's (or backend's) nodes, at most once per ``max_age`` seconds.

    The exporters' callbacks of one collection share a reading, so a scrape costs one
    ``stats()`` call. A backend that fails to answer ``stats()`` still gives its
    breakers; one without ``node_states`` (a single node) gives no nodes.

    Args:
        target: A ``Cache`` (its ``backend`` is read) or a backend.
        stats: Whether to read each primary's stats too (I/O: INFO and DBSIZE per node).
        max_age: Seconds a reading is reused.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        target: object,
        *,
        stats: bool = True,
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = getattr(target, "backend", target)
        self._stats = stats
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._nodes: list[Node] = []

    def nodes(self) -> list[Node]:
        """The nodes now (or as read less than ``max_age`` ago)."""
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._max_age:
                self._nodes = self._read()
                self._read_at = now
            return self._nodes

    def _read(self) -> list[Node]:
        states_of = getattr(self._backend, "node_states", None)
        if not callable(states_of):
            return []
        try:
            states: Mapping[str, Mapping[str, object]] = states_of()
        except Exception:  # noqa: BLE001 - an exporter never raises into a scrape
            states = {}
        figures: Mapping[str, Mapping[str, object]] = {}
        stats_of = getattr(self._backend, "stats", None)
        if self._stats and callable(stats_of):
            try:
                found = stats_of().extra.get("nodes", {})
            except Exception:  # noqa: BLE001 - a node down: its breaker still says so
                found = {}
            figures = found if isinstance(found, Mapping) else {}
        found_nodes = []
        for name in dict.fromkeys([*states, *figures]):
            state = states.get(name, {})
            numbers = {key: _number(value) for key, value in figures.get(name, {}).items()}
            found_nodes.append(
                Node(
                    name=str(name),
                    role=str(state.get("role", "primary")),
                    state=str(state["state"]) if "state" in state else None,
                    faults=_count(state.get("faults")),
                    rejected=_count(state.get("rejected")),
                    openings=_count(state.get("openings")),
                    figures={k: v for k, v in numbers.items() if k in FIGURES and v is not None},
                )
            )
        return found_nodes


def read_all(readers: list[NodeReader]) -> list[Node]:
    """Every watched target's nodes, each node once (the first target naming it wins)."""
    seen: dict[str, Node] = {}
    for reader in list(readers):
        for node in reader.nodes():
            seen.setdefault(node.name, node)
    return list(seen.values())
