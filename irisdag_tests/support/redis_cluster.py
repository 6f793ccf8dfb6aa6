"""A throwaway Redis Cluster for tests: 3 masters + 3 replicas on loopback.

Each node is a ``RedisServer`` (Debian's redis-server 7.0) on a free
127.0.0.1 port with its own temp folder, its own cluster bus port (chosen
free too, ``--cluster-port``) and ``nodes.conf``; ``redis-cli --cluster
create ... --cluster-replicas 1 --cluster-yes`` joins them. ``start()``
returns once every node reports ``cluster_state:ok`` with all 16384 slots
covered and every replica's link to its master is up.

Faults: ``kill(node)`` is SIGKILL to that node's own pid; ``wait_for_failover``
waits until the survivors agree the cluster is whole again and returns how
long that took; ``restart(node)`` brings a killed node back on its port and
folder (it rejoins, as a replica of whoever took over). ``stop()`` stops only
the processes this object started and removes their folders.

    with RedisTestCluster() as cluster:
        rc = cluster.cluster_client()          # redis-py RedisCluster
        victim = cluster.masters()[0]
        cluster.kill(victim)
        seconds = cluster.wait_for_failover(victim)
"""
from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Sequence

import redis
from redis.cluster import ClusterNode as _PyClusterNode
from redis.cluster import RedisCluster

from irisdag_tests.support.redis_server import RedisServer, free_port

SLOTS = 16384
DEFAULT_NODE_TIMEOUT_MS = 1500


@dataclass(frozen=True)
class NodeView:
    """One line of CLUSTER NODES as one node sees it."""

    node_id: str
    port: int
    flags: frozenset
    master_id: str  # "-" for a master
    slots: int  # how many slots this node serves (masters)

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags or "fail?" in self.flags or "noaddr" in self.flags


def parse_cluster_nodes(text: str) -> list[NodeView]:
    """Parse CLUSTER NODES output (one node per line)."""
    views = []
    for line in text.strip().splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split("@")[0]
        port = int(address.rsplit(":", 1)[1]) if ":" in address and address.rsplit(":", 1)[1] else 0
        slots = 0
        for item in parts[8:]:
            if item.startswith("["):
                continue  # a slot being migrated or imported
            lo, _, hi = item.partition("-")
            slots += (int(hi) if hi else int(lo)) - int(lo) + 1
        views.append(NodeView(parts[0], port, frozenset(parts[2].split(",")), parts[3], slots))
    return views


