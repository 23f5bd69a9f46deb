"""A private ``redis-server`` on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``with RedisServer() as server: server.url``; killed and removed on exit.

    ``persistence=True`` turns on the append-only file with fsync on every
    write, for tests that restart the server and expect data to survive.
    """

    def __init__(self, *, binary: str = "redis-server", persistence: bool = False,
                 extra_args: tuple[str, ...] = (), port: int | None = None) -> None:
        found = shutil.which(binary)
        if found is None:
            raise RuntimeError(
                f"{binary} not found on PATH: install it (Debian: apt-get install redis-server)"
            )
        self.binary = found
        self.port = free_port() if port is None else port
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.persistence = persistence
        self.extra_args = extra_args
        self._dir = Path(tempfile.mkdtemp(prefix="connector-fleet-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistence else [
            "--appendonly", "no"]
        self._process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--dir", str(self._dir), "--logfile", str(self._dir / "redis.log"), *aof,
             *self.extra_args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_ready()
        return self

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The server's process id (tests freeze it with SIGSTOP, thaw it with SIGCONT)."""
        if self._process is None:
            raise RuntimeError("the Redis server is not running")
        return self._process.pid

    def _wait_until_ready(self, timeout_s: float = 10.0) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.ConnectionError:
                    if self._process is not None and self._process.poll() is not None:
                        log = (self._dir / "redis.log").read_text(errors="replace")[-2000:]
                        raise RuntimeError(f"redis-server exited: {log}") from None
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not answer on {self.url}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def restart(self) -> None:
        """Kill the server and start it again on the same port and data dir."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
