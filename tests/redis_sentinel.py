"""A replicated Redis for tests: a primary, a replica and three sentinels, all real processes.

The sentinels declare the primary down after DOWN_AFTER_MS without an answer and then promote
the replica; a killed primary started again rejoins as a replica of the new one.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from scripts.redis_server import RedisServer, find_redis_server, free_port
from tests.conftest import wait_for

MASTER = "lstmgen"  # the name the sentinels monitor the primary by
DOWN_AFTER_MS = 2000
FAILOVER_TIMEOUT_MS = 10_000
QUORUM = 2


@dataclass
class SentinelNode:
    """One `redis-server --sentinel` process, with the config file it rewrites."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self, primary_port: int) -> SentinelNode:
        """Start monitoring the primary on `primary_port`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {self.folder}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        command = [str(find_redis_server()), str(config), "--sentinel", "--loglevel", "warning"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        return self

    def client(self) -> redis.Redis:
        """Return a client of this sentinel."""
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=1.0)

    def stop(self) -> None:
        """Stop the sentinel."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@dataclass
class ReplicatedRedis:
    """A primary, a replica and three sentinels on 127.0.0.1."""

    root: Path
    servers: list[RedisServer] = field(default_factory=list)
    sentinels: list[SentinelNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Return the kombu-style Sentinel URL of database 0."""
        return ";".join(f"sentinel://127.0.0.1:{node.port}/0" for node in self.sentinels)

    def start(self) -> ReplicatedRedis:
        """Start the primary, its replica and the sentinels; return once all see each other."""
        primary = RedisServer(self.root / "node-1").start()
        replica = RedisServer(
            self.root / "node-2", extra_args=["--replicaof", "127.0.0.1", str(primary.port)]
        ).start()
        self.servers = [primary, replica]
        wait_for(lambda: self.replicas_of(primary) == 1, 30, "the replica to sync")
        self.sentinels = [
            SentinelNode(self.root / f"sentinel-{i}").start(primary.port) for i in range(3)
        ]
        wait_for(self._sentinels_agree, 30, "the sentinels to find each other and the replica")
        return self

    def primary(self) -> RedisServer:
        """Return the server the sentinels name as the primary now."""
        port = self._named_primary(self.sentinels[0])
        return next(server for server in self.servers if server.port == port)

    def replicas_of(self, server: RedisServer) -> int:
        """Return how many replicas are connected to a server and in sync."""
        client = redis.Redis(port=server.port, decode_responses=True, socket_timeout=1.0)
        try:
            info = client.info("replication")
        except redis.RedisError:
            return 0
        finally:
            client.close()
        return sum(
            1
            for key, value in info.items()
            if key.startswith("slave") and isinstance(value, dict) and value["state"] == "online"
        )

    def wait_failover(self, old: RedisServer, timeout: float = 60.0) -> tuple[RedisServer, float]:
        """Wait until every sentinel names another primary than `old`, and it accepts writes;
        return it and the monotonic time it was first seen."""

        def moved() -> bool:
            try:
                return all(self._named_primary(node) != old.port for node in self.sentinels)
            except redis.RedisError:
                return False

        wait_for(moved, timeout, "the sentinels to promote the replica")
        seen = time.monotonic()
        new = self.primary()
        client = redis.Redis(port=new.port, decode_responses=True, socket_timeout=1.0)
        try:
            wait_for(lambda: client.info("replication")["role"] == "master", 30, "the promotion")
        finally:
            client.close()
        return new, seen

    def stop(self) -> None:
        """Stop every process."""
        for node in self.sentinels:
            node.stop()
        for server in self.servers:
            server.stop()

    def _named_primary(self, node: SentinelNode) -> int:
        client = node.client()
        try:
            _, port = client.sentinel_get_master_addr_by_name(MASTER)
            return int(port)
        finally:
            client.close()

    def _sentinels_agree(self) -> bool:
        for node in self.sentinels:
            client = node.client()
            try:
                state = client.sentinel_master(MASTER)
            except redis.RedisError:
                return False
            finally:
                client.close()
            if int(state["num-other-sentinels"]) != 2 or int(state["num-slaves"]) != 1:
                return False
        return True
