"""One circuit breaker per cluster node: a dead primary costs only its own slots (no I/O).

The ``Cache`` has one breaker for its whole backend. On a Redis Cluster that is too
coarse: while one primary is down (until its replica is promoted), a third of the keys
fail, and three failures in a row would open the cache's breaker for every key. So
``RedisClusterBackend`` keeps a breaker per node, keyed by ``host:port``:

* a node's connection failures (refused, reset, timed out) are counted; after
  ``failure_threshold`` in a row its breaker opens, and calls for its slots fail at once,
  without a connect attempt, with :class:`~kirocache.exceptions.NodeUnavailableError`;
* such an error, and the failures before it, are not an outage of the cache
  (``outage=False``) while another primary's breaker is closed: the cache's own breaker
  then stays closed and the healthy primaries keep serving. When every primary's breaker
  is open they are outages again, so a cluster that is down opens the cache's breaker;
* after ``retry_interval`` one call is let through (half open): an answer closes the
  breaker, a failure opens it for another interval. A node that answers a ``ping``
  closes at once, and when the slot map moves a node's slots to another node (a replica
  promoted), calls go there at once: breakers follow the node a slot maps to *now*, and
  the record of a node that no longer serves slots is dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Literal, TypeAlias

from kirocache._values.types import option_seconds
from kirocache.exceptions import ConfigurationError, NodeUnavailableError

__all__ = [
    "DEFAULT_NODE_FAILURES",
    "DEFAULT_NODE_RETRY",
    "NodeBreakers",
    "NodeState",
    "node_breakers",
    "unavailable",
]

NodeState: TypeAlias = Literal["closed", "open", "half_open"]

DEFAULT_NODE_FAILURES: Final = 3
"""Connection failures in a row that open a node's breaker (as the cache's own breaker)."""
DEFAULT_NODE_RETRY: Final = 0.5
"""Seconds a node's breaker stays open before one call tries it again: a trial costs one
refused connect, and it is also what makes redis-py read the slot map again (a promoted
replica is found within about this much of its promotion)."""


@dataclass(slots=True)
class _Node:
    """One node's breaker and its counters."""

    failures: int = 0  # in a row, since the last answer
    state: NodeState = "closed"
    retry_at: float = 0.0
    trial_since: float | None = None
    faults: int = 0  # every failure counted
    rejected: int = 0  # calls failed fast while open
    openings: int = 0

    @property
    def clean(self) -> bool:
        return self.state == "closed" and self.failures == 0


def node_breakers(
    failure_threshold: int = DEFAULT_NODE_FAILURES,
    retry_interval: float | timedelta = DEFAULT_NODE_RETRY,
) -> NodeBreakers:
    """The breakers a ``RedisClusterBackend`` builds from its ``node_*`` options.

    Args:
        failure_threshold: ``node_failure_threshold``: failures in a row that open a node.
        retry_interval: ``node_retry_interval``: seconds before an open node is tried.

    Returns:
        The breakers.

    Raises:
        ConfigurationError: A threshold that is not a whole number >= 1, or an interval
            that is not a finite number of seconds > 0.
    """
    return NodeBreakers(failure_threshold=failure_threshold, retry_interval=retry_interval)


