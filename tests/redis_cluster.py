"""A private 3-master Redis Cluster on free loopback ports (no replicas), for tests.

Each node is a ``redis-server --cluster-enabled yes`` in its own temp dir; the slots are
assigned by ``redis-cli --cluster create``. The cluster bus listens on port + 10000, so
ports are picked at most 55535 with both free."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

_MAX_PORT = 55_535


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """``count`` ports whose bus ports (+10000) are free as well."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port <= _MAX_PORT and port not in ports and _free(port + 10_000):
            ports.append(port)
    return ports


def _cluster_ok(info: object) -> bool:
    """CLUSTER INFO says ``cluster_state:ok`` (redis-py parses it into a dict)."""
    if isinstance(info, dict):
        return info.get("cluster_state") == "ok"
    return "cluster_state:ok" in str(info)


class RedisClusterServers:
    """``with RedisClusterServers() as cluster: cluster.url``; killed and removed on exit."""

    def __init__(self, masters: int = 3) -> None:
        for binary in ("redis-server", "redis-cli"):
            if shutil.which(binary) is None:
                raise RuntimeError(
                    f"{binary} not found on PATH: install it "
                    "(Debian: apt-get install redis-server redis-tools)"
                )
        self.ports = cluster_ports(masters)
        self.url = f"redis://127.0.0.1:{self.ports[0]}/0"
        self._dir = Path(tempfile.mkdtemp(prefix="connector-fleet-cluster-"))
        self._processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> RedisClusterServers:
        try:
            for port in self.ports:
                self._start_node(port)
            nodes = [f"127.0.0.1:{port}" for port in self.ports]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *nodes, "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=30,
            )
            self._wait_until_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start_node(self, port: int) -> None:
        node_dir = self._dir / str(port)
        node_dir.mkdir()
        self._processes.append(
            subprocess.Popen(
                [
                    "redis-server",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(node_dir),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--logfile",
                    str(node_dir / "redis.log"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        client = redis.Redis(port=port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster node {port} did not answer") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def _wait_until_ok(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        for port in self.ports:
            client = redis.Redis(port=port, decode_responses=True)
            try:
                while not _cluster_ok(client.execute_command("CLUSTER INFO")):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster node {port} never reached cluster_state:ok")
                    time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        for process in self._processes:
            process.kill()
            process.wait(timeout=10)
        self._processes.clear()
        shutil.rmtree(self._dir, ignore_errors=True)
