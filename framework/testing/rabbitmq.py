"""A private RabbitMQ node on free loopback ports, for tests and benchmarks.

Its own Erlang port mapper (``epmd``) on a free port, its own cookie (``HOME``), its
own config, database and logs in a temp dir: the machine's RabbitMQ service (5672,
25672, epmd 4369) is never touched. Starting takes ~10 s: share one per session.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from framework.testing.certificates import make_certificates
from framework.testing.redis_server import free_port

_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
_CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
_START_TIMEOUT_S = 90


class RabbitMqServer:
    """``with RabbitMqServer() as node: node.url``; stopped by pid, dir removed."""

    def __init__(self, *, tls: bool = False) -> None:
        if not _SERVER.exists() or _epmd_path() is None:
            raise RuntimeError(
                "rabbitmq-server not found: install it (Debian: apt-get install rabbitmq-server)")
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.tls_port = free_port() if tls else None
        self.node = f"rabbit-test-{self.port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.dir = Path(tempfile.mkdtemp(prefix="connector-fleet-rabbitmq-"))
        self._epmd: subprocess.Popen[bytes] | None = None
        self._server: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> Path:
        """The CA that signed the TLS listener's certificate (``tls=True``)."""
        return self.dir / "ca.crt"

    @property
    def env(self) -> dict[str, str]:
        d = self.dir
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(d),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "pid"),
        }

    def start(self) -> RabbitMqServer:
        d = self.dir
        config = f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users = none\n"
        if self.tls_port is not None:
            if not self.ca_file.exists():
                make_certificates(d)
            config += (f"listeners.ssl.1 = 127.0.0.1:{self.tls_port}\n"
                       f"ssl_options.cacertfile = {d / 'ca.crt'}\n"
                       f"ssl_options.certfile = {d / 'server.crt'}\n"
                       f"ssl_options.keyfile = {d / 'server.key'}\n"
                       "ssl_options.verify = verify_none\n"
                       "ssl_options.fail_if_no_peer_cert = false\n")
        (d / "rabbitmq.conf").write_text(config)
        (d / "env.conf").write_text("")
        (d / "enabled_plugins").write_text("[].\n")
        if self._epmd is None:
            self._epmd = subprocess.Popen(
                [_epmd_path() or "epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._server = subprocess.Popen([str(_SERVER)], env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        self._await_startup()
        return self

    def _await_startup(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            result = self.ctl("await_startup", "--timeout", "5", check=False)
            if result.returncode == 0:
                return
            if self._server is not None and self._server.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"rabbitmq-server not up in {_START_TIMEOUT_S} s: "
                                   f"{self.log_tail()}")
            time.sleep(0.5)

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl -n NODE ARGS`` against this node."""
        return subprocess.run([str(_CTL), "-n", self.node, *args], env=self.env, text=True,
                              capture_output=True, timeout=60, check=check)

    def log_tail(self) -> str:
        logs = sorted((self.dir / "log").glob("*.log")) if (self.dir / "log").exists() else []
        return "\n".join(p.read_text(errors="replace")[-1500:] for p in logs)

    def stop(self) -> None:
        """Stop the node (its durable queues and persistent messages are kept)."""
        server, self._server = self._server, None
        if server is None or server.poll() is not None:
            return
        self.ctl("stop", check=False)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._epmd is not None:
            self._epmd.terminate()
            self._epmd.wait()
            self._epmd = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RabbitMqServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _epmd_path() -> str | None:
    found = shutil.which("epmd")
    if found is not None:
        return found
    bundled = sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))
    return str(bundled[-1]) if bundled else None
