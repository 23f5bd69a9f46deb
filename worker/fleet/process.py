"""``connector-fleet run-all``: the supervisor of one child process per connector, or
(``--in-process``) every connector as a task of this process."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client.multiprocess import MultiProcessCollector

from framework.core import KnownSecrets, Settings, configure_logging, get_logger
from framework.polling import PrometheusMetrics, load_fleet_config
from worker.exit_codes import ExitCode
from worker.fleet.child import SupervisorMetrics, SupervisorOptions
from worker.fleet.in_process import InProcessFleet
from worker.fleet.supervisor import Supervisor
from worker.ops import HealthCheck, OpsContext
from worker.runtime import (
    BuildService,
    Runtime,
    Service,
    load_settings,
    remembered,
    run_event_loop,
    run_service,
)


def run_fleet_process(
    *, metrics_port: int | None, config_path: str | None, in_process: bool
) -> int:
    settings = load_settings(metrics_port=metrics_port, config_path=config_path)
    if settings is None:
        return ExitCode.CONFIG
    # One stream for the supervisor's events and its children's.
    secrets = KnownSecrets()  # filled in as the configuration loads
    configure_logging(settings.log_level, settings.log_format, stream=sys.stdout,
                      secrets=secrets)
    if in_process:
        main = run_service(settings, client_name="connector-fleet:in-process",
                           logger=get_logger(component="fleet"), build=build_in_process_fleet,
                           secrets=secrets)
    else:
        main = run_service(settings, client_name="connector-fleet:supervisor",
                           logger=get_logger(component="supervisor"),
                           build=supervisor_builder(settings), secrets=secrets)
    return run_event_loop(main)


def build_in_process_fleet(runtime: Runtime, _: AsyncExitStack) -> tuple[Service, OpsContext]:
    fleet = InProcessFleet(runtime, PrometheusMetrics.create(runtime.prometheus))
    return fleet, OpsContext(redis=runtime.redis, keys=runtime.keys, prometheus=runtime.prometheus,
                             fleet=lambda: fleet.fleet, clock=runtime.clock,
                             process_health=fleet.health, logger=runtime.logger)


def supervisor_builder(settings: Settings) -> BuildService:
    def build(runtime: Runtime, stack: AsyncExitStack) -> tuple[Service, OpsContext]:
        prometheus_dir = Path(tempfile.mkdtemp(prefix="connector-fleet-prometheus-"))
        stack.callback(shutil.rmtree, prometheus_dir, ignore_errors=True)
        # Children write their series to files there; this collector adds them up.
        MultiProcessCollector(runtime.prometheus,  # type: ignore[no-untyped-call]
                              path=str(prometheus_dir))
        config_path = settings.connectors_config_path.resolve()
        file_mode = not os.environ.get("ENABLED_CONNECTORS", "").strip()
        options = SupervisorOptions(
            command=lambda name: [sys.executable, "-m", "worker", name],
            child_env=_child_env(runtime.redis_url, config_path, prometheus_dir),
            config_path=config_path if file_mode else None,
            restart_base_s=settings.restart_base_s,
            restart_max_s=settings.restart_max_s,
            prometheus_dir=prometheus_dir,
        )
        runtime = replace(runtime, load_config=lambda: remembered(load_fleet_config(config_path),
                                                                  runtime.secrets))
        supervisor = Supervisor(runtime, SupervisorMetrics.create(runtime.prometheus), options)
        return supervisor, OpsContext(
            redis=runtime.redis, prometheus=runtime.prometheus, fleet=lambda: supervisor.fleet,
            clock=runtime.clock, process_health=_supervisor_health(supervisor),
            children=supervisor.status, logger=runtime.logger, keys=runtime.keys)

    return build


def _child_env(redis_url: str, config_path: Path, prometheus_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        # The children use the Redis we resolved (an embedded one is started once).
        "REDIS_URL": redis_url,
        "CONNECTORS_CONFIG_PATH": str(config_path),
        "PROMETHEUS_MULTIPROC_DIR": str(prometheus_dir),
    })
    env.pop("METRICS_PORT", None)  # the supervisor serves the fleet's metrics
    return env


def _supervisor_health(supervisor: Supervisor) -> HealthCheck:
    def health() -> tuple[bool, dict[str, Any]]:
        return True, {"role": "supervisor", "children": supervisor.status()}

    return health