class RedisTestCluster:
    """A Redis Cluster of ``masters`` masters with ``replicas`` replicas each, on 127.0.0.1.

    ``nodes`` are ``RedisServer`` objects (``.port``, ``.url``, ``.pid``,
    ``.client()``). ``password`` sets ``requirepass`` and ``masterauth`` on
    every node (URLs carry it); ``extra_args`` go to every node (e.g.
    ``["--aclfile", path]``); ``username``: ``password`` is that ACL user's
    (replicas authenticate as it, ``masteruser``; the helpers connect as it).
    """

    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS,
                 password: str | None = None, username: str | None = None, extra_args: Sequence[str] = (), start_timeout: float = 60.0):
        if masters < 3:
            raise ValueError(f"a Redis Cluster needs at least 3 masters, got {masters}")
        self.n_masters = masters
        self.n_replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.password = password
        self.username = username
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.nodes: list[RedisServer] = []

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> "RedisTestCluster":
        try:
            for _ in range(self.n_masters * (1 + self.n_replicas)):
                self.nodes.append(self._node().start())
            self._create()
            self.wait_ok(self.nodes, timeout=self.start_timeout, replicas_linked=True)
        except BaseException:
            self.stop()
            raise
        return self

    def _node(self) -> RedisServer:
        args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms), "--cluster-port", str(free_port())]
        if self.password:
            args += ["--masterauth", self.password]
        if self.username:
            args += ["--masteruser", self.username]
        return RedisServer(extra_args=[*args, *self.extra_args], password=self.password, username=self.username)

    def _create(self) -> None:
        cmd = ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes],
               "--cluster-replicas", str(self.n_replicas), "--cluster-yes"]
        if self.password:
            cmd[1:1] = ["--no-auth-warning", "-a", self.password, *(["--user", self.username] if self.username else [])]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=self.start_timeout,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0 or "[OK] All 16384 slots covered" not in done.stdout:
            raise RuntimeError(f"redis-cli --cluster create failed (exit {done.returncode}):\n"
                               f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    def stop(self) -> None:
        """Stop every node this object started (by pid) and remove their folders."""
        for node in self.nodes:
            node.stop(timeout=10)
        for node in self.nodes:
            shutil.rmtree(node.dir, ignore_errors=True)

    def __enter__(self) -> "RedisTestCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------------
    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        """The URL of one live node (what a user would put in REDIS_URL)."""
        return self.live_nodes()[0].url

    def live_nodes(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.running]

    def node_by_port(self, port: int) -> RedisServer:
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(f"no node of this cluster on port {port}")

    def cluster_client(self, **kwargs) -> RedisCluster:
        """A redis-py RedisCluster client seeded with every live node."""
        kwargs.setdefault("password", self.password)
        kwargs.setdefault("username", self.username)
        kwargs.setdefault("socket_timeout", 10)
        return RedisCluster(startup_nodes=[_PyClusterNode("127.0.0.1", n.port) for n in self.live_nodes()],
                            **kwargs)

    # -- topology -----------------------------------------------------------------------------
    def view(self, node: RedisServer | None = None) -> list[NodeView]:
        """CLUSTER NODES as seen by ``node`` (default: the first live node)."""
        node = node or self.live_nodes()[0]
        client = node.client(socket_timeout=5, decode_responses=True)
        try:
            return parse_cluster_nodes(client.execute_command("CLUSTER", "NODES"))
        finally:
            client.close()

    def masters(self) -> list[RedisServer]:
        """Live nodes that serve slots as masters right now (as the first live node sees it)."""
        return [self.node_by_port(v.port) for v in self.view()
                if v.is_master and not v.failed and v.slots and self.node_by_port(v.port).running]

    def replicas(self) -> list[RedisServer]:
        """Live nodes that are replicas right now."""
        return [self.node_by_port(v.port) for v in self.view()
                if "slave" in v.flags and not v.failed and self.node_by_port(v.port).running]

    def replica_of(self, master: RedisServer) -> RedisServer:
        """A live replica of ``master``."""
        views = self.view()
        master_id = next(v.node_id for v in views if v.port == master.port)
        for v in views:
            if v.master_id == master_id and not v.failed and self.node_by_port(v.port).running:
                return self.node_by_port(v.port)
        raise LookupError(f"no live replica of the master on port {master.port}")

    def master_for_key(self, key: str) -> RedisServer:
        """The live master serving ``key``'s slot."""
        client = self.live_nodes()[0].client(socket_timeout=5)
        try:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for lo, hi, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if lo <= slot <= hi:
                    return self.node_by_port(int(primary[1]))
        finally:
            client.close()
        raise LookupError(f"no master serves slot {slot}")

    # -- faults -------------------------------------------------------------------------------
    def kill(self, node: RedisServer) -> None:
        """SIGKILL one node (by the pid this object started)."""
        if node not in self.nodes:
            raise ValueError(f"port {node.port} is not a node of this cluster")
        node.kill()

    def restart(self, node: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Start a stopped or killed node again on its port and folder and wait until it has rejoined."""
        node.start()
        self.wait_ok(self.live_nodes(), timeout=timeout, back=node)
        return node

    def wait_for_failover(self, killed: RedisServer, timeout: float = 30.0) -> float:
        """Wait until the survivors flag ``killed`` as failed and every slot is served again.

        Returns the seconds waited. Raises TimeoutError with the last view.
        """
        started = time.monotonic()
        self.wait_ok(self.live_nodes(), timeout=timeout, gone=killed)
        return time.monotonic() - started

    def wait_ok(self, nodes: Sequence[RedisServer], timeout: float = 30.0, gone: RedisServer | None = None,
                replicas_linked: bool = False, back: RedisServer | None = None) -> None:
        """Wait until each of ``nodes`` reports cluster_state:ok, all slots ok, and agrees who serves them.

        ``gone``: every node also sees that node as failed and serving no slot.
        ``back``: every node also sees that node alive again, serving slots or replicating
        (a master that lost its slots while down comes back as a replica).
        """
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            try:
                problem = self._problem(nodes, gone, replicas_linked, back)
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is None:
                return
            last = problem
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not whole after {timeout:.0f}s: {last}")
            time.sleep(0.05)

    def _problem(self, nodes, gone, replicas_linked, back) -> str | None:
        for node in nodes:
            client = node.client(socket_timeout=2, socket_connect_timeout=1, decode_responses=True)
            try:
                info = dict(line.split(":", 1) for line in
                            client.execute_command("CLUSTER", "INFO").splitlines() if ":" in line)
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                    return f"port {node.port}: state {info.get('cluster_state')}, slots_ok {info.get('cluster_slots_ok')}"
                views = parse_cluster_nodes(client.execute_command("CLUSTER", "NODES"))
                served = sum(v.slots for v in views if v.is_master and not v.failed)
                if served != SLOTS:
                    return f"port {node.port}: live masters serve {served} slots"
                if gone is not None:
                    seen = [v for v in views if v.port == gone.port]
                    if seen and not ("fail" in seen[0].flags and not seen[0].slots):
                        return f"port {node.port}: sees port {gone.port} as {','.join(sorted(seen[0].flags))}"
                if back is not None:
                    seen = [v for v in views if v.port == back.port]
                    if not seen or seen[0].failed or (seen[0].is_master and not seen[0].slots):
                        return f"port {node.port}: does not see port {back.port} back (as a replica) yet"
                if replicas_linked and "slave" in {f for v in views if v.port == node.port for f in v.flags}:
                    repl = client.info("replication")
                    if repl.get("master_link_status") != "up":
                        return f"port {node.port}: replica link {repl.get('master_link_status')}"
            finally:
                client.close()
        return None

    def flushall(self) -> None:
        """FLUSHALL on every live master of this cluster (only servers this object started)."""
        for node in self.masters():
            client = node.client(socket_timeout=10)
            try:
                client.flushall()
            finally:
                client.close()
