"""A private asyncua OPC-UA server on a free loopback port, in its own process, for
tests and benchmarks (its address space: :mod:`framework.testing.opcua_server`).

Its own process, so that a test can stop, restart (same port, same saved tick) or
``kill -9`` it like a real device, and so that its work does not share the test's
event loop. Ready in about 2 s (asyncua builds the standard address space).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from framework.testing.processes import terminate
from framework.testing.redis_server import free_port

# The namespace index of the test nodes: ``ns=2;s=Temperature``.
TEST_NAMESPACE_INDEX = 2


def opcua_node_id(name: str) -> str:
    """The node id string of a test node (``Temperature`` -> ``ns=2;s=Temperature``)."""
    return f"ns={TEST_NAMESPACE_INDEX};s={name}"


node_id = opcua_node_id  # the short name, within this module's users


class OpcUaServer:
    """``with OpcUaServer() as server: server.endpoint``; stopped by pid, dir removed."""

    def __init__(self, *, user: str | None = None, password: str | None = None,
                 secure: bool = False, tick_ms: float = 0, tick_nodes: int = 1) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="connector-fleet-opcua-"))
        self.user, self.password = user, password
        self.secure = secure
        self.tick_ms, self.tick_nodes = tick_ms, tick_nodes
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/fleet"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the OPC-UA server is not running")
        return self._process.pid

    def start(self, timeout_s: float = 30.0) -> OpcUaServer:
        argv = [sys.executable, "-m", "framework.testing.opcua_server", "--port", str(self.port),
                "--dir", str(self.dir), "--tick-ms", str(self.tick_ms),
                "--tick-nodes", str(self.tick_nodes)]
        env = dict(os.environ)
        if self.user:
            argv += ["--user", self.user]
            env["OPCUA_TEST_PASSWORD"] = self.password or ""
        if self.secure:
            argv.append("--secure")
        with (self.dir / "server.log").open("ab") as log:
            self._process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=log)
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        deadline = time.monotonic() + timeout_s
        os.set_blocking(process.stdout.fileno(), False)
        seen = b""
        while b"READY" not in seen:
            chunk = process.stdout.read() or b""
            seen += chunk
            if process.poll() is not None:
                raise RuntimeError(f"the OPC-UA server exited: {self.log()[-3000:]}")
            if time.monotonic() > deadline:
                terminate(process)
                raise RuntimeError(f"the OPC-UA server was not ready within {timeout_s} s")
            if not chunk:
                time.sleep(0.02)

    def log(self) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def client_certificate(self) -> Path:
        """``secure=True``: the client certificate the server trusts (DER), its key and
        the server's certificate."""
        return self.dir / "client.der"

    @property
    def client_key(self) -> Path:
        return self.dir / "client.key.pem"

    @property
    def server_certificate(self) -> Path:
        return self.dir / "server.der"

    def stop(self) -> None:
        if self._process is not None:
            terminate(self._process)
            self._close_pipe()
        self._process = None

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing its sessions."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()
            self._close_pipe()
        self._process = None

    def _close_pipe(self) -> None:
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()

    def restart(self) -> None:
        """Stop and start again on the same port (the tick count is kept)."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> OpcUaServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
