"""``connector-fleet consume``: one stream consumer process (run several to scale).

The handler is the rules of ``RULES_PATH`` (:class:`~framework.consuming.rules.handler.RulesHandler`
over the built-in and installed capabilities), or any
:class:`~framework.consuming.delivery.EventHandler` named ``MODULE:NAME`` (``--handler``;
NAME is called with the Redis client). SIGTERM/SIGINT drain, SIGHUP and a change
of the rules file reload the rules, SIGHUP and a change of the trusted keys
(``CATALOG_TRUSTED_KEYS``) reload the catalog's keys (an invalid file is logged and
the running rules or keys stay). Redis, signals and the ops API are the runtime's
(:func:`worker.runtime.run_service`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import sys
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from framework.consuming import (
    DEFAULT_DEVICE_EVENTS_STREAM,
    HEARTBEAT_CAPABILITY,
    BreakerBoard,
    CallMetrics,
    CapabilityExecutor,
    CapabilityRegistry,
    Consumer,
    ConsumerMetrics,
    ConsumerOptions,
    EventHandler,
    ExecutionDeps,
    RetentionMetrics,
    RuleSet,
    RulesHandler,
    StreamRetention,
    build_executor,
    default_consumer_name,
    load_rules,
)
from framework.core import (
    ConfigError,
    Deadlines,
    KnownSecrets,
    RedisUnavailableError,
    Settings,
    SigningKeyError,
    audit_chain_of,
    cancel_and_wait,
    configure_logging,
    get_logger,
)
from framework.polling import FleetConfig
from framework.trust import (
    AuditChain,
    Catalog,
    ExecutionMetrics,
    PrivateKey,
    ResourceArbiter,
    TrustDeps,
    TrustReloader,
    TrustStoreSource,
    build_safe_executor,
)
from worker.consume.request import ConsumeRequest
from worker.exit_codes import ExitCode
from worker.ops import OpsContext, read_consumer_groups
from worker.runtime import (
    BuildService,
    Runtime,
    Service,
    load_settings,
    run_event_loop,
    run_service,
)

# How often the rules file and the trusted keys are checked for changes.
_FILES_CHECK_INTERVAL_S = 1.0
_GROUP_SAMPLE_INTERVAL_S = 5.0


def run_consume_process(request: ConsumeRequest, *, metrics_port: int | None,
                        config_path: str | None) -> int:
    settings = load_settings(metrics_port=metrics_port, config_path=config_path)
    if settings is None:
        return ExitCode.CONFIG
    if request.rules_path is not None:
        settings = settings.model_copy(update={"rules_path": request.rules_path})
    secrets = KnownSecrets()  # filled in as the rules load
    configure_logging(settings.log_level, settings.log_format, secrets=secrets)
    name = request.options.get("consumer", "")
    return run_event_loop(run_service(settings, client_name=f"connector-fleet:consume:{name}",
                                      logger=get_logger(component="consumer"),
                                      build=consumer_builder(request, settings),
                                      secrets=secrets))


def consumer_builder(request: ConsumeRequest, settings: Settings) -> BuildService:
    def build(runtime: Runtime, stack: AsyncExitStack) -> tuple[Service, OpsContext]:
        process = ConsumerProcess(request, settings, runtime)
        stack.push_async_callback(process.aclose)
        empty_fleet = FleetConfig(connectors={}, source=str(settings.connectors_config_path))
        return process, OpsContext(redis=runtime.redis, prometheus=runtime.prometheus,
                                   fleet=lambda: empty_fleet, clock=runtime.clock,
                                   process_health=process.health)

    return build


class ConsumerProcess:
    """A :class:`~worker.runtime.Service`: the consumer plus what the process adds:
    rules and trusted keys reload, metrics sampling."""

    def __init__(self, request: ConsumeRequest, settings: Settings, runtime: Runtime) -> None:
        self._request = request
        self._settings = settings
        self._redis = runtime.redis
        self._prometheus = runtime.prometheus
        self._clock = runtime.clock
        self._log = runtime.logger
        self._secrets = runtime.secrets
        self._metrics = ConsumerMetrics.create(runtime.prometheus)
        self._reload = asyncio.Event()
        self._closers: list[Any] = []
        self._catalog: Catalog | None = None
        self._trust_reloader: TrustReloader | None = None
        self._breakers: BreakerBoard | None = None
        self._rules_handler: RulesHandler | None = None
        self._rules_mtime_ns: int | None = None
        self._background: list[Coroutine[Any, Any, None]] = []
        self._audit: AuditChain | None = None
        self.consumer: Consumer

    @property
    def rules_path(self) -> Path:
        return self._settings.resolved_rules_path

    async def start(self) -> None:
        """Build the handler and the consumer; ConfigError (exit 78) if impossible."""
        handler, rule_streams = await self._build_handler()
        streams = self._request.streams or tuple(rule_streams)
        if not streams:
            whose = (f"--handler {self._request.handler} needs --stream" if self._request.handler
                     else f"the rules in {self.rules_path} listen to none; pass --stream")
            raise ConfigError(f"no stream to consume: {whose}")
        options = ConsumerOptions(streams=streams, **self._request.options,
                                  drain_timeout_s=self._settings.drain_timeout_s)
        self._log = self._log.bind(group=options.group, consumer=options.consumer)
        self.consumer = Consumer(self._redis, handler, options, clock=self._clock,
                                 logger=self._log, metrics=self._metrics)

    async def _build_handler(self) -> tuple[EventHandler, list[str]]:
        if self._request.handler:
            return _import_handler(self._request.handler, self._redis), []
        rules = load_rules(self.rules_path)
        self._secrets.remember(rules.secrets)
        self._rules_mtime_ns = _mtime_ns(self.rules_path)
        from providers.builtin import default_capability_registry

        capabilities, http = default_capability_registry()
        self._closers.append(http.aclose)
        executor = self._build_executor(capabilities)
        # Work the capabilities need beside the consumer (the irrigation close sweeper).
        self._background = http.plant.background(self._redis, clock=self._clock,
                                                 logger=self._log, audit=self._audit)
        self._rules_handler = RulesHandler(rules, executor, redis=self._redis, logger=self._log,
                                           identity_ttl_s=self._settings.step_identity_ttl_s)
        self._log.info("rules_loaded", path=str(self.rules_path), rules=len(rules.rules),
                       streams=rules.streams)
        return self._rules_handler, rules.streams

    def _build_executor(self, capabilities: CapabilityRegistry) -> CapabilityExecutor:
        """The signed catalog's pipeline when trusted keys are configured; otherwise
        the registry's capabilities, unsigned (said in the log). Either way on this
        process's one breaker board and deadline timer set."""
        call_metrics = CallMetrics.create(self._prometheus)
        self._breakers = BreakerBoard(redis=self._redis, clock=self._clock,
                                      logger=self._log, gauge=call_metrics.breaker_state)
        deps = ExecutionDeps(redis=self._redis, clock=self._clock, logger=self._log,
                             breakers=self._breakers, deadlines=Deadlines(),
                             call_metrics=call_metrics, reschedule_retries=True)
        key_path = self._settings.audit_signing_key
        trust_source = TrustStoreSource()
        try:
            trust = trust_source.load()
            audit_key = PrivateKey.load(key_path) if key_path else None
        except SigningKeyError as exc:
            raise ConfigError(str(exc)) from None
        if not trust.keys:
            self._log.warning("catalog_disabled", reason="no trusted keys (set "
                              "CATALOG_TRUSTED_KEYS): capabilities run unsigned, from the "
                              "registry, without preconditions, permits or audit")
            return build_executor(capabilities, deps)
        # Several chains (FLEET_AUDIT_CHAINS): this process's, chosen by its name.
        consumer = self._request.options.get("consumer") or default_consumer_name()
        audit = AuditChain(self._redis, signing_key=audit_key, clock=self._clock,
                           chain=audit_chain_of(str(consumer), self._settings.audit_chains))
        self._audit = audit
        # Stored versions that lookups skip (bad signature) are audited too.
        self._catalog = Catalog(self._redis, trust, clock=self._clock, logger=self._log,
                                audit=audit)
        self._trust_reloader = TrustReloader(self._catalog, trust_source, logger=self._log)
        self._log.info("catalog_enabled", trusted_keys=[key.key_id for key in trust.keys])
        metrics = ExecutionMetrics.create(self._prometheus, catalog=self._catalog)
        return build_safe_executor(capabilities, deps, TrustDeps(
            catalog=self._catalog, metrics=metrics,
            audit=audit,
            arbiter=ResourceArbiter(self._redis, clock=self._clock, logger=self._log,
                                    wait_histogram=metrics.permit_wait)))

    async def run(self) -> int:
        helpers = [asyncio.create_task(self._sample_groups(), name="group-sampler")]
        if self._settings.stream_trim_interval_s > 0:
            helpers.append(asyncio.create_task(self._trim_streams(), name="stream-retention"))
        if self._catalog is not None:
            # Revocations reach this process within the pub/sub delay.
            helpers.append(asyncio.create_task(self._catalog.watch(), name="catalog-watch"))
        if self._rules_handler is not None:
            helpers.append(asyncio.create_task(self._watch_files(), name="files-watcher"))
        if self._breakers is not None:
            # A breaker another consumer opened opens here too.
            helpers.append(asyncio.create_task(self._breakers.watch(), name="breakers-watch"))
        if self._rules_handler is not None and _has_absence_trigger(self._rules_handler.rules):
            # Every consumer is a watchdog replica; the lease holder sweeps (providers.devices).
            helpers.append(asyncio.create_task(self._watch_devices(), name="device-watchdog"))
        helpers += [asyncio.create_task(work) for work in self._background]
        self._background = []
        try:
            await self.consumer.run()
            return ExitCode.FORCED if self.consumer.stopped_by_force else ExitCode.OK
        except redis_errors.ResponseError as exc:  # e.g. WRONGTYPE: the key is not a stream
            self._log.error("consumer_failed", error=f"{type(exc).__name__}: {exc}")
            return ExitCode.FAILURE
        finally:
            await cancel_and_wait(*helpers)

    def request_stop(self) -> None:
        self.consumer.stop()

    async def _watch_devices(self) -> None:
        from providers.devices import DeviceKeys, Watchdog, WatchdogMetrics

        stream = os.environ.get("DEVICE_EVENTS_STREAM") or DEFAULT_DEVICE_EVENTS_STREAM
        metrics = WatchdogMetrics.create(self._prometheus)
        watchdog = Watchdog(self._redis, clock=self._clock, logger=self._log,
                            keys=DeviceKeys(events_stream=stream), on_step=metrics.observe)
        try:
            await watchdog.run()
        finally:
            await watchdog.release()

    def request_reload(self) -> None:
        self._reload.set()

    async def aclose(self) -> None:
        for close in self._closers:
            await close()

    def health(self) -> tuple[bool, dict[str, Any]]:
        return True, {"role": "consumer", "group": self.consumer.options.group,
                      "consumer": self.consumer.options.consumer,
                      "streams": list(self.consumer.options.streams),
                      "inFlight": self.consumer.in_flight}

    # -- rules and trusted keys reload --------------------------------------------------

    async def _watch_files(self) -> None:
        """SIGHUP reloads both; otherwise each is reloaded when its files change."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reload.wait(), timeout=_FILES_CHECK_INTERVAL_S)
            requested = self._reload.is_set()
            self._reload.clear()
            mtime_ns = _mtime_ns(self.rules_path)
            if requested or mtime_ns != self._rules_mtime_ns:
                self._rules_mtime_ns = mtime_ns
                await self._reload_rules()
            reloader = self._trust_reloader
            if reloader is not None and (requested or reloader.changed()):
                await reloader.reload()

    async def _reload_rules(self) -> None:
        assert self._rules_handler is not None
        try:
            # Parsed off the loop: a big file must not stall the entries in flight.
            rules: RuleSet = await asyncio.to_thread(load_rules, self.rules_path)
        except ConfigError as exc:
            self._log.error("rules_reload_rejected", path=str(self.rules_path), reason=str(exc))
            return
        self._secrets.remember(rules.secrets)
        self._rules_handler.replace_rules(rules)
        self._log.info("rules_reloaded", path=str(self.rules_path), rules=len(rules.rules),
                       streams=rules.streams)
        missing = sorted(set(rules.streams) - set(self.consumer.options.streams))
        if missing:
            self._log.warning("rules_streams_not_consumed", streams=missing,
                              hint="restart the consumer (or pass --stream) to read them")

    # -- metrics -------------------------------------------------------------------------

    async def _sample_groups(self) -> None:
        """Group lag, pending and dead-letter counts for Prometheus, every few seconds."""
        options = self.consumer.options
        while True:
            try:
                groups = await read_consumer_groups(self._redis, streams=options.streams,
                                                    group=options.group)
                for group in groups:
                    self._metrics.group_lag.labels(group.stream, group.name).set(group.lag or 0)
                    self._metrics.group_pending.labels(group.stream, group.name).set(group.pending)
                for stream in options.streams:
                    count = await self._redis.xlen(options.dead_letter_stream_of(stream))
                    self._metrics.dead_letters.labels(stream).set(count)
            except (RedisUnavailableError, redis_errors.RedisError) as exc:
                self._log.warning("group_sample_failed", error=str(exc))
            await self._clock.sleep(_GROUP_SAMPLE_INTERVAL_S)


    async def _trim_streams(self) -> None:
        """Trim what every group has acknowledged from the consumed streams (issue 15)."""
        retention = StreamRetention(self._redis, max_len=self._settings.stream_max_len,
                                    logger=self._log,
                                    metrics=RetentionMetrics.create(self._prometheus))
        await retention.run(self.consumer.options.streams,
                            interval_s=self._settings.stream_trim_interval_s, clock=self._clock)


def _has_absence_trigger(rules: RuleSet) -> bool:
    return any(getattr(step, "capability_id", None) == HEARTBEAT_CAPABILITY
               for rule in rules.rules for step in rule.steps)


def _import_handler(spec: str, redis: Redis) -> EventHandler:
    module_name, _, attribute = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"--handler {spec}: cannot import {attribute or '(no name)'} from "
                          f"{module_name}: {exc} (sys.path: {sys.path[:3]}...)") from exc
    handler = factory(redis)
    if not callable(getattr(handler, "handle", None)):
        raise ConfigError(f"--handler {spec}: {attribute}(redis) returned {handler!r}, "
                          "which has no handle(delivery) method")
    return handler  # type: ignore[no-any-return]


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None
