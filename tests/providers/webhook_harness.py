"""Runs an ``http-webhook`` connector under a real ConnectorWorker on real Redis, on a
free loopback port, for the webhook tests; and signs requests as senders do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import orjson
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from framework.core import SystemClock
from framework.core.logs import get_logger
from framework.polling import ConnectorConfig, ConnectorRegistry, FleetConfig, PrometheusMetrics
from framework.testing import free_port
from providers.builtin import register_builtin_connectors
from providers.webhook import hex_hmac
from worker.connector import ConnectorWorker
from worker.exit_codes import ExitCode
from worker.runtime import Runtime

STREAM = "raw-input-signals"


@dataclass
class RunningWebhook:
    url: str
    base: str
    worker: ConnectorWorker


def webhook_config(name: str, provider: dict[str, Any], **entry: Any) -> ConnectorConfig:
    provider = {"host": "127.0.0.1", "port": free_port(), **provider}
    # Windows of 200 ms: a stop drains within one, so each test ends sooner.
    entry = {"poll_interval_ms": 200, **entry}
    return ConnectorConfig(name=name, type="http-webhook", provider_config=provider, **entry)


@asynccontextmanager
async def running_webhook(
    redis: Redis, config: ConnectorConfig, *, replica: str | None = None,
    listen_timeout_s: float = 20.0,
) -> AsyncIterator[RunningWebhook]:
    """The connector running (lease taken, listening) until the block ends; stopped
    then, and its exit code checked."""
    registry = ConnectorRegistry()
    register_builtin_connectors(registry)
    fleet = FleetConfig(connectors={config.name: config}, source="test")
    runtime = Runtime(redis=redis, redis_url="redis://test", registry=registry,
                      load_config=lambda: fleet, clock=SystemClock(),
                      logger=get_logger(connector=config.name, replica=replica),
                      prometheus=CollectorRegistry(), drain_timeout_s=5)
    worker = ConnectorWorker(config.name, runtime, PrometheusMetrics.create(runtime.prometheus),
                             replica=replica)
    await worker.start()
    run = asyncio.create_task(worker.run())
    provider = config.provider_config
    base = f"http://127.0.0.1:{provider['port']}"
    running = RunningWebhook(url=base + provider.get("path", "/webhook"), base=base,
                             worker=worker)
    try:
        await until_listening(base, run, listen_timeout_s)
        yield running
    finally:
        worker.request_stop()
        assert await asyncio.wait_for(run, 15) == ExitCode.OK


async def until_listening(base: str, run: asyncio.Task[int], timeout_s: float = 20.0) -> None:
    """Until the receiver answers anything (it listens once the lease is taken)."""
    async with asyncio.timeout(timeout_s), aiohttp.ClientSession() as session:
        while True:
            if run.done():
                run.result()  # raises what stopped it
                raise AssertionError("the worker stopped before listening")
            try:
                async with session.get(base + "/") as answer:
                    await answer.read()
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)


def github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hex_hmac(secret.encode(), body)


def timestamped_headers(secret: str, body: bytes, at: float | None = None) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    return {"X-Signature-Timestamp": stamp,
            "X-Signature": "v1=" + hex_hmac(secret.encode(), f"{stamp}.".encode() + body)}


async def stream_events(redis: Redis, stream: str = STREAM) -> list[dict[str, Any]]:
    """Each entry of ``stream``: its fields, with the payload decoded."""
    # decode_responses=True (framework.core.connections): ids and fields are str.
    entries = cast(list[tuple[str, dict[str, str]]], await redis.xrange(stream))
    return [{**fields, "payload": orjson.loads(fields["payload"])} for _, fields in entries]


async def post(session: aiohttp.ClientSession, url: str, body: bytes,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Any]:
    """(status, headers, JSON answer or text) of one POST."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    async with session.post(url, data=body, headers=all_headers) as answer:
        text = await answer.text()
        try:
            parsed: Any = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = text
        return answer.status, dict(answer.headers), parsed
