"""The supervisor behind ``connector-fleet run-all``: one ``connector-run`` child
process per enabled connector, restarted when it dies.

- A child that exits is restarted after an exponential backoff (1 s doubling
  to 60 s by default: FLEET_RESTART_BASE_S, FLEET_RESTART_MAX_S); the backoff
  resets once a child has run for 30 s. Five failures in a row mark it
  ``crash_loop`` in logs, status and health (it keeps being retried).
- SIGHUP, or a change of the config file on disk (debounced), reconciles:
  new enabled connectors start, disabled or removed ones stop gracefully,
  changed ones get SIGHUP. An invalid configuration is rejected, nothing changes.
- SIGTERM/SIGINT: every child gets SIGTERM and drains; stragglers are killed
  after the drain timeout; exit 0. A second signal kills the children at once.
- Children run in their own sessions (a terminal's Ctrl-C reaches only the
  supervisor, which forwards it once) and die with it (PR_SET_PDEATHSIG), so
  no child outlives the supervisor, even if it is killed with SIGKILL.
- Children's log lines are copied to stdout, each tagged with the connector.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.multiprocess import mark_process_dead

from framework.core import (
    SUPERVISOR_CHILDREN_KEY,
    UNAVAILABLE,
    ConfigError,
    cancel_and_wait,
    iso_utc,
)
from framework.polling import ConnectorConfig, FleetConfig
from worker.exit_codes import ExitCode
from worker.fleet.child import Child, SupervisorMetrics, SupervisorOptions
from worker.runtime import Runtime

STABLE_AFTER_S = 30.0
WATCH_INTERVAL_S = 1.0
WATCH_DEBOUNCE_S = 0.5
# Beyond the children's own drain timeout, before they are killed.
KILL_GRACE_S = 5.0


class Supervisor:
    def __init__(self, runtime: Runtime, metrics: SupervisorMetrics,
                 options: SupervisorOptions) -> None:
        self._redis = runtime.redis
        self._registry = runtime.registry
        self._load_config = runtime.load_config
        self._clock = runtime.clock
        self._log = runtime.logger
        self._secrets = runtime.secrets
        self._drain_timeout_s = runtime.drain_timeout_s
        self._metrics = metrics
        self._options = options
        self._child_env = dict(options.child_env)
        self._output = options.output or sys.stdout.buffer
        self.children: dict[str, Child] = {}
        self.fleet: FleetConfig
        self._stopping = False
        self._forced = False
        self._reload_requested = False
        self._wake = asyncio.Event()

    # -- control (signal handlers) -----------------------------------------------

    def request_stop(self) -> None:
        if self._stopping:
            self._log.warning("stop_forced_killing_children")
            self._forced = True
            self._kill_all()
            return
        self._stopping = True
        self._wake.set()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Read and check the configuration; raises ConfigError."""
        self.fleet = await self._checked(self._load_config())

    async def run(self) -> ExitCode:
        await self._clear_published_status()
        for config in self.fleet.enabled():
            self._start_child(config)
        self._log.info("supervisor_started", connectors=[c.name for c in self.fleet.enabled()])
        watcher = asyncio.create_task(self._watch_config_file())
        try:
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                if self._reload_requested and not self._stopping:
                    self._reload_requested = False
                    await self._reload()
        finally:
            await cancel_and_wait(watcher)
            await self._stop_all()
        self._log.info("supervisor_stopped", forced=self._forced)
        return ExitCode.FORCED if self._forced else ExitCode.OK

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: child.as_json() for name, child in self.children.items()}

    # -- reconciliation --------------------------------------------------------------

    async def _checked(self, fleet: FleetConfig) -> FleetConfig:
        problems = await self._registry.validate(fleet)
        if problems:
            raise ConfigError(f"{fleet.source}: " + "; ".join(problems))
        for name, problem in fleet.broken.items():  # the others run
            self._log.error("connector_config_invalid", connector=name, error=problem)
        return fleet

    async def _reload(self) -> None:
        try:
            fleet = await self._checked(await asyncio.to_thread(self._load_config))
        except ConfigError as exc:
            self._log.error("reload_rejected", reason=str(exc))
            return
        self.fleet = fleet
        wanted = {config.name: config for config in fleet.enabled()}
        for name, child in list(self.children.items()):
            # A running connector whose ${VAR} went missing keeps its config (its reload is
            # rejected); it stops only when disabled or removed.
            if name not in wanted and name not in fleet.broken and child.wanted:
                self._log.info("child_stopping", connector=name, reason="disabled or removed")
                self._stop_child(child)
        for name, config in wanted.items():
            current = self.children.get(name)
            if current is None or not current.wanted:
                self._start_child(config)
            elif config != current.config:
                current.config = config
                self._signal(current, signal.SIGHUP)
                self._log.info("child_reloaded", connector=name)
        self._log.info("config_reloaded", connectors=sorted(wanted))

    def _start_child(self, config: ConnectorConfig) -> None:
        child = Child(config=config)
        previous = self.children.get(config.name)
        if previous is not None:  # still stopping: the new one starts once it is gone
            child.restarts = previous.restarts
        self.children[config.name] = child
        child.task = asyncio.create_task(self._supervise(child, previous))

    def _stop_child(self, child: Child) -> None:
        child.wanted = False
        child.state = "stopping"
        child.wake.set()
        self._signal(child, signal.SIGTERM)

    # -- one child -------------------------------------------------------------------

    async def _supervise(self, child: Child, previous: Child | None) -> None:
        if previous is not None and previous.task is not None:
            await asyncio.shield(previous.task)
        while child.wanted and not self._stopping:
            code = await self._run_once(child)
            if not child.wanted or self._stopping:
                break
            self._schedule_restart(child, code)
            await self._publish(child)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.wake.wait(), child.backoff_s)
            child.wake.clear()
            child.restarts += 1
            self._metrics.restarts.labels(child.name).inc()
        child.state = "stopped"
        await self._publish(child)

    async def _run_once(self, child: Child) -> int:
        child.process = await asyncio.create_subprocess_exec(
            *self._options.command(child.name),
            env=self._child_env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        child.state = "running"
        child.started_at_s = self._clock.monotonic()
        self._metrics.up.labels(child.name).set(1)
        self._log.info("child_started", connector=child.name, pid=child.process.pid)
        await self._publish(child)
        assert child.process.stdout is not None
        await self._pump_output(child.name, child.process.stdout)
        code = await child.process.wait()
        self._metrics.up.labels(child.name).set(0)
        if self._options.prometheus_dir is not None:
            # prometheus_client ships no annotations for this function.
            mark_process_dead(  # type: ignore[no-untyped-call]
                child.process.pid, str(self._options.prometheus_dir)
            )
        child.last_exit_code = code
        return code

    def _schedule_restart(self, child: Child, code: int) -> None:
        ran_s = self._clock.monotonic() - child.started_at_s
        if ran_s >= STABLE_AFTER_S:
            child.failures = 0
        if code != 0:
            child.failures += 1
        child.backoff_s = min(
            self._options.restart_max_s,
            self._options.restart_base_s * 2 ** max(0, child.failures - 1),
        )
        child.state = "backoff"
        level = self._log.error if child.crash_looping else self._log.warning
        level(
            "child_crash_looping" if child.crash_looping else "child_exited",
            connector=child.name, exit_code=code, ran_s=round(ran_s, 1),
            consecutive_failures=child.failures, restart_in_s=child.backoff_s,
        )

    async def _pump_output(self, name: str, stream: asyncio.StreamReader) -> None:
        """Copy the child's lines to our stdout as JSON, tagged with the connector."""
        while line := await stream.readline():
            # A child redacts its own log lines; not what it prints before logging starts.
            tagged = self._secrets.redact_text(_tagged(name, line).decode())
            self._output.write(tagged.encode())
            self._output.flush()

    # -- stopping ----------------------------------------------------------------------

    async def _stop_all(self) -> None:
        for child in self.children.values():
            if child.wanted:
                self._stop_child(child)
        tasks = [c.task for c in self.children.values() if c.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self._drain_timeout_s + KILL_GRACE_S)
        if pending:
            self._log.warning("children_killed_after_drain_timeout",
                              connectors=[c.name for c in self.children.values()
                                          if c.task in pending])
            self._kill_all()
            await asyncio.wait(pending)

    def _kill_all(self) -> None:
        for child in self.children.values():
            child.wanted = False
            child.wake.set()
            self._signal(child, signal.SIGKILL)

    def _signal(self, child: Child, sig: signal.Signals) -> None:
        if child.process is not None and child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(sig)

    # -- config file watching -------------------------------------------------------------

    async def _watch_config_file(self) -> None:
        """Reload when the file's content changes (a ConfigMap update swaps a symlink,
        so content, not mtime, is what is compared) and stays stable for a moment."""
        if self._options.config_path is None:
            return
        seen = await asyncio.to_thread(_digest, self._options.config_path)
        while True:
            await self._clock.sleep(WATCH_INTERVAL_S)
            current = await asyncio.to_thread(_digest, self._options.config_path)
            if current == seen:
                continue
            await self._clock.sleep(WATCH_DEBOUNCE_S)
            if await asyncio.to_thread(_digest, self._options.config_path) != current:
                continue  # still being written: look again at the next tick
            seen = current
            self._log.info("config_file_changed", path=str(self._options.config_path))
            self.request_reload()

    # -- status in Redis ---------------------------------------------------------------------

    async def _publish(self, child: Child) -> None:
        """Best effort: `connector-fleet status` shows what we write here."""
        record = child.as_json() | {"updatedAt": iso_utc(self._clock.time())}
        try:
            await self._redis.hset(SUPERVISOR_CHILDREN_KEY, child.name, orjson.dumps(record))
        except UNAVAILABLE as exc:
            self._log.warning("status_publish_failed", error=str(exc))

    async def _clear_published_status(self) -> None:
        with contextlib.suppress(*UNAVAILABLE):
            await self._redis.delete(SUPERVISOR_CHILDREN_KEY)


def _tagged(name: str, line: bytes) -> bytes:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        event = None
    if not isinstance(event, dict):
        event = {"event": "child_output", "line": line.decode(errors="replace").rstrip()}
    event.setdefault("connector", name)
    return orjson.dumps(event) + b"\n"


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the supervisor dies (Linux)."""
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
