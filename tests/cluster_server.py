"""Throwaway Redis Cluster and Sentinel deployments for the test session (no containers).

A :class:`LocalCluster` is six ``redis-server --cluster-enabled yes`` processes on free
loopback ports (their bus ports chosen free too), joined by ``redis-cli --cluster create
... --cluster-replicas 1``: three primaries, one replica each. A :class:`LocalSentinel` is
a master, a replica and three ``redis-server --sentinel`` processes watching the master
as ``mymaster``. Both are stopped by pid, never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from redis_server import (
    RedisServer,
    RedisServerError,
    TLSFiles,
    find_redis_server,
    free_port,
    tls_files,
)

__all__ = [
    "MASTER_NAME",
    "REQUIRE_REDIS",
    "SENTINEL_PASSWORD",
    "LocalCluster",
    "LocalSentinel",
    "cluster_tls_files",
    "find_redis_cli",
    "wait_for",
]

MASTER_NAME = "mymaster"
SENTINEL_PASSWORD = "sentinel-secret"
# Short, so a failover under test takes a second or two rather than the default 15-30 s.
NODE_TIMEOUT_MS = 1000
_READY_TIMEOUT = 60.0
REQUIRE_REDIS = "KIROCACHE_REQUIRE_REDIS"


def find_redis_cli() -> str | None:
    """``redis-cli`` next to the redis-server binary, else on PATH."""
    server = find_redis_server()
    if server is not None:
        beside = Path(server).with_name("redis-cli")
        if beside.is_file():
            return str(beside)
    return shutil.which("redis-cli")


def wait_for(check: Callable[[], bool], what: str, timeout: float = _READY_TIMEOUT) -> float:
    """Poll ``check`` until it is true; returns the seconds it took.

    Raises:
        RedisServerError: ``check`` stayed false for ``timeout`` seconds.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    msg = f"timed out after {timeout:g} s waiting for {what}"
    raise RedisServerError(msg)


def cluster_tls_files(directory: Path) -> TLSFiles:
    """A throwaway CA and one certificate for 127.0.0.1 that nodes use as server and client.

    A cluster's bus over TLS is mutual: each node presents its certificate to the others,
    so it needs the client-auth usage as well as the server-auth one.
    """
    return tls_files(directory, client_auth=True)


def _free_bus_port(taken: set[int]) -> int:
    while True:
        port = free_port()
        if port not in taken:
            return port


