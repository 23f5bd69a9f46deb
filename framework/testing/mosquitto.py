"""A private Mosquitto broker on a free loopback port, for tests and benchmarks.

Persistent (its database in its own temp dir), so that sessions and the messages
queued for them survive :meth:`MosquittoServer.restart`. Optionally with one user
(``users={"name": "password"}``: anonymous clients are then refused) and a TLS
listener with a self-signed CA made by ``openssl``.
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

from framework.testing.certificates import make_certificates
from framework.testing.processes import terminate
from framework.testing.redis_server import free_port


class MosquittoServer:
    """``with MosquittoServer() as broker: broker.port``; stopped by pid and removed."""

    def __init__(self, *, users: dict[str, str] | None = None, tls: bool = False,
                 max_inflight: int = 20) -> None:
        found = shutil.which("mosquitto") or _sbin("mosquitto")
        if found is None:
            raise RuntimeError(
                "mosquitto not found: install it (Debian: apt-get install mosquitto)")
        self.binary = found
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.users = dict(users or {})
        self.max_inflight = max_inflight
        self.dir = Path(tempfile.mkdtemp(prefix="connector-fleet-mosquitto-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._configured = False

    @property
    def ca_file(self) -> Path:
        """The CA that signed the TLS listener's certificate (``tls=True``)."""
        return self.dir / "ca.crt"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("mosquitto is not running")
        return self._process.pid

    def start(self) -> MosquittoServer:
        if not self._configured:
            self._configure()
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self.dir / "mosquitto.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_until_listening()
        return self

    def _configure(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if self.users else 'true'}",
            "persistence true",
            f"persistence_location {self.dir}/",
            f"log_dest file {self.dir}/mosquitto.log",
            "log_type error",
            "log_type warning",
            "log_type notice",
            f"max_inflight_messages {self.max_inflight}",
            "max_queued_messages 100000",
        ]
        if self.users:
            lines.append(f"password_file {self._write_passwords()}")
        if self.tls_port is not None:
            make_certificates(self.dir)
            lines += [f"listener {self.tls_port} 127.0.0.1",
                      f"cafile {self.ca_file}",
                      f"certfile {self.dir / 'server.crt'}",
                      f"keyfile {self.dir / 'server.key'}"]
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")
        if os.geteuid() == 0:  # as root mosquitto drops to its own user: let it write here
            shutil.chown(self.dir, "mosquitto", "mosquitto")
            for path in self.dir.iterdir():
                shutil.chown(path, "mosquitto", "mosquitto")
        self._configured = True

    def _write_passwords(self) -> Path:
        path = self.dir / "passwords"
        path.touch()
        tool = shutil.which("mosquitto_passwd") or "mosquitto_passwd"
        for user, password in self.users.items():
            subprocess.run([tool, "-b", str(path), user, password], check=True,
                           capture_output=True, timeout=10)
        path.chmod(0o600)
        return path

    def _wait_until_listening(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.log()[-2000:]}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on {self.port}") from None
                time.sleep(0.02)

    def log(self) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its database (sessions, queued messages) and exits."""
        if self._process is not None:
            terminate(self._process)
        self._process = None

    def restart(self) -> None:
        """Stop and start again on the same port and database."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> MosquittoServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _sbin(name: str) -> str | None:
    path = Path("/usr/sbin") / name
    return str(path) if path.exists() else None
