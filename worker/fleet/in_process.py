"""``connector-fleet run-all --in-process``: every enabled connector as an asyncio
task of one process, each still with its own lease, state and schedule.

The same :class:`~worker.connector.ConnectorWorker` as ``connector-run`` runs each
connector; they share one Redis connection pool and one Prometheus registry. The
pool is sized from the fleet (``pool_size_for``: 4 per enabled connector + 16) and
grows on reload: with redis-py's default of 100, 200 connectors were refused
connections ("Too many connections") and lost their leases while Redis was healthy.
Every lease is renewed on a thread of its own (:class:`LeaseRenewals`), so a loop
too busy to start polls on time still renews them before their TTL runs out.
One process costs about one connector's memory instead of one per connector
(measured by ``connector-fleet bench fleet``), at the price of isolation: a connector that
blocks the event loop or exhausts memory affects the others.

SIGHUP reaches every worker (each reloads, and stops itself if disabled or
removed) and starts the connectors that became enabled. SIGTERM drains all.
A worker that crashes is logged and restarted after a backoff.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from framework.core import ConfigError, grow_pool, pool_size_for
from framework.polling import FleetConfig, PrometheusMetrics
from worker.connector import ConnectorWorker
from worker.exit_codes import ExitCode
from worker.fleet.lease_renewals import LeaseRenewals
from worker.runtime import Runtime

_RESTART_DELAY_S = 1.0


class InProcessFleet:
    def __init__(self, runtime: Runtime, metrics: PrometheusMetrics) -> None:
        self._runtime = runtime
        self._registry = runtime.registry
        self._load_config = runtime.load_config
        self._clock = runtime.clock
        self._log = runtime.logger
        self._metrics = metrics
        self.fleet: FleetConfig
        self.workers: dict[str, ConnectorWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._done = asyncio.Event()
        # Every lease renewed on one thread: a busy event loop cannot let them expire.
        self._renewals = LeaseRenewals(runtime.redis_url, clock=runtime.clock,
                                       logger=runtime.logger)

    async def start(self) -> None:
        """Read and check the configuration; raises ConfigError."""
        self.fleet = self._load_config()
        problems = self._registry.check(self.fleet)
        if problems:
            raise ConfigError("; ".join(problems))
        self._report_broken(self.fleet)
        self._size_redis_pool()

    async def run(self) -> ExitCode:
        # Spread the first polls over each connector's interval: started together,
        # they would otherwise all poll in the same instant on this one event loop.
        enabled = self.fleet.enabled()
        self._renewals.start()
        try:
            for index, config in enumerate(enabled):
                self._launch(config.name, index / len(enabled) * config.poll_interval_ms / 1000)
            self._log.info("fleet_started", connectors=sorted(self._tasks), mode="in-process")
            await self._done.wait()
        finally:
            await asyncio.to_thread(self._renewals.close)
        return ExitCode.OK

    def request_stop(self) -> None:
        self._stopping = True
        for worker in self.workers.values():
            worker.request_stop()
        if not self._tasks:
            self._done.set()

    def request_reload(self) -> None:
        try:
            fleet = self._load_config()
        except ConfigError as exc:
            self._log.error("reload_rejected", reason=str(exc))
            return
        self.fleet = fleet
        self._report_broken(fleet)
        self._size_redis_pool()
        for worker in self.workers.values():
            worker.request_reload()
        for config in fleet.enabled():
            if config.name not in self._tasks:
                self._launch(config.name)

    def _report_broken(self, fleet: FleetConfig) -> None:
        for name, problem in fleet.broken.items():  # the others run
            self._log.error("connector_config_invalid", connector=name, error=problem)

    def _size_redis_pool(self) -> None:
        """Enough connections for every enabled connector's poll, lease renewal and
        metrics at once, so that a renewal is never refused behind the polls."""
        enabled = len(self.fleet.enabled())
        size = grow_pool(self._runtime.redis, pool_size_for(enabled))
        self._log.info("redis_pool_sized", max_connections=size, connectors=enabled)

    def health(self) -> tuple[bool, dict[str, Any]]:
        details = {name: worker.health()[1] for name, worker in self.workers.items()}
        healthy = all(worker.health()[0] for worker in self.workers.values())
        return healthy, {"role": "fleet", "mode": "in-process", "connectors": details}

    def _launch(self, name: str, first_poll_delay_s: float = 0.0) -> None:
        self._tasks[name] = asyncio.create_task(
            self._keep_running(name, first_poll_delay_s), name=f"fleet:{name}"
        )

    async def _keep_running(self, name: str, first_poll_delay_s: float) -> None:
        log = self._log.bind(connector=name)
        try:
            while not self._stopping:
                worker = ConnectorWorker(name, replace(self._runtime, logger=log), self._metrics,
                                         first_poll_delay_s=first_poll_delay_s,
                                         renewer=self._renewals)
                try:
                    await worker.start()
                except ConfigError as exc:
                    log.error("config_invalid", error=str(exc))
                    return
                self.workers[name] = worker
                try:
                    await worker.run()
                    return  # stopped or disabled
                except Exception as exc:  # one connector's crash must not stop the others
                    log.error("worker_crashed", error=f"{type(exc).__name__}: {exc}",
                              exc_info=exc, restart_in_s=_RESTART_DELAY_S)
                    await self._clock.sleep(_RESTART_DELAY_S)
        finally:
            self.workers.pop(name, None)
            self._tasks.pop(name, None)
            if self._stopping and not self._tasks:
                self._done.set()