class LocalCluster:
    """Three primaries with one replica each, on free loopback ports.

    Args:
        binary: The redis-server binary.
        cli: The redis-cli binary (``--cluster create``).
    """

    def __init__(
        self,
        binary: str,
        cli: str,
        tls: TLSFiles | None = None,
        acl_user: tuple[str, str] | None = None,
    ) -> None:
        self.binary = binary
        self.cli = cli
        self.tls = tls
        # an ACL user for clients; the default user then gets a password too, which the
        # replicas and redis-cli use (the cluster bus has no ACL)
        self.acl_user = acl_user
        self.admin_password = "cluster-admin-secret" if acl_user else None
        self.nodes: list[RedisServer] = []

    @property
    def ports(self) -> list[int]:
        """Every node's client port."""
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """``redis+cluster://`` with three seed nodes."""
        seeds = ",".join(f"127.0.0.1:{port}" for port in self.ports[:3])
        return f"{'rediss' if self.tls else 'redis'}+cluster://{seeds}"

    def start(self) -> LocalCluster:
        """Start the six nodes, create the cluster and wait for ``cluster_state:ok``.

        Returns:
            The cluster, for chaining.

        Raises:
            RedisServerError: A node did not start or the cluster did not become ready.
        """
        taken: set[int] = set()
        for _ in range(6):
            self.nodes.append(self._start_node(taken))
        addresses = [f"127.0.0.1:{port}" for port in self.ports]
        created = subprocess.run(
            [
                self.cli,
                *self._cli_tls(),
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            msg = f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}"
            raise RedisServerError(msg)
        self.wait_ready()
        return self

    def _start_node(self, taken: set[int]) -> RedisServer:
        # Parallel test workers pick free ports too: a bus port taken between probing and
        # binding fails the node's start, and a new bus port (and client port) is tried.
        attempts = 3
        while True:
            attempts -= 1
            bus = _free_bus_port(taken)
            taken.add(bus)
            tls_args = ["--tls-cluster", "yes", "--tls-replication", "yes"] if self.tls else []
            auth_args = ["--masterauth", self.admin_password] if self.admin_password else []
            node = RedisServer(
                self.binary,
                tls=self.tls,
                password=self.admin_password,
                acl_user=self.acl_user,
                extra_args=[
                    *tls_args,
                    *auth_args,
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                    "--cluster-port", str(bus),
                    # a replica whose primary just died may take over at once
                    "--cluster-replica-validity-factor", "0",
                ],
            )  # fmt: skip
            try:
                node.start()
            except RedisServerError:
                node.close()
                if attempts == 0:
                    raise
            else:
                taken.add(node.port)
                return node

    def _cli_tls(self) -> list[str]:
        auth = ["-a", self.admin_password, "--no-auth-warning"] if self.admin_password else []
        return auth + (["--tls", "--cacert", self.tls.ca] if self.tls else [])

    def client(self, port: int) -> redis.Redis:
        """A plain client of one node (TLS when the cluster speaks it)."""
        secret = self.admin_password
        if self.tls:
            return redis.Redis(
                port=port, password=secret, socket_timeout=2, ssl=True, ssl_ca_certs=self.tls.ca
            )
        return redis.Redis(port=port, password=secret, socket_timeout=2)

    def _node_ok(self, port: int) -> bool:
        with self.client(port) as client:
            info = client.cluster("INFO")
            nodes = client.cluster("NODES")
        # every node must also know all six, or redirects may point at an unknown one
        known = str(nodes).count("connected")
        return info.get("cluster_state") == "ok" and known >= len(self.nodes) - self.down()

    def down(self) -> int:
        """How many nodes are not running."""
        return sum(not node.running for node in self.nodes)

    def wait_ready(self) -> float:
        """Wait until every running node reports ``cluster_state:ok``; the seconds it took."""
        return wait_for(
            lambda: all(self._node_ok(n.port) for n in self.nodes if n.running),
            "cluster_state:ok on every node",
        )

    def primaries(self) -> list[RedisServer]:
        """The nodes that are primaries now."""
        found = []
        for node in self.nodes:
            if node.running:
                with self.client(node.port) as client:
                    if client.info("replication").get("role") == "master":
                        found.append(node)
        return found

    def primary_of(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot now."""
        with self.client(self.primaries()[0].port) as client:
            slot = client.cluster("KEYSLOT", key)
            for start, end, primary, *_ in client.cluster("SLOTS"):
                if start <= slot <= end:
                    port = int(primary[1])
                    return next(node for node in self.nodes if node.port == port)
        msg = f"no node serves slot {slot}"
        raise RedisServerError(msg)

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        """The running nodes replicating ``primary``."""
        found = []
        for node in self.nodes:
            if node.running and node is not primary:
                with self.client(node.port) as client:
                    info = client.info("replication")
                if info.get("role") == "slave" and int(info.get("master_port", 0)) == primary.port:
                    found.append(node)
        return found

    def kill(self, node: RedisServer) -> None:
        """SIGKILL one node (no shutdown, no failover handshake)."""
        process = node._process
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        node._process = None

    def flush(self) -> None:
        """Empty every primary (the fixture's clean slate; the library never flushes)."""
        for node in self.primaries():
            with self.client(node.port) as client:
                client.flushall()

    def close(self) -> None:
        """Stop every node by pid and remove their directories."""
        for node in self.nodes:
            node.close()


class _Sentinel:
    """One ``redis-server --sentinel`` process with its own config file."""

    def __init__(self, binary: str, master_port: int, password: str | None) -> None:
        self.binary = binary
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="kirocache-sentinel-")
        self.dir = Path(self._dir.name)
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.dir}",
            f"logfile {self.dir / 'sentinel.log'}",
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2",
            f"sentinel down-after-milliseconds {MASTER_NAME} {NODE_TIMEOUT_MS}",
            f"sentinel failover-timeout {MASTER_NAME} 10000",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
        ]
        if password:
            lines += [f"requirepass {password}", f"sentinel sentinel-pass {password}"]
        self.config = self.dir / "sentinel.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.dir / "stderr.log").open("ab") as output:
            self._process = subprocess.Popen(
                [self.binary, str(self.config), "--sentinel"], stdout=output, stderr=output
            )

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._dir.cleanup()


