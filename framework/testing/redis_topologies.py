"""Private Redis deployments of several servers, for tests: a Sentinel trio watching a
master and its replicas, and a Redis Cluster of masters. Every server is a real
``redis-server`` on a free loopback port, killed and removed on exit."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from framework.testing.redis_server import RedisServer, free_port

SERVICE_NAME = "fleet-master"
# Sentinels call a master down after this long without an answer (the failover then
# takes about as long again: an election and a promotion).
DOWN_AFTER_MS = 1000
# A cluster node's bus listens on port + 10000, which must stay a valid port.
_MAX_CLUSTER_PORT = 55535


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Poll ``check`` until it holds; RuntimeError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.exceptions.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")


def _in_sync(port: int) -> bool:
    return _info(port, "replication").get("master_link_status") == "up"


def _info(port: int, section: str) -> dict[str, object]:
    with redis.Redis(port=port, socket_timeout=1.0, socket_connect_timeout=0.5) as client:
        return dict(client.info(section))


class _Topology:
    """Started on ``with`` entry (closed again if starting fails), closed on exit."""

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SentinelTrio(_Topology):
    """A master, ``replicas`` replicas and three Sentinels watching them.

    ``url`` is the ``redis+sentinel://`` URL of the trio; ``master()`` the server
    Sentinel names as master now; ``kill_master()`` SIGKILLs it and
    ``wait_for_failover(port)`` waits until another one is promoted."""

    def __init__(self, *, replicas: int = 2, binary: str = "redis-server") -> None:
        self.master_server = RedisServer(binary=binary, extra_args=_REPLICATION_ARGS)
        self.replicas = [
            RedisServer(
                binary=binary,
                extra_args=(
                    *_REPLICATION_ARGS,
                    "--replicaof",
                    "127.0.0.1",
                    str(self.master_server.port),
                ),
            )
            for _ in range(replicas)
        ]
        self.servers = [self.master_server, *self.replicas]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.url = (
            "redis+sentinel://"
            + ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
            + f"/{SERVICE_NAME}"
        )
        self._binary = binary
        self._dir = Path(tempfile.mkdtemp(prefix="connector-fleet-sentinel-"))
        self._sentinels: list[subprocess.Popen[bytes]] = []

    def start(self) -> SentinelTrio:
        for server in self.servers:
            server.start()
        for replica in self.replicas:
            wait_until(partial(_in_sync, replica.port), f"replica {replica.port} in sync")
        for port in self.sentinel_ports:
            self._sentinels.append(self._start_sentinel(port))
        for port in self.sentinel_ports:
            wait_until(partial(self._sentinel_sees_all, port), f"sentinel {port} ready")
        return self

    def _start_sentinel(self, port: int) -> subprocess.Popen[bytes]:
        conf = self._dir / f"sentinel-{port}.conf"  # Sentinel rewrites it: must be writable
        conf.write_text(
            "\n".join(
                [
                    f"port {port}",
                    "bind 127.0.0.1",
                    f"dir {self._dir}",
                    f"logfile {self._dir / f'sentinel-{port}.log'}",
                    f"sentinel monitor {SERVICE_NAME} 127.0.0.1 {self.master_server.port} 2",
                    f"sentinel down-after-milliseconds {SERVICE_NAME} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {SERVICE_NAME} 5000",
                    f"sentinel parallel-syncs {SERVICE_NAME} 1",
                    "",
                ]
            )
        )
        return subprocess.Popen(
            [self._binary, str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _sentinel_sees_all(self, port: int) -> bool:
        with redis.Redis(port=port, socket_timeout=1.0, decode_responses=True) as client:
            state = client.sentinel_master(SERVICE_NAME)
        return (
            int(state["num-slaves"]) == len(self.replicas)
            and int(state["num-other-sentinels"]) == 2
        )

    def master_port(self) -> int:
        """The port of the master the Sentinels name now."""
        with redis.Redis(
            port=self.sentinel_ports[0], socket_timeout=1.0, decode_responses=True
        ) as client:
            _, port = client.sentinel_get_master_addr_by_name(SERVICE_NAME)
        return int(port)

    def master(self) -> RedisServer:
        port = self.master_port()
        return next(server for server in self.servers if server.port == port)

    def kill_master(self) -> int:
        """SIGKILL the current master; its port."""
        server = self.master()
        server.stop()
        return server.port

    def wait_for_failover(self, old_port: int, timeout_s: float = 30.0) -> RedisServer:
        """Wait until the Sentinels name another master and it accepts writes."""
        wait_until(
            lambda: (
                self.master_port() != old_port
                and _info(self.master_port(), "replication").get("role") == "master"
            ),
            "a replica promoted by Sentinel",
            timeout_s,
        )
        return self.master()

    def close(self) -> None:
        for process in self._sentinels:
            if process.poll() is None:
                process.kill()
                process.wait()
        for server in self.servers:
            server.close()
        shutil.rmtree(self._dir, ignore_errors=True)


_REPLICATION_ARGS = ("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")


def _cluster_port() -> int:
    """A free port whose bus port (+10000) is valid and free too."""
    while True:
        port = free_port()
        if port > _MAX_CLUSTER_PORT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisCluster(_Topology):
    """``masters`` cluster masters sharing the 16,384 slots (no replicas); ``url`` is
    the ``redis+cluster://`` URL naming every node."""

    def __init__(self, *, masters: int = 3, binary: str = "redis-server") -> None:
        self.nodes = [
            RedisServer(
                binary=binary,
                port=_cluster_port(),
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                ),
            )
            for _ in range(masters)
        ]
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli not found on PATH: apt-get install redis-tools")
        self._cli = cli

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                self._cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        for node in self.nodes:
            wait_until(partial(self._state_ok, node.port), f"cluster_state:ok on {node.port}")
        return self

    @staticmethod
    def _state_ok(port: int) -> bool:
        with redis.Redis(port=port, socket_timeout=1.0, decode_responses=True) as client:
            return "cluster_state:ok" in str(client.execute_command("CLUSTER", "INFO"))

    def close(self) -> None:
        for node in self.nodes:
            node.close()
