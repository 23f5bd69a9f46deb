"""What a process needs to drive a rollout: the built-in capabilities behind the
signed catalog's seven-step executor (trusted keys required: firmware is never
installed unaudited), the device channel for the health probe, and a lease.

SIGINT/SIGTERM stop the driver between two device calls' results: the state is in
Redis and ``connector-fleet ota resume ID`` goes on from there."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Coroutine
from typing import Any

from redis.asyncio import Redis

from framework.consuming import BreakerBoard, ExecutionDeps
from framework.core import (
    ConfigError,
    Deadlines,
    Settings,
    SigningKeyError,
    SystemClock,
    get_logger,
)
from framework.trust import (
    AuditChain,
    Catalog,
    PrivateKey,
    ResourceArbiter,
    TrustDeps,
    TrustStoreSource,
    build_safe_executor,
)
from providers.builtin import default_capability_registry
from providers.devices.ota import OtaDeps, RolloutDriver


async def drive_rollout(redis: Redis, rollout_id: str, settings: Settings, *,
                        handle_signals: bool = True) -> str:
    """Drive ``rollout_id`` to its end (or a signal, with ``handle_signals``: a process
    of its own; the ops server has its own handlers); its stage when this returns."""
    clock, log = SystemClock(), get_logger(component="ota", rollout=rollout_id)
    try:
        trust = TrustStoreSource().load()
        audit_key = (PrivateKey.load(settings.audit_signing_key)
                     if settings.audit_signing_key else None)
    except SigningKeyError as exc:
        raise ConfigError(str(exc)) from None
    if not trust.keys:
        raise ConfigError("ota: updates go through the signed catalog and its audit chain: "
                          "set CATALOG_TRUSTED_KEYS (or CATALOG_TRUSTED_KEYS_JSON)")
    registry, actions = default_capability_registry()
    try:
        devices = actions.devices
        if devices is None:
            raise ConfigError("ota: the device capabilities are not registered")
        audit = AuditChain(redis, signing_key=audit_key, clock=clock)
        deps = ExecutionDeps(redis=redis, clock=clock, logger=log,
                             breakers=BreakerBoard(redis=redis, clock=clock, logger=log),
                             deadlines=Deadlines(), call_metrics=None)
        executor = build_safe_executor(registry, deps, TrustDeps(
            catalog=Catalog(redis, trust, clock=clock, logger=log, audit=audit), audit=audit,
            metrics=None, arbiter=ResourceArbiter(redis, clock=clock, logger=log)))
        driver = RolloutDriver(OtaDeps(redis=redis, executor=executor, probe=devices.probe,
                                       clock=clock, logger=log, audit=audit,
                                       lease_ttl_s=_lease_ttl_s()), rollout_id)
        if not handle_signals:
            return await driver.run()
        return await _until_signal(driver.run())
    finally:
        await actions.aclose()


def _lease_ttl_s() -> float:
    """``OTA_LEASE_TTL_S`` (default 30): how long a crashed driver blocks the next."""
    raw = os.environ.get("OTA_LEASE_TTL_S", "30")
    try:
        ttl_s = float(raw)
    except ValueError:
        raise ConfigError(f"OTA_LEASE_TTL_S: expected seconds, got {raw[:40]!r}") from None
    if not 1 <= ttl_s <= 3600:
        raise ConfigError(f"OTA_LEASE_TTL_S: expected 1..3600 seconds, got {ttl_s:g}")
    return ttl_s


async def _until_signal(driving: Coroutine[Any, Any, str]) -> str:
    task = asyncio.ensure_future(driving)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return "interrupted"
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(RuntimeError):
                loop.remove_signal_handler(signum)
