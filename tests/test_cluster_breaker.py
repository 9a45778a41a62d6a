"""The per-node circuit breakers of a Redis Cluster backend: the state machine, no server.

Time is an injected clock; nothing sleeps. What a node's breaker does on a real cluster
(a primary killed under load) is in tests/test_cluster_failover.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis.cluster import ClusterNode
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, ResponseError

from kirocache.backends._cluster_breaker import NodeBreakers, node_breakers, unavailable
from kirocache.backends._cluster_nodes import failed_node, node_fault, route
from kirocache.exceptions import BackendError, CommandError, ConfigurationError

A, B, C = "127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def nodes(clock: Clock) -> NodeBreakers:
    return NodeBreakers(failure_threshold=3, retry_interval=0.5, clock=clock)


def test_a_node_opens_after_the_threshold_of_failures_in_a_row(nodes: NodeBreakers) -> None:
    assert nodes.healthy
    assert nodes.failure(A) is False
    assert nodes.failure(A) is False
    assert not nodes.healthy
    assert nodes.state(A) == "closed"
    assert nodes.allow(A)
    assert nodes.failure(A) is True
    assert nodes.state(A) == "open"
    assert not nodes.allow(A)
    assert not nodes.allow(A)
    # the other nodes are not touched
    assert nodes.state(B) == "closed"
    assert nodes.allow(B)
    snapshot = nodes.snapshot([A, B])
    assert snapshot[A] == {
        "state": "open",
        "failures": 3,
        "faults": 3,
        "rejected": 2,
        "openings": 1,
    }
    assert snapshot[B]["state"] == "closed"


def test_an_answer_between_failures_resets_the_count(nodes: NodeBreakers) -> None:
    nodes.failure(A)
    nodes.failure(A)
    nodes.success(A)
    assert nodes.healthy
    nodes.failure(A)
    nodes.failure(A)
    assert nodes.state(A) == "closed"
    assert nodes.snapshot()[A]["faults"] == 4


def test_open_goes_half_open_after_the_interval_and_lets_one_call_through(
    nodes: NodeBreakers, clock: Clock
) -> None:
    for _ in range(3):
        nodes.failure(A)
    assert nodes.retry_in(A) == pytest.approx(0.5)
    clock.now += 0.49
    assert not nodes.allow(A)
    clock.now += 0.02
    assert nodes.state(A) == "half_open"
    assert nodes.retry_in(A) == 0.0
    assert nodes.allow(A)  # the one trial
    assert not nodes.allow(A)  # the others wait for its outcome
    nodes.success(A)
    assert nodes.state(A) == "closed"
    assert nodes.healthy
    assert nodes.allow(A)


def test_a_failed_trial_opens_it_again_for_another_interval(
    nodes: NodeBreakers, clock: Clock
) -> None:
    for _ in range(3):
        nodes.failure(A)
    clock.now += 0.5
    assert nodes.allow(A)
    assert nodes.failure(A) is True
    assert nodes.state(A) == "open"
    assert not nodes.allow(A)
    clock.now += 0.5
    assert nodes.allow(A)
    assert nodes.snapshot()[A]["openings"] == 2


def test_a_trial_that_never_reports_back_is_given_up_after_an_interval(
    nodes: NodeBreakers, clock: Clock
) -> None:
    for _ in range(3):
        nodes.failure(A)
    clock.now += 0.5
    assert nodes.allow(A)
    clock.now += 0.25
    assert not nodes.allow(A)
    clock.now += 0.3
    assert nodes.allow(A)


def test_an_answer_closes_an_open_node_at_once(nodes: NodeBreakers) -> None:
    # a ping that reaches the node does not wait for the interval
    for _ in range(3):
        nodes.failure(A)
    nodes.success(A)
    assert nodes.state(A) == "closed"
    assert nodes.allow(A)


def test_partial_while_another_primary_is_closed(nodes: NodeBreakers, clock: Clock) -> None:
    primaries = [A, B, C]
    for node in (A, B):
        for _ in range(3):
            nodes.failure(node)
    assert nodes.partial(A, primaries)  # C answers
    for _ in range(3):
        nodes.failure(C)
    assert not nodes.partial(A, primaries)  # every primary is open: a full outage
    clock.now += 0.5
    # half open is not healthy: the cluster is still down until a trial answers
    assert not nodes.partial(A, primaries)
    nodes.success(C)
    assert nodes.partial(A, primaries)
    # one primary alone is never a partial outage
    assert not nodes.partial(A, [A])
    assert not nodes.partial(A, [])


def test_a_node_whose_slots_moved_is_forgotten(nodes: NodeBreakers) -> None:
    for _ in range(3):
        nodes.failure(A)
    nodes.keep([A, B, C])
    assert nodes.state(A) == "open"
    # a replica of A was promoted: the slot map lists D where A was
    nodes.keep([B, C, "127.0.0.1:7003"])
    assert nodes.state(A) == "closed"
    assert nodes.healthy
    assert A not in nodes.snapshot()
    nodes.keep([])  # an unknown map forgets nothing
    nodes.failure(B)
    nodes.keep([])
    assert nodes.snapshot()[B]["failures"] == 1


@pytest.mark.parametrize(
    ("threshold", "interval"),
    [(0, 0.5), (-1, 0.5), (True, 0.5), (2.5, 0.5), ("3", 0.5), (3, 0), (3, -1), (3, float("inf"))],
)
def test_bad_options_are_refused(threshold: object, interval: object) -> None:
    with pytest.raises(ConfigurationError, match="node_"):
        node_breakers(threshold, interval)  # type: ignore[arg-type]


def test_intervals_may_be_timedeltas() -> None:
    assert node_breakers(1, timedelta(milliseconds=250)).retry_interval == 0.25
    assert node_breakers().failure_threshold == 3


def test_the_refusal_names_the_node_and_its_open_breaker(nodes: NodeBreakers, clock: Clock) -> None:
    for _ in range(3):
        nodes.failure(B)
    clock.now += 0.2
    error = unavailable("get", B, "redis+cluster://127.0.0.1:7000", nodes)
    assert isinstance(error, BackendError)
    assert error.node == B
    assert B in str(error)
    assert "circuit breaker is open" in str(error)
    assert "0.30 s" in str(error)


def _backend_error(cause: BaseException, *, outage: bool = True) -> BackendError:
    error = BackendError("failed") if outage else CommandError("refused")
    error.__cause__ = cause
    return error


def test_which_failures_are_a_nodes() -> None:
    refused = RedisConnectionError("Error 111 connecting to 127.0.0.1:7001. Connection refused.")
    assert node_fault(_backend_error(refused))
    assert not node_fault(_backend_error(ResponseError("WRONGTYPE"), outage=False))
    # no seed answered: no node to blame
    unreachable = RedisConnectionError("Redis Cluster unreachable: ...")
    unreachable.__cause__ = RedisClusterException("cannot be connected")
    assert not node_fault(_backend_error(unreachable))  # building the client: no node to blame
    # no node answered the slot map while redis-py handled a node's failure: that node's
    handled = RedisConnectionError("Error 111 connecting to 127.0.0.1:7001.")
    handled.connection = ClusterNode("127.0.0.1", 7001)  # type: ignore[attr-defined]
    try:
        try:
            raise handled
        except RedisConnectionError:
            raise RedisClusterException("cannot be connected: deadline") from None
    except RedisClusterException as exc:
        rereading = exc
    assert rereading.__context__ is handled
    stalled = RedisConnectionError("Redis Cluster unreachable: cannot be connected")
    stalled.__cause__ = rereading
    assert node_fault(_backend_error(stalled))
    assert failed_node(_backend_error(stalled), [A, B, C]) == B
    # ... and while it handled CLUSTERDOWN: the cluster's outage, no node's
    try:
        try:
            raise ResponseError("CLUSTERDOWN The cluster is down")
        except ResponseError:
            raise RedisClusterException("cannot be connected") from None
    except RedisClusterException as exc:
        down = RedisConnectionError("Redis Cluster unreachable")
        down.__cause__ = exc
    assert not node_fault(_backend_error(down))
    busy = _backend_error(RedisConnectionError("No connection available."))
    busy.outage = False
    assert not node_fault(busy)


def test_the_failed_node_is_read_from_the_error() -> None:
    named = RedisConnectionError("Error 111 connecting to 127.0.0.1:7001. Connection refused.")
    assert failed_node(_backend_error(named), [A, B]) == B
    assert failed_node(_backend_error(named), [A]) is None
    on_node = RedisConnectionError("Connection reset by peer")
    on_node.connection = ClusterNode("127.0.0.1", 7002)  # type: ignore[attr-defined]
    assert failed_node(_backend_error(on_node)) == C


class _Map:
    """A slot map with every slot on one node (redis-py's NodesManager, in part)."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    def get_node_from_slot(self, slot: int) -> ClusterNode:
        return self.node


def test_a_command_routes_by_its_key() -> None:
    where = _Map(ClusterNode("127.0.0.1", 7000))
    assert route(where, ("GET", "k")) == A
    assert route(where, ("EVALSHA", "abc", 1, "k", "v")) == A
    assert route(where, ("EVAL", "return 1", 0)) is None
    assert route(where, ("PUBLISH", "channel", "m")) is None
    assert route(where, ("PING",)) is None
    assert route(None, ("GET", "k")) is None


def test_stats_show_each_nodes_breaker_and_the_nodes_left_out() -> None:
    from kirocache.backends import BackendStats
    from kirocache.backends._cluster_stats import summed

    figures = BackendStats(backend="redis", keys=4, used_memory=100, max_memory=0)
    plain = summed({A: figures, B: figures})
    assert plain.keys == 8
    assert "unavailable" not in plain.extra
    breakers = NodeBreakers().snapshot([A, B, C])
    breakers[C]["state"] = "open"
    stats = summed({A: figures, B: figures}, breakers)
    assert stats.keys == 8
    assert stats.extra["primaries"] == 2
    assert stats.extra["unavailable"] == [C]
    nodes = stats.extra["nodes"]
    assert isinstance(nodes, dict)
    assert nodes[A]["keys"] == 4
    assert nodes[A]["breaker"]["state"] == "closed"
    assert nodes[C] == {"breaker": breakers[C]}