class LocalSentinel:
    """A master, one replica and three sentinels watching it as ``mymaster``.

    Args:
        binary: The redis-server binary.
        password: ``requirepass`` of the sentinels (the data nodes have none).
    """

    def __init__(self, binary: str, password: str | None = SENTINEL_PASSWORD) -> None:
        self.binary = binary
        self.password = password
        self.master = RedisServer(binary)
        self.replica: RedisServer | None = None
        self.sentinels: list[_Sentinel] = []

    @property
    def sentinel_ports(self) -> list[int]:
        """The sentinels' ports."""
        return [sentinel.port for sentinel in self.sentinels]

    @property
    def url(self) -> str:
        """``redis+sentinel://`` naming every sentinel, the master name and the password."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        query = f"?sentinel_password={self.password}" if self.password else ""
        return f"redis+sentinel://{hosts}/{MASTER_NAME}{query}"

    def start(self) -> LocalSentinel:
        """Start the nodes and sentinels; wait until every sentinel knows all of them.

        Returns:
            The deployment, for chaining.
        """
        self.master.start()
        self.replica = RedisServer(
            self.binary, extra_args=["--replicaof", "127.0.0.1", str(self.master.port)]
        ).start()
        for _ in range(3):
            sentinel = _Sentinel(self.binary, self.master.port, self.password)
            self.sentinels.append(sentinel)
            sentinel.start()
        self.wait_ready()
        return self

    def _sentinel_ok(self, port: int) -> bool:
        with redis.Redis(port=port, password=self.password, socket_timeout=1) as client:
            master = client.sentinel_master(MASTER_NAME)
        return (
            int(master.get("num-other-sentinels", 0)) >= 2
            and int(master.get("num-slaves", 0)) >= 1
            and "s_down" not in str(master.get("flags", ""))
        )

    def wait_ready(self) -> float:
        """Wait until every sentinel sees the master, its replica and the other sentinels."""
        return wait_for(
            lambda: all(self._sentinel_ok(port) for port in self.sentinel_ports),
            "the sentinels to agree on the master",
        )

    def master_port(self) -> int:
        """The port the sentinels name as the master now."""
        with redis.Redis(
            port=self.sentinel_ports[0], password=self.password, socket_timeout=1
        ) as client:
            _, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def node(self, port: int) -> RedisServer:
        """The data node on ``port``."""
        return next(n for n in (self.master, self.replica) if n is not None and n.port == port)

    def close(self) -> None:
        """Stop the sentinels and the nodes by pid."""
        for sentinel in self.sentinels:
            sentinel.close()
        for node in (self.replica, self.master):
            if node is not None:
                node.close()


def port_open(port: int) -> bool:
    """Whether something listens on the loopback ``port``."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# ---- pytest fixtures: load with ``pytest_plugins = ["cluster_server"]`` ----------------------


def tools() -> tuple[str, str]:
    """redis-server and redis-cli, or skip (fail under KIROCACHE_REQUIRE_REDIS=1)."""
    server, cli = find_redis_server(), find_redis_cli()
    if server is None or cli is None:
        reason = "redis-server or redis-cli not found (a cluster needs both)"
        if os.environ.get(REQUIRE_REDIS) == "1":
            pytest.fail(f"{reason} ({REQUIRE_REDIS}=1 requires them)", pytrace=False)
        pytest.skip(reason)
    return server, cli


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """The session's 3-primary, 3-replica cluster (started once, stopped by pid)."""
    server, cli = tools()
    cluster = LocalCluster(server, cli)
    try:
        yield cluster.start()
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[LocalSentinel]:
    """The session's master, replica and three sentinels (started once, stopped by pid)."""
    server, _ = tools()
    deployment = LocalSentinel(server)
    try:
        yield deployment.start()
    finally:
        deployment.close()


@pytest.fixture
def fresh_cluster() -> Iterator[LocalCluster]:
    """A cluster of the test's own, which it may break (failover tests)."""
    server, cli = tools()
    cluster = LocalCluster(server, cli)
    try:
        yield cluster.start()
    finally:
        cluster.close()


@pytest.fixture
def fresh_sentinel() -> Iterator[LocalSentinel]:
    """A Sentinel deployment of the test's own, which it may break."""
    server, _ = tools()
    deployment = LocalSentinel(server)
    try:
        yield deployment.start()
    finally:
        deployment.close()
