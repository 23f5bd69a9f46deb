"""A private redis-server for machines that have no Redis running.

When ``REDIS_URL`` is unset and nothing answers at the default address
(``redis://localhost:6379/0``), the worker starts ``redis-server`` (Debian's
``redis-server`` package, found on ``PATH`` or at ``FLEET_REDIS_SERVER_BIN``)
on that address, daemonized, with its data (append-only file), log and pid
file under ``FLEET_DATA_DIR/redis``. It outlives the process on purpose:
standby instances, the supervisor and ``redis-cli`` all share it, and state
survives restarts. Stop it with ``redis-cli -p PORT shutdown``.
"""

from __future__ import annotations

import asyncio
import fcntl
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from redis.asyncio import Redis

from framework.core.errors import RedisUnavailableError
from framework.core.logs import Logger

_START_TIMEOUT_S = 10.0


async def redis_answers(url: str, *, timeout_s: float = 0.5) -> bool:
    client = Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        return bool(await client.ping())
    except Exception:  # refused, timed out, auth required: all mean "not usable"
        return False
    finally:
        await client.aclose()


class EmbeddedRedis:
    def __init__(self, url: str, *, data_dir: Path, binary: str, logger: Logger) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 6379
        self.dir = data_dir / "redis"
        self._binary = binary
        self._log = logger

    async def ensure_running(self) -> str:
        """Start the server unless it (or another) already answers; return its URL."""
        binary = shutil.which(self._binary)
        if binary is None:
            raise RedisUnavailableError(
                f"no Redis answers at {self.url} and {self._binary!r} was not found to start "
                "an embedded one: install it (Debian: apt-get install redis-server) "
                "or set REDIS_URL"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        # Several instances may start at once: one starts the server, the others wait.
        with (self.dir / "start.lock").open("w") as lock:
            await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
            try:
                if not await redis_answers(self.url):
                    await self._start(binary)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return self.url

    async def _start(self, binary: str) -> None:
        log_file = self.dir / "redis.log"
        # Not a pipe: the daemonized server would hold it open and communicate() never end.
        errors = self.dir / "startup-errors.txt"
        with errors.open("wb") as errors_out:
            process = await asyncio.create_subprocess_exec(
                binary,
                "--bind", "127.0.0.1" if self.host == "localhost" else self.host,
                "--port", str(self.port),
                "--dir", str(self.dir),
                "--daemonize", "yes",
                "--pidfile", str(self.dir / "redis.pid"),
                "--logfile", str(log_file),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=errors_out,
            )
            await process.wait()
        if process.returncode != 0:
            raise RedisUnavailableError(
                f"embedded redis-server failed to start (exit {process.returncode}): "
                f"{errors.read_text(errors='replace').strip()} — see {log_file}"
            )
        deadline = asyncio.get_running_loop().time() + _START_TIMEOUT_S
        while not await redis_answers(self.url):
            if asyncio.get_running_loop().time() > deadline:
                raise RedisUnavailableError(
                    f"embedded redis-server did not answer at {self.url} within "
                    f"{_START_TIMEOUT_S:.0f} s — see {log_file}"
                )
            await asyncio.sleep(0.05)
        self._log.info(
            "embedded_redis_started",
            url=self.url,
            data_dir=str(self.dir),
            log_file=str(log_file),
            stop_with=f"redis-cli -p {self.port} shutdown",
        )
