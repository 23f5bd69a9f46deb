"""``connector-run NAME``: one connector worker as a process."""

from __future__ import annotations

from contextlib import AsyncExitStack

from framework.core import KnownSecrets, configure_logging, get_logger
from framework.polling import PrometheusMetrics
from worker.connector.worker import ConnectorWorker
from worker.exit_codes import ExitCode
from worker.ops import OpsContext
from worker.runtime import Runtime, Service, load_settings, run_event_loop, run_service


def run_connector_process(
    name: str, *, once: bool, metrics_port: int | None, config_path: str | None
) -> int:
    settings = load_settings(metrics_port=metrics_port, config_path=config_path)
    if settings is None:
        return ExitCode.CONFIG
    secrets = KnownSecrets()  # filled in as the configuration loads
    configure_logging(settings.log_level, settings.log_format, secrets=secrets)

    def build(runtime: Runtime, _: AsyncExitStack) -> tuple[Service, OpsContext]:
        worker = ConnectorWorker(name, runtime, PrometheusMetrics.create(runtime.prometheus),
                                 once=once, replica=settings.connector_replica)
        return worker, OpsContext(redis=runtime.redis, prometheus=runtime.prometheus,
                                  fleet=worker.fleet, clock=runtime.clock, keys=runtime.keys,
                                  process_health=worker.health,
                                  logger=runtime.logger)

    return run_event_loop(run_service(settings, client_name=f"connector-run:{name}",
                                      logger=get_logger(connector=name), build=build,
                                      secrets=secrets))
