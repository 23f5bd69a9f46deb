"""``connector-fleet consume --processes N``: N consumer processes of one group, each
with its own consumer name (``NAME-1`` ... ``NAME-N``), supervised by this one.

One Python process is bound to one core; the group shares the entries among its
consumers, so N processes take N times the work a single one can (the entries of one
``--order-by`` key are ordered within a consumer only: see docs/consumers.md).

- A child that exits with an error is restarted after a backoff (1 s doubling to
  30 s; reset once it has run 30 s). One that exits 0 (``--burst``: its work is done)
  or 78 (its configuration is invalid: restarting will not fix it) is not.
- SIGTERM/SIGINT: every child gets SIGTERM and drains (``FLEET_DRAIN_TIMEOUT_S``);
  one still running ``KILL_GRACE_S`` after that is killed. A second signal kills them
  at once (exit 3). SIGHUP reaches every child (rules and trusted keys reload).
- Children run in their own sessions (a terminal's Ctrl-C reaches them once, through
  this process) and die with it (PR_SET_PDEATHSIG on Linux). Their logs go to this
  process's stdout/stderr, each line naming its consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from framework.core import Clock, Logger, SystemClock, configure_logging, get_logger
from worker.exit_codes import ExitCode
from worker.runtime import load_settings, run_event_loop

KILL_GRACE_S = 5.0
_STABLE_AFTER_S = 30.0
_NOT_RESTARTED = (ExitCode.OK, ExitCode.CONFIG)
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ProcessesPlan:
    """The children's command lines (one per consumer) and how they are restarted."""

    commands: Sequence[Sequence[str]]
    drain_timeout_s: float
    restart_base_s: float = 1.0
    restart_max_s: float = 30.0


class ConsumerProcesses:
    """Runs the plan's children until they end, or until stopped (``request_stop``)."""

    def __init__(self, plan: ProcessesPlan, *, clock: Clock, logger: Logger) -> None:
        self._plan = plan
        self._clock = clock
        self._log = logger
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()
        self.forced = False

    async def run(self) -> int:
        """Exit 0 once every child ended well (or drained after a stop); else the
        first bad exit code of a child that was not restarted, 3 if forced."""
        codes = await asyncio.gather(
            *(
                self._keep_running(index, command)
                for index, command in enumerate(self._plan.commands)
            )
        )
        if self.forced:
            return ExitCode.FORCED
        return next((code for code in codes if code != ExitCode.OK), ExitCode.OK)

    def request_stop(self) -> None:
        """First call: every child drains. Second: every child is killed now."""
        if self._stopping.is_set():
            self.forced = True
            self._log.warning("consumers_killed", children=len(self._children))
            self._send(signal.SIGKILL)
            return
        self._stopping.set()
        self._log.info(
            "consumers_stopping",
            children=len(self._children),
            drain_timeout_s=self._plan.drain_timeout_s,
        )
        self._send(signal.SIGTERM)

    def forward(self, sig: signal.Signals) -> None:
        self._send(sig)

    def _send(self, sig: signal.Signals) -> None:
        for process in self._children.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)

    async def _keep_running(self, index: int, command: Sequence[str]) -> int:
        backoff_s = self._plan.restart_base_s
        while True:
            started_s = self._clock.monotonic()
            code = await self._run_child(index, command)
            if self._stopping.is_set() and code == -signal.SIGTERM:
                # Our SIGTERM came before it could handle one (still starting): it held
                # no entry yet.
                return ExitCode.OK
            if self._stopping.is_set() or code in _NOT_RESTARTED:
                return code
            if self._clock.monotonic() - started_s >= _STABLE_AFTER_S:
                backoff_s = self._plan.restart_base_s
            self._log.warning(
                "consumer_process_exited", child=index + 1, exit_code=code, restart_in_s=backoff_s
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=backoff_s)
            if self._stopping.is_set():
                return code
            backoff_s = min(self._plan.restart_max_s, backoff_s * 2)

    async def _run_child(self, index: int, command: Sequence[str]) -> int:
        process = await asyncio.create_subprocess_exec(
            *command, start_new_session=True, preexec_fn=_die_with_parent
        )
        self._children[index] = process
        self._log.info("consumer_process_started", child=index + 1, pid=process.pid)
        waiting = asyncio.ensure_future(process.wait())
        stop_requested = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([waiting, stop_requested], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_requested.cancel()
        if not waiting.done():  # stopping: its drain is bounded, then it is killed
            try:
                await asyncio.wait_for(
                    asyncio.shield(waiting), timeout=self._plan.drain_timeout_s + KILL_GRACE_S
                )
            except TimeoutError:
                self._log.warning(
                    "consumer_process_killed",
                    child=index + 1,
                    pid=process.pid,
                    reason="still running after the drain timeout",
                )
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        return await waiting


def run_consume_processes(commands: Sequence[Sequence[str]], *, config_path: str | None) -> int:
    """Run one ``connector-fleet consume`` child per command line, supervised."""
    settings = load_settings(metrics_port=None, config_path=config_path)
    if settings is None:
        return ExitCode.CONFIG
    configure_logging(settings.log_level, settings.log_format)
    plan = ProcessesPlan(commands=commands, drain_timeout_s=settings.drain_timeout_s)
    return run_event_loop(_supervise(plan, get_logger(component="consumer-processes")))


async def _supervise(plan: ProcessesPlan, logger: Logger) -> int:
    processes = ConsumerProcesses(plan, clock=SystemClock(), logger=logger)
    _install_signal_handlers(processes)
    logger.info("consumer_processes_started", processes=len(plan.commands))
    code = await processes.run()
    logger.info("consumer_processes_stopped", exit_code=int(code))
    return code


def _install_signal_handlers(processes: ConsumerProcesses) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, processes.request_stop)
    loop.add_signal_handler(signal.SIGHUP, processes.forward, signal.SIGHUP)


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when this process dies (Linux)."""
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