class NodeBreakers:
    """The breakers of every node of one cluster backend, shared by its sync and async halves.

    Args:
        failure_threshold: Connection failures in a row that open a node's breaker.
        retry_interval: Seconds an open breaker waits before one call tries the node.
        clock: Monotonic seconds; injectable for tests.

    Raises:
        ConfigurationError: A threshold below 1 or not an int, an interval not > 0.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = DEFAULT_NODE_FAILURES,
        retry_interval: float | timedelta = DEFAULT_NODE_RETRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        threshold: object = failure_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            msg = f"node_failure_threshold must be a whole number >= 1, got {failure_threshold!r}"
            raise ConfigurationError(msg)
        self.failure_threshold = failure_threshold
        self.retry_interval = option_seconds(retry_interval, "node_retry_interval")
        self._clock = clock
        self._lock = threading.Lock()
        self._nodes: dict[str, _Node] = {}
        # No node has a failure counted: the hot path reads this one attribute, and then
        # neither looks up a key's node nor counts its answer.
        self.healthy = True

    # -- one call ----------------------------------------------------------------------------

    def allow(self, node: str) -> bool:
        """Whether a call may go to ``node`` now; a refusal is counted (``rejected``).

        Closed: yes. Open: no, until ``retry_interval`` has passed; then half open, and
        one call at a time is let through (a trial that never reported back is given up
        after one interval).
        """
        record = self._nodes.get(node)
        if record is None or record.state == "closed":
            return True
        with self._lock:
            now = self._clock()
            if record.state == "open":
                if now < record.retry_at:
                    record.rejected += 1
                    return False
                record.state = "half_open"
                record.trial_since = None
            if record.trial_since is not None and now - record.trial_since < self.retry_interval:
                record.rejected += 1
                return False
            record.trial_since = now
            return True

    def success(self, node: str) -> None:
        """``node`` answered: its breaker closes and its failures in a row are forgotten."""
        record = self._nodes.get(node)
        if record is None or record.clean:
            return
        with self._lock:
            record.failures = 0
            record.state = "closed"
            record.trial_since = None
            self.healthy = all(each.clean for each in self._nodes.values())

    def failure(self, node: str) -> bool:
        """Count a connection failure of ``node``; whether it opened the node's breaker."""
        with self._lock:
            record = self._nodes.get(node)
            if record is None:
                record = self._nodes[node] = _Node()
            record.failures += 1
            record.faults += 1
            self.healthy = False
            if record.state == "half_open" or (
                record.state == "closed" and record.failures >= self.failure_threshold
            ):
                record.state = "open"
                record.retry_at = self._clock() + self.retry_interval
                record.trial_since = None
                record.openings += 1
                return True
            return False

    # -- what the breakers say ---------------------------------------------------------------

    def state(self, node: str) -> NodeState:
        """``closed``, ``open`` or ``half_open`` (an open breaker past its interval reads so)."""
        record = self._nodes.get(node)
        if record is None:
            return "closed"
        if record.state == "open" and self._clock() >= record.retry_at:
            return "half_open"
        return record.state

    def failing(self, node: str) -> bool:
        """Whether ``node`` has failed since it last answered (open, or failures counted)."""
        record = self._nodes.get(node)
        return record is not None and not record.clean

    def retry_in(self, node: str) -> float:
        """Seconds until an open ``node`` is tried again (0 when it may be now)."""
        record = self._nodes.get(node)
        if record is None or record.state != "open":
            return 0.0
        return max(0.0, record.retry_at - self._clock())

    def partial(self, node: str, primaries: Iterable[str]) -> bool:
        """Whether a primary other than ``node`` has its breaker closed (a partial outage)."""
        return any(other != node and self.state(other) == "closed" for other in primaries)

    def keep(self, primaries: Collection[str]) -> None:
        """Drop the records of nodes that serve no slots now (their slots moved away).

        Calls for those slots go to their new node, whose breaker is its own; a node
        that comes back as a primary later starts closed.
        """
        if not primaries or all(node in primaries for node in self._nodes):
            return
        with self._lock:
            for node in [node for node in self._nodes if node not in primaries]:
                del self._nodes[node]
            self.healthy = all(each.clean for each in self._nodes.values())

    def snapshot(self, primaries: Iterable[str] = ()) -> dict[str, dict[str, object]]:
        """Each node's breaker as plain values, by ``host:port`` (``primaries`` included).

        Every entry has ``state``, ``failures`` (in a row), ``faults`` (counted in all),
        ``rejected`` (calls failed fast while open) and ``openings``.
        """
        with self._lock:
            records = dict(self._nodes)
        found: dict[str, dict[str, object]] = {}
        for node in dict.fromkeys([*primaries, *records]):
            record = records.get(node) or _Node()
            found[node] = {
                "state": self.state(node),
                "failures": record.failures,
                "faults": record.faults,
                "rejected": record.rejected,
                "openings": record.openings,
            }
        return found

    def __repr__(self) -> str:
        shown = {node: self.state(node) for node in self._nodes}
        return f"NodeBreakers({shown!r})"


def unavailable(
    operation: str, node: str, where: str, breakers: NodeBreakers
) -> NodeUnavailableError:
    """The error of a call refused because ``node``'s breaker is open (nothing was sent)."""
    retry = breakers.retry_in(node)
    msg = (
        f"Redis {operation} on {where}: node {node} is unavailable: its circuit breaker is "
        f"open (it failed to connect or answer); calls for its slots fail at once until it "
        f"answers again (next try in {retry:.2f} s) or a replica takes its slots over"
    )
    error = NodeUnavailableError(msg)
    error.node = node
    return error
