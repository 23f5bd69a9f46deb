"""A private PostgreSQL cluster with logical decoding, on a free loopback port.

``initdb`` in its own temp dir (as the ``postgres`` user when run as root: the
server refuses to run as root), ``wal_level=logical``, trust authentication for
``postgres`` and a password user ``fleet`` (so that tests see a password that
must never be printed). The postmaster itself is the process the fixture holds:
:meth:`stop` is a fast shutdown (SIGINT), :meth:`kill` a SIGKILL, :meth:`start`
comes back on the same port and data.
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
from typing import Any

from framework.testing.redis_server import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PostgresServer:
    """``with PostgresServer() as pg: pg.url``; stopped by pid and removed."""

    user = "fleet"
    password = "pg-secret-Xq81"

    def __init__(self, *, wal_level: str = "logical") -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"{PG_BIN}/initdb not found: install PostgreSQL 15 "
                               "(Debian: apt-get install postgresql)")
        self.port = free_port()
        self.wal_level = wal_level
        self.dir = Path(tempfile.mkdtemp(prefix="connector-fleet-pg-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {"user": "postgres", "group": "postgres"} if (
            os.geteuid() == 0) else {}

    @property
    def url(self) -> str:
        return (f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/fleet")

    def _initdb(self) -> None:
        if self._as:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run([str(PG_BIN / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres",
                        "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
                       check=True, capture_output=True, timeout=120, **self._as)
        with (self.dir / "data" / "pg_hba.conf").open("w") as hba:
            hba.write("host all postgres 127.0.0.1/32 trust\n"
                      "host all all 127.0.0.1/32 scram-sha-256\n"
                      "local all all trust\n")

    def start(self) -> PostgresServer:
        if not (self.dir / "data").exists():
            self._initdb()
            self._launch()
            self._setup()
        else:
            self._launch()
        return self

    def _launch(self) -> None:
        log = (self.dir / "log").open("ab")
        self._process = subprocess.Popen(
            [str(PG_BIN / "postgres"), "-D", str(self.dir / "data"), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
             "-c", f"wal_level={self.wal_level}", "-c", "max_replication_slots=32",
             "-c", "max_wal_senders=8", "-c", "fsync=off", "-c", "max_connections=50"],
            stdout=log, stderr=subprocess.STDOUT, **self._as)
        log.close()
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            done = subprocess.run(
                [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True, timeout=10)
            if done.returncode == 0:
                return
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready on {self.port}: {self.log()[-2000:]}")
            time.sleep(0.05)

    def _setup(self) -> None:
        self.psql("postgres", f"CREATE ROLE {self.user} LOGIN REPLICATION SUPERUSER "
                              f"PASSWORD '{self.password}'")
        self.psql("postgres", f"CREATE DATABASE fleet OWNER {self.user}")

    def psql(self, database: str, command: str) -> str:
        """Run SQL as ``postgres`` (over the private socket); its output."""
        done = subprocess.run(
            [str(PG_BIN / "psql"), "-h", str(self.dir), "-p", str(self.port), "-U", "postgres",
             "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", command],
            capture_output=True, timeout=60, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def log(self) -> str:
        path = self.dir / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Fast shutdown: clients are disconnected, the data is kept."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
