"""The configuration a connector worker runs and the connector built from it: read
at start, re-read on reload (a new config object swapped in, the old connector closed)."""

from __future__ import annotations

from typing import Any

from framework.core import ConfigError, Logger, UnknownConnectorError
from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    FleetConfig,
    Lease,
    PollingConnector,
    StateStore,
)
from worker.runtime import Runtime


class ConnectorSetup:
    def __init__(self, name: str, runtime: Runtime, context_extras: dict[str, Any],
                 replica: str | None = None) -> None:
        self._name = name
        self._runtime = runtime
        self._context_extras = context_extras
        self._replica = replica
        self._restart = False  # request_restart(): the next reload rebuilds
        # Set by load() and build().
        self.fleet: FleetConfig
        self.config: ConnectorConfig
        self.connector: PollingConnector

    def load(self) -> ConnectorConfig:
        """Read the fleet configuration; this connector's entry. Raises ConfigError."""
        fleet = self._runtime.load_config()
        config = self._config_from(fleet)
        self.fleet = fleet
        return config

    def lease_key(self, config: ConnectorConfig) -> str:
        """``lease:NAME``, or ``lease:NAME:REPLICA`` for a replica of a type that runs
        several instances at once (each fenced by its own lease; they share the state,
        the dedupe keys and the stream). Raises ConfigError for a replica of a type that
        runs one instance."""
        key = config.keys(self._runtime.keys).lease
        if self._replica is None:
            return key
        if not self._runtime.registry.allows_replicas(config.type):
            raise ConfigError(f"CONNECTOR_REPLICA is set, but type {config.type} runs one "
                              "instance at a time (unset it)", connector=config.name)
        return f"{key}:{self._replica}"

    def build(self, config: ConnectorConfig, lease: Lease, logger: Logger) -> None:
        """(Re)build the connector for ``config``; the caller closes the old one."""
        moved_to = self.lease_key(config)
        if moved_to != lease.key:
            # Hash tags with shards: a new outputStream / outputShards moves every key of
            # the connector, its lease and its state with it; the running instance would
            # neither hold the new lease nor see its state.
            raise ConfigError(f"this change moves its keys ({lease.key} -> {moved_to}): "
                              "restart it to apply", connector=config.name)
        store = StateStore(self._runtime.redis, config, lease, clock=self._runtime.clock,
                           scheme=self._runtime.keys, acks=self._runtime.replica_acks,
                           lease_key=lease.key)
        context = ConnectorContext(store=store, clock=self._runtime.clock, logger=logger,
                                   **self._context_extras)
        self.connector = self._runtime.registry.create(config, context)
        self.config = config
        lease.ttl_s = config.lease_ttl_seconds

    def request_restart(self) -> None:
        """The next reload rebuilds the connector even if its configuration is unchanged
        (an operator's restart: a fresh client, connections and caches)."""
        self._restart = True

    async def reload(self, lease: Lease, logger: Logger) -> bool:
        """Apply the configuration on disk; False when the connector must stop (removed
        or disabled). An invalid configuration is logged and the running one stays."""
        restart, self._restart = self._restart, False
        try:
            fleet = self._runtime.load_config()
            config = self._config_from(fleet)
        except UnknownConnectorError as exc:
            logger.warning("connector_removed", reason=str(exc))
            return False
        except ConfigError as exc:
            logger.error("reload_rejected", reason=str(exc))
            return True
        if not config.enabled:
            logger.info("connector_disabled")
            return False
        if config == self.config and not restart:
            self.fleet = fleet
            logger.info("reload_unchanged")
            return True
        await self._rebuild(fleet, config, lease, logger)
        return True

    async def _rebuild(self, fleet: FleetConfig, config: ConnectorConfig, lease: Lease,
                       logger: Logger) -> None:
        changed = _changed_fields(self.config, config)
        previous = self.connector
        try:
            self.build(config, lease, logger)
        except ConfigError as exc:
            logger.error("reload_rejected", reason=str(exc))
            return
        await previous.aclose()
        self.fleet = fleet
        logger.info("config_reloaded", changed=changed)

    def _config_from(self, fleet: FleetConfig) -> ConnectorConfig:
        config = fleet.get(self._name)
        if self._name in fleet.broken:  # its entry names the variable and the field
            raise ConfigError(fleet.broken[self._name].removeprefix(f"connector {self._name}: "),
                              connector=self._name)
        if config is None:
            known = ", ".join(sorted(fleet.connectors)) or "none"
            raise UnknownConnectorError(
                f"not found in {fleet.source} (configured: {known})", connector=self._name
            )
        self._runtime.registry.factory_for(config)
        return config


def _changed_fields(old: ConnectorConfig, new: ConnectorConfig) -> list[str]:
    before, after = old.model_dump(by_alias=True), new.model_dump(by_alias=True)
    return sorted(key for key in after if before.get(key) != after[key])
