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
    """``masters`` cluster masters sharing the 16,384 slots, each with ``replicas``
    replicas; ``url`` is the ``redis+cluster://`` URL naming every master.
    ``master_of(key)`` is the server owning the key's slot now; ``kill(server)`` and
    ``wait_for_takeover(port)`` let a replica take over from a killed master."""

    def __init__(self, *, masters: int = 3, replicas: int = 0,
                 binary: str = "redis-server") -> None:
        self.replicas_per_master = replicas
        self.servers = [
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
                    *_REPLICATION_ARGS,
                ),
            )
            for _ in range(masters * (1 + replicas))
        ]
        # redis-cli makes the first ``masters`` addresses the masters.
        self.nodes = self.servers[:masters]
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli not found on PATH: apt-get install redis-tools")
        self._cli = cli

    def start(self) -> RedisCluster:
        for server in self.servers:
            server.start()
        subprocess.run(
            [
                self._cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.servers),
                "--cluster-replicas",
                str(self.replicas_per_master),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        for server in self.servers:
            wait_until(partial(self._state_ok, server.port), f"cluster_state:ok on {server.port}")
        for server in self.servers[len(self.nodes):]:
            wait_until(partial(_in_sync, server.port), f"replica {server.port} in sync")
        return self

    def cli(self, *args: str, timeout_s: float = 60.0) -> str:
        """``redis-cli ARGS`` (e.g. ``--cluster reshard ...``); its output."""
        done = subprocess.run([self._cli, *args], check=True, capture_output=True,
                              timeout=timeout_s, text=True)
        return done.stdout

    def master_of(self, key: str) -> RedisServer:
        """The live server that owns ``key``'s slot now."""
        for server in self.servers:
            if not server.running:
                continue
            try:
                with redis.Redis(port=server.port, socket_timeout=1.0,
                                 decode_responses=True) as client:
                    slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                    for first, last, owner, *_ in client.execute_command("CLUSTER", "SLOTS"):
                        if int(first) <= slot <= int(last):
                            port = int(owner[1])
                            return next(s for s in self.servers if s.port == port)
            except (redis.exceptions.RedisError, OSError):
                continue
        raise RuntimeError(f"no live node answers for the slot of {key!r}")

    def move_slot_of(self, key: str, to: RedisServer, *, batch: int = 10,
                     between: Callable[[], None] | None = None) -> None:
        """Reshard: move ``key``'s slot to master ``to`` as redis-cli --cluster reshard
        does (IMPORTING/MIGRATING, MIGRATE its keys ``batch`` at a time, calling
        ``between`` after each batch, then SETSLOT NODE on every master)."""
        source = self.master_of(key)
        with redis.Redis(port=source.port, decode_responses=True) as src, redis.Redis(
                port=to.port, decode_responses=True) as dst:
            slot = int(src.execute_command("CLUSTER", "KEYSLOT", key))
            src_id = str(src.execute_command("CLUSTER", "MYID"))
            dst_id = str(dst.execute_command("CLUSTER", "MYID"))
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch):
                src.execute_command("MIGRATE", "127.0.0.1", to.port, "", 0, 5000,
                                    "KEYS", *keys)
                if between is not None:
                    between()
            for master in (to, source, *[s for s in self.servers if s not in (to, source)]):
                if not master.running:
                    continue
                with redis.Redis(port=master.port) as client:
                    role = client.execute_command("ROLE")[0]
                    if role in (b"master", "master"):
                        client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)

    def wait_for_takeover(self, old_port: int, key: str, timeout_s: float = 30.0) -> RedisServer:
        """Wait until a replica owns ``key``'s slot instead of ``old_port`` and every
        live node says cluster_state:ok."""
        wait_until(
            lambda: self.master_of(key).port != old_port and all(
                self._state_ok(s.port) for s in self.servers if s.running),
            f"a replica taking over from {old_port}", timeout_s)
        return self.master_of(key)

    @staticmethod
    def _state_ok(port: int) -> bool:
        with redis.Redis(port=port, socket_timeout=1.0, decode_responses=True) as client:
            return "cluster_state:ok" in str(client.execute_command("CLUSTER", "INFO"))

    def close(self) -> None:
        for server in self.servers:
            server.close()
