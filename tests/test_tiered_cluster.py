"""TieredBackend on a real Redis Cluster and through Sentinel: invalidations between processes.

Two backends stand for two processes (two caches, one key prefix). Each test puts copies
in the second one's local layer, invalidates through the first, and asserts the second
never serves the old value once the rule says it may not: after the message arrived
(polled with a bound, no timing asserted), or at once when the invalidation landed
before the second one's subscription came back (a lost subscription clears the layer,
and so does the new one). The figures printed with ``-s`` are in docs/cluster.md.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from redis.crc import key_slot

import test_cluster
from eventually import BOUND, aeventually, eventually, until
from kirocache import Cache
from kirocache.backends._cluster_breaker import NodeBreakers
from kirocache.backends._cluster_plan import slot_of
from kirocache.backends._protocol import Op
from kirocache.backends._steps import Call
from kirocache.backends._tiered_announce import write_steps
from kirocache.backends._tiered_cluster import ClusterRoute, NodeRotation
from kirocache.backends._tiered_local import Local
from kirocache.backends._tiered_subscriber import Subscriber
from kirocache.backends.cluster import RedisClusterBackend
from kirocache.backends.memory import MemoryBackend
from kirocache.backends.sentinel import RedisSentinelBackend
from kirocache.backends.tiered import TieredBackend
from kirocache.exceptions import BackendError, CommandError, ConfigurationError
from kirocache.keys import Namespace

if TYPE_CHECKING:
    from cluster_server import LocalCluster, LocalSentinel
    from redis_server import RedisServer

pytest_plugins = ["cluster_server"]

REDIS_ENV = ("REDIS_URL", "REDIS_PASSWORD", "REDIS_DB", "CACHE_DEBUG")
PREFIX = "near:"
# Long enough that a copy never invalidated would still be served when the test looks.
LOCAL_TTL = 120.0


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in REDIS_ENV:
        monkeypatch.delenv(name, raising=False)


def tiered(url: str) -> TieredBackend:
    remote: RedisClusterBackend | RedisSentinelBackend = (
        RedisClusterBackend(url, timeout=2.0)
        if "+cluster://" in url
        else RedisSentinelBackend(url, timeout=2.0)
    )
    return TieredBackend(remote, local_ttl=LOCAL_TTL, ping_interval=0.5)


@pytest.fixture
def pair(redis_cluster: LocalCluster) -> Iterator[tuple[TieredBackend, TieredBackend]]:
    """Two subscribed backends on the shared cluster (the test's keys flushed first)."""
    redis_cluster.flush()
    one, two = tiered(redis_cluster.url), tiered(redis_cluster.url)
    try:
        assert one.wait_connected(BOUND)
        assert two.wait_connected(BOUND)
        yield one, two
    finally:
        one.close()
        two.close()


def slot_owners(cluster: LocalCluster) -> dict[int, int]:
    """Slot -> port of the primary serving it now."""
    owners: dict[int, int] = {}
    with cluster.client(cluster.primaries()[0].port) as client:
        for start, end, primary, *_ in client.cluster("SLOTS"):
            owners.update(dict.fromkeys(range(start, end + 1), int(primary[1])))
    return owners


def owner_of(owners: dict[int, int], full_key: str) -> int:
    return owners[int(key_slot(full_key.encode()))]


def copied(backend: TieredBackend, cache: Cache, keys: list[str], **options: object) -> bool:
    """Read ``keys`` through ``cache`` until every one is held in ``backend``'s layer."""
    for key in keys:
        cache.get(key, **options)  # type: ignore[arg-type]
    return all(backend.local.get(k) is not None for k in _full(cache, keys, **options))


def _full(cache: Cache, keys: list[str], **options: object) -> list[str]:
    namespace = options.get("namespace")
    return [cache.full_key(k, namespace) for k in keys]  # type: ignore[arg-type]


def gone(cache: Cache, keys: list[str], **options: object) -> bool:
    return all(cache.get(k, **options) is None for k in keys)  # type: ignore[arg-type]


async def acopied(backend: TieredBackend, cache: Cache, keys: list[str]) -> bool:
    """:func:`copied`, reading through ``cache``'s async methods."""
    for key in keys:
        await cache.aget(key)
    return all(backend.local.get(k) is not None for k in _full(cache, keys))


async def agone(cache: Cache, keys: list[str]) -> bool:
    return all([await cache.aget(k) is None for k in keys])


def landed(write: Callable[[], object]) -> bool:
    """Whether ``write`` went through (a write in a cluster's CLUSTERDOWN window raises)."""
    try:
        write()
    except BackendError:
        return False
    return True


# ---- configuration: no server needed ----------------------------------------------------------


def test_tracking_mode_on_a_cluster_is_refused_naming_the_way_out() -> None:
    remote = RedisClusterBackend("redis+cluster://127.0.0.1:1", timeout=0.2)
    with pytest.raises(ConfigurationError, match=r'Redis Cluster.*invalidation="pubsub"') as err:
        TieredBackend(remote, invalidation="tracking", tracking_prefixes=["app:"])
    assert "per node" in str(err.value)
    remote.close()


def test_a_cluster_down_at_start_keeps_the_layer_bypassed_and_reads_fail_as_outages() -> None:
    remote = RedisClusterBackend("redis+cluster://127.0.0.1:1", timeout=0.2)
    near = TieredBackend(remote)
    try:
        assert eventually(lambda: near.connection_failures >= 1)  # it keeps trying
        assert near.connected is False
        with pytest.raises(BackendError) as err:
            near.get("k")
        assert err.value.outage
        assert near.subscriber_node is None
    finally:
        near.close()


def test_from_url_takes_a_cluster_url_and_refuses_tracking_there() -> None:
    with pytest.raises(ConfigurationError, match="Redis Cluster"):
        TieredBackend.from_url("redis+cluster://127.0.0.1:1", invalidation="tracking")


class _Node:
    def __init__(self, name: str) -> None:
        self.name = name


NAMES = ("a:1", "b:2", "c:3")


def key_on(name: str, tag: str = "") -> str:
    """A key the fake's slot map puts on node ``name`` (slot modulo three)."""
    return next(
        key for key in (f"{tag}k{n}" for n in range(1000)) if slot_of(key) % 3 == NAMES.index(name)
    )


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Remote:
    """What ClusterRoute asks of a RedisClusterBackend, with nodes that fail (no server).

    ``down`` nodes fail the write of their keys (the whole round raises, naming the node,
    as a timeout does); ``silent`` nodes take writes but fail a PUBLISH, each failure
    using up ``timeout`` seconds of the fake clock.
    """

    def __init__(
        self,
        down: dict[str, BackendError] | None = None,
        silent: dict[str, BackendError] | None = None,
        timeout: float = 0.0,
    ) -> None:
        self.nodes = [_Node(name) for name in NAMES]
        self.down = down or {}
        self.silent = {**self.down, **(silent or {})}
        self.timeout = timeout
        self.clock = _Clock()
        self.tried: list[str] = []
        self.operations: list[str] = []
        self._nodes = NodeBreakers()
        self._deadline = 1.0
        self._lazy = self

    # the slot map and the clients (sync and async alike)
    def get(self) -> Any:
        return self

    @property
    def nodes_manager(self) -> Any:
        return self

    def get_node_from_slot(self, slot: int) -> _Node:
        return self.nodes[slot % 3]

    def get_primaries(self) -> list[_Node]:
        return list(self.nodes)

    def _primaries(self, operation: str) -> list[_Node]:
        return list(self.nodes)

    async def _aclient(self) -> Any:
        return _AsyncClient(self)

    def _manager(self) -> None:
        return None

    _amanager = _manager

    def _error(self, operation: str, exc: BaseException) -> BackendError:
        kind = CommandError if "NOPERM" in str(exc) else BackendError
        error = kind(f"Redis {operation}: {exc}")
        error.__cause__ = exc
        return error

    def _judge(self, error: BackendError, node: str | None, manager: object) -> None:
        pass

    # the writes
    def _pipe(
        self, operation: str, commands: list[tuple[Any, ...]], *, transaction: bool, strict: bool
    ) -> list[object]:
        self.operations.append(operation)
        for command in commands:
            name = self.get_node_from_slot(slot_of(str(command[1]))).name
            if name in self.down:
                raise self.down[name]
        return [True] * len(commands)

    async def _apipe(
        self, operation: str, commands: list[tuple[Any, ...]], *, transaction: bool, strict: bool
    ) -> list[object]:
        return self._pipe(operation, commands, transaction=transaction, strict=strict)

    def _answers(self, ops: list[Op], raws: list[object]) -> list[object]:
        return list(raws)

    def execute(self, ops: list[Op], *, transaction: bool = False) -> list[object]:
        return self._pipe(
            "execute", [("SET", op.key) for op in ops], transaction=False, strict=False
        )

    async def aexecute(self, ops: list[Op], *, transaction: bool = False) -> list[object]:
        return self.execute(ops, transaction=transaction)

    # the PUBLISH, as the route sends it now and as it once did
    def execute_command(self, *command: Any, target_nodes: _Node) -> None:
        self._published_on(target_nodes.name)

    def _on_node(self, operation: str, node: _Node, command: tuple[object, ...]) -> None:
        try:
            self._published_on(node.name)
        except redis.RedisError as exc:
            raise self._error(operation, exc) from exc

    async def _aon_node(self, operation: str, node: _Node, command: tuple[object, ...]) -> None:
        self._on_node(operation, node, command)

    def _published_on(self, name: str) -> None:
        self.tried.append(name)
        if name in self.silent:
            if "NOPERM" in str(self.silent[name]):
                raise redis.ResponseError(str(self.silent[name]))
            self.clock.now += self.timeout
            raise redis.TimeoutError(f"Timeout reading from {name}") from self.silent[name]


class _AsyncClient:
    def __init__(self, remote: _Remote) -> None:
        self.remote = remote
        self.nodes_manager = remote

    def get_primaries(self) -> list[_Node]:
        return list(self.remote.nodes)

    async def execute_command(self, *command: Any, target_nodes: _Node) -> None:
        self.remote._published_on(target_nodes.name)


def timed_out(name: str) -> BackendError:
    error = BackendError(f"Redis execute: Timeout reading from {name}")
    error.__cause__ = redis.TimeoutError(f"Timeout reading from {name}")
    return error


def route_of(remote: _Remote) -> ClusterRoute:
    route = ClusterRoute(remote, "ch")  # type: ignore[arg-type]
    route._clock = remote.clock  # the fake's clock: a timeout uses up its seconds there
    return route


def written(route: ClusterRoute, ops: list[Op], in_async: bool, operation: str = "set_many") -> Any:
    if in_async:
        return asyncio.run(route.awrite(operation, ops, [b"m"], transaction=False))
    return route.write(operation, ops, [b"m"], transaction=False)


@pytest.mark.parametrize("in_async", [False, True], ids=["sync", "async"])
def test_a_failed_write_is_announced_on_a_healthy_primary_not_on_the_one_that_failed(
    in_async: bool,
) -> None:
    # set_many({a, b}): a's node times out (the write raises), b's write lands. The one
    # try goes to a node that answers, never to a's, whichever key comes first.
    ops = [Op("set", key_on("a:1"), b"1"), Op("set", key_on("b:2"), b"2")]
    for _ in range(20):  # the healthy nodes are taken in a random order
        remote = _Remote(down={"a:1": timed_out("a:1")})
        with pytest.raises(BackendError):
            written(route_of(remote), ops, in_async)
        assert len(remote.tried) == 1
        assert remote.tried[0] != "a:1"
    # a node whose breaker is open is passed over too
    for _ in range(20):
        remote = _Remote(down={"a:1": timed_out("a:1")})
        for _ in range(remote._nodes.failure_threshold):
            remote._nodes.failure("c:3")
        with pytest.raises(BackendError):
            written(route_of(remote), ops, in_async)
        assert remote.tried == ["b:2"]


@pytest.mark.parametrize("in_async", [False, True], ids=["sync", "async"])
def test_an_announcement_s_tries_share_one_deadline(
    in_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # The write lands on a's node, which then fails the PUBLISH by timing out: that uses
    # up the call's deadline (1 s), and no other node is tried.
    ops = [Op("set", key_on("a:1"), b"1")]
    remote = _Remote(silent={"a:1": BackendError("gone")}, timeout=1.0)
    with caplog.at_level(logging.WARNING, logger="kirocache.backends.tiered"):
        assert written(route_of(remote), ops, in_async, "set") == [True]
    assert remote.tried == ["a:1"]  # the written key's node first: it just answered
    assert "could not be announced" in caplog.text
    # A failure that leaves time: the next healthy node takes the message.
    remote = _Remote(silent={"a:1": BackendError("gone")}, timeout=0.4)
    assert written(route_of(remote), ops, in_async, "set") == [True]
    assert remote.tried[0] == "a:1"
    assert len(remote.tried) == 2


@pytest.mark.parametrize("in_async", [False, True], ids=["sync", "async"])
def test_a_write_is_said_as_its_operation(in_async: bool) -> None:
    remote = _Remote()
    ops = [Op("set", key_on("a:1"), b"1"), Op("set", key_on("b:2"), b"2")]
    written(route_of(remote), ops, in_async, "set_many")
    assert remote.operations == ["set_many"]
    remote = _Remote(down={"b:2": timed_out("b:2")})
    with pytest.raises(BackendError):
        written(route_of(remote), [Op("delete", key_on("b:2"))], in_async, "delete")
    assert remote.operations == ["delete"]


def test_an_announcement_goes_to_the_written_key_s_node_then_to_the_next_that_answers() -> None:
    down = BackendError("refused")
    remote = _Remote()
    route_of(remote).publish("set", b"m", near=key_on("a:1"))
    assert remote.tried == ["a:1"]
    remote = _Remote(silent={"a:1": down})
    route_of(remote).publish("set", b"m", near=key_on("a:1"))
    assert remote.tried[0] == "a:1"
    assert len(remote.tried) == 2  # one of the others took it
    remote = _Remote(silent={"a:1": down, "b:2": down, "c:3": down})
    with pytest.raises(BackendError):
        route_of(remote).publish("set", b"m", near=key_on("a:1"))
    assert sorted(remote.tried) == ["a:1", "b:2", "c:3"]
    remote = _Remote(silent={"a:1": BackendError("NOPERM no channel")})
    with pytest.raises(CommandError):  # a refusal no node will reverse
        route_of(remote).publish("set", b"m", near=key_on("a:1"))
    assert remote.tried == ["a:1"]


def test_the_write_steps_are_sent_results_round_by_round() -> None:
    # The generator both drivers run, driven by hand: the write's round, the primaries,
    # then one PUBLISH within what is left of the deadline.
    clock = _Clock()
    rounds = type("Rounds", (), {"breakers": NodeBreakers(), "answers": lambda _, o, r: r})()
    key = key_on("b:2")
    steps = write_steps(
        rounds, "set", [Op("set", key, b"v")], [b"m"], transaction=False, seconds=1.0, clock=clock
    )
    call = next(steps)
    assert (call.method, call.args[0]) == ("pipe", "set")
    call = steps.send([True])
    assert call == Call(rounds, "primaries", ("set", key))
    clock.now = 0.25
    nodes = [_Node(name) for name in NAMES]
    call = steps.send((nodes, "b:2"))
    assert call.method == "publish"
    assert call.args[1].name == "b:2"
    assert call.args[3] == pytest.approx(0.75)  # the deadline left, not a new one
    with pytest.raises(StopIteration) as done:
        steps.send(None)
    assert done.value.value == ([True], None)


# ---- the subscriber's rotation: no server needed ------------------------------------------------


class _Topology:
    """A sync cluster client whose map names dead nodes until it is read again."""

    def __init__(self) -> None:
        self.names = ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"]
        self.reads = 0
        self._lazy = self
        self._deadline = 1.0

    def get(self) -> Any:
        return self

    @property
    def nodes_manager(self) -> Any:
        return self

    def initialize(self) -> None:
        self.reads += 1
        self.names = ["10.0.1.1:7000", "10.0.1.2:7000"]

    def get_nodes(self) -> list[_Node]:
        return [_Node(name) for name in self.names]

    def get_redis_connection(self, node: _Node) -> redis.Redis:
        host, _, port = node.name.partition(":")
        return redis.Redis(host=host, port=int(port))


def test_the_rotation_reads_the_cluster_again_after_a_round_of_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = _Topology()
    rotation = NodeRotation(client, "ch")  # type: ignore[arg-type]

    def host(failures: int) -> str:
        pool = rotation(1.0, failures)
        pool.disconnect()
        return str(pool.connection_kwargs["host"])

    with caplog.at_level(logging.WARNING, logger="kirocache.backends.tiered"):
        assert host(0).startswith("10.0.0.")
        assert {host(1), host(2)} <= {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
        assert client.reads == 0
        assert host(3).startswith("10.0.1.")  # every node of the map failed once: re-read
        assert client.reads == 1
        assert "subscription to 'ch' is down" in caplog.text
        for failures in range(4, 10):  # a round of the two new nodes each time
            host(failures)
        assert client.reads == 4
        assert caplog.text.count("is down") == 1  # once per outage
        host(0)  # subscribed again
        for failures in range(1, 3):
            host(failures)
        assert caplog.text.count("is down") == 2  # a new outage is said again


def test_the_subscriber_tells_its_pools_how_many_attempts_failed() -> None:
    asked: list[int] = []

    def refuse(timeout: float, failures: int) -> redis.ConnectionPool:
        asked.append(failures)
        raise redis.ConnectionError("refused")

    local = Local(MemoryBackend(), 5.0)
    subscriber = Subscriber(refuse, "ch", "me", local, 0.5)
    subscriber.start()
    try:
        assert eventually(lambda: len(asked) >= 3)
    finally:
        thread = subscriber.stop()
        assert isinstance(thread, threading.Thread)
        thread.join()
    assert asked[:3] == [0, 1, 2]


# ---- the conformance suite, through the local layer ------------------------------------------


@pytest.mark.slow
@pytest.mark.real_redis
class TestTieredClusterConformance(test_cluster.TestClusterConformance):
    """The cluster's suite (cross-slot transactions refused) through a TieredBackend."""

    @pytest.fixture
    def backend(self, redis_cluster: LocalCluster) -> Iterator[TieredBackend]:  # type: ignore[override]
        made = tiered(redis_cluster.url)
        assert made.wait_connected(BOUND)
        yield made
        made.close()


# ---- two processes on the shared cluster ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.real_redis
def test_every_kind_of_invalidation_reaches_the_other_backend(
    pair: tuple[TieredBackend, TieredBackend], redis_cluster: LocalCluster
) -> None:
    one, two = pair
    first, second = Cache(one, key_prefix=PREFIX), Cache(two, key_prefix=PREFIX)
    keys = [f"k{n}" for n in range(24)]
    owners = slot_owners(redis_cluster)
    assert len({owner_of(owners, first.full_key(k)) for k in keys}) == 3  # every primary

    # delete (each key's tombstone written on its own primary)
    for key in keys:
        first.set(key, f"old:{key}")
    assert eventually(lambda: copied(two, second, keys))
    started = time.monotonic()
    first.delete_many(keys)
    assert eventually(lambda: gone(second, keys))
    seen = time.monotonic() - started
    print(f"\ndelete of {len(keys)} keys seen by the other backend in {seen:.4f} s")
    assert gone(second, keys)  # and no copy comes back

    # tag invalidation (the tag's stamp swapped on its node, announced)
    for key in keys:
        first.set(key, f"tagged:{key}", tags=["grp"])
    assert eventually(lambda: copied(two, second, keys))
    first.invalidate_tags("grp")
    assert eventually(lambda: gone(second, keys))

    # namespace bump (the generation incremented, announced)
    space = Namespace("ns:", bumpable=True)
    for key in keys:
        first.set(key, f"gen:{key}", namespace=space)
    assert eventually(lambda: all(second.get(k, namespace=space) is not None for k in keys))
    first.bump(space)
    assert eventually(lambda: gone(second, keys, namespace=space))

    # pattern delete (SCAN + UNLINK on every primary, the pattern announced)
    for key in keys:
        first.set(f"pat:{key}", f"pat:{key}")
    patterned = [f"pat:{k}" for k in keys]
    assert eventually(lambda: copied(two, second, patterned))
    assert first.delete_pattern("pat:*") == len(keys)
    assert eventually(lambda: gone(second, patterned))
    assert two.messages_applied > 0
    assert two.subscriber_node is not None


@pytest.mark.slow
@pytest.mark.real_redis
def test_a_single_key_invalidation_reaches_the_other_backend_every_time(
    pair: tuple[TieredBackend, TieredBackend],
) -> None:
    # The time an invalidation takes to reach the other process, many times over.
    one, two = pair
    first, second = Cache(one, key_prefix=PREFIX), Cache(two, key_prefix=PREFIX)
    took = []
    for n in range(50):
        key = f"one:{n}"
        first.set(key, n)
        assert eventually(lambda key=key: copied(two, second, [key]))  # type: ignore[misc]
        full = first.full_key(key)
        started = time.monotonic()
        first.delete(key)
        while two.local.get(full) is not None and time.monotonic() - started < BOUND:
            time.sleep(0.0002)  # a tight poll, for the figure
        took.append(time.monotonic() - started)
        assert second.get(key) is None
    took.sort()
    median, most = took[len(took) // 2] * 1e3, took[-1] * 1e3
    print(f"\ndelete -> other copy dropped: median {median:.2f} ms, max {most:.2f} ms")


@pytest.mark.slow
@pytest.mark.real_redis
async def test_async_invalidations_reach_the_other_backend(
    pair: tuple[TieredBackend, TieredBackend], redis_cluster: LocalCluster
) -> None:
    one, two = pair
    first, second = Cache(one, key_prefix=PREFIX), Cache(two, key_prefix=PREFIX)
    keys = [f"a{n}" for n in range(24)]
    owners = slot_owners(redis_cluster)
    assert len({owner_of(owners, first.full_key(k)) for k in keys}) == 3

    for key in keys:
        await first.aset(key, f"old:{key}", tags=["agrp"])
    assert await until(lambda: acopied(two, second, keys))
    assert await second.aget_many(keys) == {k: f"old:{k}" for k in keys}  # from the layer
    await first.adelete_many(keys[:12])
    assert await until(lambda: agone(second, keys[:12]))
    await first.ainvalidate_tags("agrp")
    assert await until(lambda: agone(second, keys))
    for key in keys:
        await first.aset(f"apat:{key}", 1)
    assert await until(lambda: acopied(two, second, [f"apat:{k}" for k in keys]))
    assert await first.adelete_pattern("apat:*") == len(keys)
    assert await until(lambda: agone(second, [f"apat:{k}" for k in keys]))


@pytest.mark.slow
@pytest.mark.real_redis
async def test_aclose_closes_the_sync_client_the_subscriber_read_the_nodes_with(
    redis_cluster: LocalCluster,
) -> None:
    near = tiered(redis_cluster.url)
    assert await near.await_connected(BOUND)
    remote = near.remote
    assert isinstance(remote, RedisClusterBackend)
    assert remote._lazy._client is not None  # built by the subscriber, not by the app
    await near.aclose()
    assert remote._lazy._client is None


@pytest.mark.slow
@pytest.mark.real_redis
def test_a_real_second_process_drops_what_this_one_invalidates(redis_cluster: LocalCluster) -> None:
    import tiered_worker

    redis_cluster.flush()
    prefix, db_key = "proc:", "proc:db"
    raw = tiered_worker.raw_client(redis_cluster.url)
    raw.set(db_key, 1)
    raw.delete(db_key + ":calls")
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    channel = "kirocache:invalidate"
    reader = context.Process(
        target=tiered_worker.reader, args=(redis_cluster.url, channel, prefix, db_key, theirs)
    )
    reader.start()
    theirs.close()  # the reader's end: if it dies, recv() raises EOFError at once

    def report() -> dict[str, Any]:
        assert ours.poll(60), "the reader process did not report"
        received: dict[str, Any] = ours.recv()
        assert "error" not in received, received["error"]
        return received

    writer = Cache(tiered(redis_cluster.url), key_prefix=prefix)
    try:
        cached_there = report()
        assert cached_there["connected"] is True
        assert cached_there["first"] == cached_there["again"] == {"id": 7, "version": 1}
        assert cached_there["local_hits"] >= 1  # the third call came from its local layer
        raw.set(db_key, 2)
        assert tiered_worker.profile_function(writer, raw, db_key).invalidate(7) is True
        ours.send("go")
        seen = report()
        assert seen["latest"] == {"id": 7, "version": 2}
        assert seen["applied"] >= 1
        assert int(raw.get(db_key + ":calls") or 0) == 2
    finally:
        ours.close()  # a reader still waiting for "go" gets EOFError and ends
        reader.join(30)
        if reader.is_alive():
            reader.terminate()
            reader.join()
        writer.close()
        raw.close()
    assert reader.exitcode == 0


@pytest.mark.slow
@pytest.mark.real_redis
def test_the_subscriber_speaks_tls_and_logs_in_as_the_acl_user(tmp_path: Path) -> None:
    # The subscriber reaches a node the slot map names with that node's connection
    # settings: TLS with the CA, the ACL user and its password.
    from cluster_server import LocalCluster, cluster_tls_files, tools

    server, cli = tools()
    files = cluster_tls_files(tmp_path)
    cluster = LocalCluster(server, cli, tls=files, acl_user=("app", "app-secret-canary"))
    one = two = None
    try:
        cluster.start()
        url = cluster.url.replace("://", "://app:app-secret-canary@")

        def near() -> TieredBackend:
            remote = RedisClusterBackend(url, ssl_ca_certs=files.ca, timeout=2.0)
            return TieredBackend(remote, local_ttl=LOCAL_TTL)

        one, two = near(), near()
        assert one.wait_connected(BOUND)
        assert two.wait_connected(BOUND)
        assert "app-secret-canary" not in repr(two)
        first, second = Cache(one, key_prefix=PREFIX), Cache(two, key_prefix=PREFIX)
        keys = [f"k{n}" for n in range(12)]
        for key in keys:
            first.set(key, f"old:{key}")
        assert eventually(lambda: copied(two, second, keys))
        first.delete_many(keys)
        assert eventually(lambda: gone(second, keys))
    finally:
        for backend in (one, two):
            if backend is not None:
                backend.close()
        cluster.close()


# ---- the subscriber's node killed --------------------------------------------------------------


def _node(cluster: LocalCluster, address: object) -> RedisServer:
    port = int(str(address).rpartition(":")[2])
    return next(node for node in cluster.nodes if node.port == port)


def subscribed_on(cluster: LocalCluster, role: str) -> TieredBackend:
    """A backend whose subscriber landed on a ``"master"`` or a ``"slave"`` (tried anew)."""

    def replicas_listed() -> bool:
        # A replica enters the slot map (CLUSTER SLOTS) once it has synced, a moment after
        # the cluster is ready; only then can redis-py's map, and so a subscriber, name it.
        with cluster.client(cluster.ports[0]) as client:
            return all(len(row) > 3 for row in client.cluster("SLOTS"))

    assert eventually(replicas_listed, 60)
    for _ in range(40):  # each backend starts at a random node: half of them are primaries
        made = tiered(cluster.url)
        assert made.wait_connected(BOUND)
        with cluster.client(_node(cluster, made.subscriber_node).port) as node:
            if node.info("replication").get("role") == role:
                return made
        made.close()
    msg = f"no subscriber landed on a {role}"
    raise AssertionError(msg)


@pytest.mark.slow
@pytest.mark.real_redis
def test_the_subscriber_moves_to_another_node_when_its_primary_is_killed(
    fresh_cluster: LocalCluster,
) -> None:
    # The harder case: a primary, whose slots fail over while the subscriber moves.
    one, two = tiered(fresh_cluster.url), subscribed_on(fresh_cluster, "master")
    try:
        assert one.wait_connected(BOUND)
        first, second = Cache(one, key_prefix=PREFIX), Cache(two, key_prefix=PREFIX)
        victim = _node(fresh_cluster, two.subscriber_node)
        owners = slot_owners(fresh_cluster)
        keys = [f"k{n}" for n in range(60)]
        # Keys whose primary stays up: their invalidations are acknowledged at once.
        live = [k for k in keys if owner_of(owners, first.full_key(k)) != victim.port]
        during, after = live[: len(live) // 2], live[len(live) // 2 :]
        for key in keys:
            first.set(key, f"old:{key}")
        with redis.Redis(port=victim.port) as node:  # replicated before the kill
            if node.info("replication").get("role") == "master":
                assert node.wait(1, 5000) >= 1
        assert eventually(lambda: copied(two, second, keys))
        failures = two.connection_failures

        killed = time.monotonic()
        fresh_cluster.kill(victim)
        # The loss is noticed (the layer cleared and bypassed) ...
        assert eventually(lambda: two.connection_failures > failures)
        # ... and invalidations made while the subscriber moves are missed by it. (Through
        # the backend: the cache's own bookkeeping keys may live on the killed primary.)
        # Retried: until the killed node is marked FAIL and its replica promoted, every
        # node may answer CLUSTERDOWN (cluster-require-full-coverage is yes by default).
        assert eventually(lambda: landed(lambda: one.delete_many(_full(first, during))))
        assert not any(one.exists(k) for k in _full(first, during))
        assert eventually(lambda: two.connected and two.reconnects >= 1)
        moved = time.monotonic() - killed
        assert two.subscriber_node != f"127.0.0.1:{victim.port}"
        # The layer was cleared on the new subscription: no copy from before the move.
        assert gone(second, during)
        # Invalidations after the move arrive on the new node's subscription.
        assert eventually(lambda: copied(two, second, after))
        assert one.delete_many(_full(first, after)) == len(after)
        assert eventually(lambda: gone(second, after))
        # The killed node's keys, once its slots are served again, invalidate as well.
        fresh_cluster.wait_ready()
        rest = [k for k in keys if k not in live]
        assert rest
        assert eventually(lambda: copied(two, second, rest))
        first.delete_many(rest)
        assert eventually(lambda: gone(second, rest))
        tries = two.connection_failures - failures
        print(f"\nsubscriber on {victim.port} killed: elsewhere after {moved:.3f} s, {tries} tries")
    finally:
        one.close()
        two.close()


@pytest.mark.slow
@pytest.mark.real_redis
async def test_the_subscriber_moves_when_its_replica_is_killed_async(
    fresh_cluster: LocalCluster,
) -> None:
    # A replica this time (the sync test kills a primary): any node carries the messages.
    one, two = tiered(fresh_cluster.url), subscribed_on(fresh_cluster, "slave")
    try:
        assert await one.await_connected(BOUND)
        first, second = Cache(one, key_prefix=PREFIX), Cache(two, key_prefix=PREFIX)
        victim = _node(fresh_cluster, two.subscriber_node)
        owners = slot_owners(fresh_cluster)
        keys = [f"k{n}" for n in range(60)]
        live = [k for k in keys if owner_of(owners, first.full_key(k)) != victim.port]
        during, after = live[: len(live) // 2], live[len(live) // 2 :]

        for key in live:
            await first.aset(key, f"old:{key}")
        assert await until(lambda: acopied(two, second, live))
        failures = two.connection_failures
        fresh_cluster.kill(victim)
        assert await aeventually(lambda: two.connection_failures > failures)
        assert await one.adelete_many(_full(first, during)) == len(during)
        assert await aeventually(lambda: two.connected and two.reconnects >= 1)
        assert two.subscriber_node != f"127.0.0.1:{victim.port}"
        assert await agone(second, during)  # cleared on the new subscription, not by a message
        assert await until(lambda: acopied(two, second, after))
        assert await one.adelete_many(_full(first, after)) == len(after)
        assert await until(lambda: agone(second, after))
    finally:
        await one.aclose()
        await two.aclose()


# ---- Sentinel: the master killed ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.real_redis
def test_tiered_backends_follow_a_sentinel_failover(fresh_sentinel: LocalSentinel) -> None:
    one, two = tiered(fresh_sentinel.url), tiered(fresh_sentinel.url)
    try:
        assert one.wait_connected(BOUND)
        assert two.wait_connected(BOUND)
        first, second = Cache(one, key_prefix=PREFIX), Cache(two, key_prefix=PREFIX)
        keys = [f"s{n}" for n in range(20)]
        for key in keys:
            first.set(key, f"old:{key}")
        old_master = fresh_sentinel.master_port()
        with redis.Redis(port=old_master) as master:
            assert master.wait(1, 5000) >= 1
        assert eventually(lambda: copied(two, second, keys))
        failures = two.connection_failures

        killed = time.monotonic()
        process = fresh_sentinel.node(old_master)._process
        assert process is not None
        process.kill()  # SIGKILL, by pid
        process.wait()
        assert eventually(lambda: two.connection_failures > failures)
        assert eventually(lambda: fresh_sentinel.master_port() != old_master, 60)
        assert eventually(lambda: two.connected and two.reconnects >= 1, 60)
        moved = time.monotonic() - killed
        assert two.subscriber_node == f"127.0.0.1:{fresh_sentinel.master_port()}"
        # Nothing from before the failover is held: the lost subscription cleared the layer.
        assert all(two.local.get(k) is None for k in _full(second, keys))
        # Invalidations on the new master reach the other backend.
        assert eventually(lambda: copied(two, second, keys))
        assert eventually(lambda: first.delete(keys[0]))  # the new master takes writes
        assert first.delete_many(keys[1:]) == len(keys) - 1
        assert eventually(lambda: gone(second, keys))
        print(f"\nsentinel master killed: subscribed to the new master after {moved:.3f} s")
    finally:
        one.close()
        two.close()


@pytest.mark.slow
@pytest.mark.real_redis
def test_tracking_mode_works_through_sentinel(redis_sentinel: LocalSentinel) -> None:
    def near() -> TieredBackend:
        remote = RedisSentinelBackend(redis_sentinel.url, timeout=2.0)
        return TieredBackend(remote, invalidation="tracking", tracking_prefixes=[PREFIX])

    one, two = near(), near()
    try:
        assert one.wait_connected(BOUND)
        assert two.wait_connected(BOUND)
        first, second = Cache(one, key_prefix=PREFIX), Cache(two, key_prefix=PREFIX)
        keys = [f"t{n}" for n in range(10)]
        for key in keys:
            first.set(key, f"old:{key}")
        assert eventually(lambda: copied(two, second, keys))
        first.delete_many(keys)  # Redis itself tells the other backend
        assert eventually(lambda: gone(second, keys))
    finally:
        one.close()
        two.close()
