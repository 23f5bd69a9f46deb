"""Connector types: a name (``NOAA_WEATHER``) mapped to a factory.

Built-in types are registered by :func:`providers.builtin.register_builtin_connectors`;
another distribution adds a type without touching this repository by declaring
an entry point in the ``connector_fleet.connectors`` group whose name is the type
and whose object is the factory::

    [project.entry-points."connector_fleet.connectors"]
    MY_SOURCE = "my_package.connector:create_my_source_connector"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

import httpx
from redis.asyncio import Redis

from framework.core.clock import Clock, SystemClock
from framework.core.errors import ConfigError, UnknownConnectorError
from framework.core.keys import ENTRY_POINT_GROUP
from framework.core.logs import Logger, get_logger
from framework.polling.config import ConnectorConfig, FleetConfig
from framework.polling.lease import Lease
from framework.polling.poller import PollingConnector
from framework.polling.state import StateStore


@dataclass(frozen=True)
class ConnectorContext:
    """What a factory gets besides the config: the framework's services."""

    store: StateStore
    clock: Clock
    logger: Logger
    # Tests and embedders may route HTTP through their own transport.
    http_transport: httpx.AsyncBaseTransport | None = None


ConnectorFactory = Callable[[ConnectorConfig, ConnectorContext], PollingConnector]


class ConnectorRegistry:
    def __init__(self) -> None:
        self._factories: dict[str, ConnectorFactory] = {}
        self._replicated: set[str] = set()

    def register_connector(
        self, type_name: str, factory: ConnectorFactory, *, replace: bool = False,
        replicas: bool = False,
    ) -> None:
        """``replicas``: instances of this type may run side by side, each under its own
        lease (``lease:NAME:REPLICA``): receivers whose messages are independent (a
        webhook behind a load balancer), never a source read from one position."""
        if type_name in self._factories and not replace:
            raise ValueError(f"connector type {type_name} is already registered")
        self._factories[type_name] = factory
        if replicas:
            self._replicated.add(type_name)
        else:
            self._replicated.discard(type_name)

    def allows_replicas(self, type_name: str) -> bool:
        return type_name in self._replicated

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register every type another installed distribution declares."""
        loaded = []
        for entry_point in entry_points(group=group):
            if entry_point.name in self._factories:
                continue
            self.register_connector(entry_point.name, entry_point.load())
            loaded.append(entry_point.name)
        return loaded

    @property
    def types(self) -> list[str]:
        return sorted(self._factories)

    def factory_for(self, config: ConnectorConfig) -> ConnectorFactory:
        try:
            return self._factories[config.type]
        except KeyError:
            raise UnknownConnectorError(
                f"unknown type {config.type!r}; known types: {', '.join(self.types) or 'none'}",
                connector=config.name,
            ) from None

    def create(self, config: ConnectorConfig, context: ConnectorContext) -> PollingConnector:
        """Build the connector; a factory's ``ValueError`` becomes a :class:`ConfigError`."""
        factory = self.factory_for(config)
        try:
            return factory(config, context)
        except ValueError as exc:
            raise ConfigError(str(exc), connector=config.name) from exc

    async def validate(self, fleet: FleetConfig) -> list[str]:
        """Every problem of the fleet: unknown types, and what each factory rejects of
        an enabled connector (built once against a Redis client that never connects,
        then closed). A disabled entry may wait for its secrets."""
        problems = self.check(fleet)
        for config in fleet.enabled():
            if config.type in self._factories:
                problems.extend(await self._build_problems(config))
        return problems

    async def _build_problems(self, config: ConnectorConfig) -> list[str]:
        offline = Redis()  # redis-py connects lazily: this client never does
        lease = Lease(offline, config.name, ttl_s=config.lease_ttl_seconds)
        context = ConnectorContext(
            store=StateStore(offline, config, lease, clock=SystemClock()),
            clock=SystemClock(),
            logger=get_logger(connector=config.name),
        )
        try:
            connector = self.create(config, context)
        except ConfigError as exc:
            return [str(exc)]
        await connector.aclose()
        return []

    def check(self, fleet: FleetConfig) -> list[str]:
        """Unknown types in the fleet, one line each (empty when all are known)."""
        problems = []
        for config in fleet.connectors.values():
            try:
                self.factory_for(config)
            except UnknownConnectorError as exc:
                problems.append(str(exc))
        return problems
