"""The ``connector-run`` process: settings, logging, Redis, signals, ops server."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from redis.asyncio import Redis

from framework.clock import SystemClock
from framework.config import load_fleet_config
from framework.connections import create_redis
from framework.embedded_redis import EmbeddedRedis, redis_answers
from framework.errors import ConfigError, RedisUnavailableError
from framework.logs import Logger, configure_logging, get_logger
from framework.metrics import PrometheusMetrics
from framework.settings import Settings
from providers.builtin import default_registry
from worker.exit_codes import ExitCode
from worker.ops_http import OpsServer, build_app
from worker.runner import ConnectorWorker


def run_connector_process(
    name: str, *, once: bool, metrics_port: int | None, config_path: str | None
) -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"connector-run: invalid settings: {exc}")
        return ExitCode.CONFIG
    if config_path is not None:
        settings = settings.model_copy(update={"connectors_config_path": Path(config_path)})
    if metrics_port is not None:
        settings = settings.model_copy(update={"metrics_port": metrics_port})
    configure_logging(settings.log_level, settings.log_format)
    return _run_loop(run_connector(name, settings, once=once))


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result


async def resolve_redis_url(settings: Settings, logger: Logger) -> str:
    """REDIS_URL if set; else the default address, starting an embedded server
    there when nothing answers."""
    if settings.redis_url:
        return settings.redis_url
    url = settings.redis_default_url
    if await redis_answers(url):
        return url
    logger.info("redis_not_found_starting_embedded", url=url)
    embedded = EmbeddedRedis(
        url, data_dir=settings.data_dir, binary=settings.redis_server_bin, logger=logger
    )
    return await embedded.ensure_running()


async def run_connector(name: str, settings: Settings, *, once: bool = False) -> int:
    log = get_logger(connector=name)
    try:
        url = await resolve_redis_url(settings, log)
    except RedisUnavailableError as exc:
        log.error("redis_unavailable", error=str(exc))
        return ExitCode.UNAVAILABLE
    redis = create_redis(url, client_name=f"connector-run:{name}")
    try:
        return await _run_worker(name, settings, redis, log, once=once)
    finally:
        await redis.aclose()


async def _run_worker(
    name: str, settings: Settings, redis: Redis, log: Logger, *, once: bool
) -> int:
    registry = CollectorRegistry()
    worker = ConnectorWorker(
        name,
        redis=redis,
        registry=default_registry(),
        load_config=lambda: load_fleet_config(settings.connectors_config_path),
        clock=SystemClock(),
        logger=log,
        prometheus=PrometheusMetrics.create(registry),
        drain_timeout_s=settings.drain_timeout_s,
    )
    try:
        worker.start()
    except ConfigError as exc:
        log.error("config_invalid", error=str(exc))
        return ExitCode.CONFIG
    log.info("worker_started", redis=_describe(redis), config=worker.config.redacted(), once=once)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.request_stop)
    loop.add_signal_handler(signal.SIGINT, worker.request_stop)
    loop.add_signal_handler(signal.SIGHUP, worker.request_reload)
    server = None
    if settings.metrics_port is not None:
        server = OpsServer(build_app(registry, worker.health), host=settings.metrics_host,
                           port=settings.metrics_port)
        await server.start()
        log.info("ops_server_listening", host=server.host, port=server.port)
    try:
        return await worker.run(once=once)
    finally:
        if server is not None:
            await server.stop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def _describe(redis: Redis) -> str:
    kwargs = redis.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    host, port, db = kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0)
    return f"redis://{host}:{port}/{db}"
