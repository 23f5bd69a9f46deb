"""The ``modbus-tcp`` connector: registers of one or more Modbus TCP slaves, polled
every ``pollIntervalMs``, one event per register reading that changed.

Each poll reads every slave at once, each within its own deadline (the slave's
``timeoutMs``, default ``requestTimeoutMs``): a dead or slow slave costs the
poll its deadline, never the other slaves' values. Every register is an item
``<slave>/<register>`` of the poller, whose version is its value: the poller
publishes a reading and saves its version in one fenced commit, so a crash
neither loses a change nor publishes one twice.

With a ``deadband``, the saved version stays until the value moves more than
the deadband away from the value last published (so a slow drift is published
once it adds up). With ``publish: "every-poll"``, each poll's reading is its own
version: every reading is published.

A register that could not be read is a failed item of the poll (the poller logs
``item_failed`` with its id and the error naming slave and register) and keeps
its saved version: when the slave is back, an unchanged value is not published
again. When every register failed, the poll reports the connector degraded.

Event: ``{"source": "modbus", "value": 21.5, "unit": "degC", "timestamp": <read
time>, "nodeId": <slave>, "metadata": {"register", "slave", "host", "port",
"unitId", "table", "address", "type", "raw"}}``.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Any

import orjson

from framework.core import ConfigError
from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    ConnectorState,
    FetchResult,
    PollingConnector,
    SourceParts,
    UniversalPollingConnector,
    parse_provider_config,
    source_event,
)
from providers.modbus.blocks import plan_blocks
from providers.modbus.reader import Reading, SlaveReader
from providers.modbus.settings import ModbusConfig, SlaveConfig

# Separates a value from the poll it was read in, in an every-poll version.
_POLL_MARK = "|"


class RegisterReadError(Exception):
    """A register of a slave that this poll could not read (the message says why)."""


class ModbusSource:
    def __init__(self, settings: ModbusConfig, readers: list[SlaveReader]) -> None:
        self._settings = settings
        self._readers = readers
        self._every_poll = settings.publish == "every-poll"

    async def fetch(self, _: object, state: ConnectorState) -> FetchResult[Reading]:
        results = await asyncio.gather(*(r.read() for r in self._readers),
                                       return_exceptions=True)
        known = state.item_versions
        items: list[Reading] = []
        for reader, result in zip(self._readers, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                # A bug in reading one slave is that slave's problem alone.
                result = _unexpected(reader.slave, result)
            items.extend(self._versioned(reading, known.get(reading.item_id))
                         for reading in result)
        # Not complete: a slave that is down keeps its registers' saved versions.
        return FetchResult(items=items, complete=False)

    def _versioned(self, reading: Reading, known: str | None) -> Reading:
        if reading.error is not None:
            return reading
        value_key = orjson.dumps(reading.value).decode()
        if self._every_poll:
            stamp = round(reading.read_at.timestamp() * 1000)
            reading.version = f"{value_key}{_POLL_MARK}{stamp}"
            return reading
        deadband = reading.register.deadband
        if deadband is None:
            deadband = self._settings.deadband
        if (known is not None and known != value_key and deadband > 0
                and _within(known, reading.value, deadband)):
            reading.version = known
        else:
            reading.version = value_key
        return reading

    async def aclose(self) -> None:
        for reader in self._readers:
            await reader.aclose()


def _within(known: str, value: Any, deadband: float) -> bool:
    """Whether ``value`` is within ``deadband`` of the value saved as ``known``
    (element-wise for lists; anything not numeric counts as a change)."""
    try:
        previous = orjson.loads(known.split(_POLL_MARK, 1)[0])
    except orjson.JSONDecodeError:
        return False
    old = previous if isinstance(previous, list) else [previous]
    new = value if isinstance(value, list) else [value]
    if len(old) != len(new):
        return False
    return all(_is_number(a) and _is_number(b) and abs(a - b) <= deadband
               for a, b in zip(old, new, strict=True))


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _unexpected(slave: SlaveConfig, exc: Exception) -> list[Reading]:
    read_at = datetime.now(UTC)
    return [Reading(slave, register, f"{slave.label}/{register.name}", read_at,
                    error=f"modbus slave {slave.label}, register {register.name}: not read: "
                          f"{type(exc).__name__}: {exc}")
            for register in slave.registers]


def reading_version(reading: Reading) -> str:
    """The poller's change detector: the version set by the fetch, or the read error
    (the poller counts the item as failed, logs it and keeps its saved version)."""
    if reading.error is not None:
        raise RegisterReadError(reading.error)
    return reading.version


def reading_event(reading: Reading) -> dict[str, Any]:
    slave, register = reading.slave, reading.register
    metadata: dict[str, Any] = {
        "register": register.name, "slave": slave.label, "host": slave.host,
        "port": slave.port, "unitId": slave.unit_id, "table": register.resolved_table,
        "address": register.address, "type": register.type}
    if reading.raw is not None:
        metadata["raw"] = reading.raw
    return source_event(source="modbus", value=reading.value, node_id=slave.label,
                        timestamp=reading.read_at, unit=register.unit, metadata=metadata)


def create_modbus_connector(config: ConnectorConfig,
                            context: ConnectorContext) -> PollingConnector:
    settings = parse_provider_config(ModbusConfig, config)
    for slave in settings.all_slaves():
        if (slave.timeout_ms or 0) >= config.poll_deadline_ms:
            raise ConfigError(f"{config.type} connector {config.name}: slave {slave.label}: "
                             f"timeoutMs={slave.timeout_ms} must be below the poll deadline "
                             f"({config.poll_deadline_ms} ms)")
    readers = [
        SlaveReader(slave, plan_blocks(slave, settings.max_gap, settings.word_order,
                                       settings.byte_order),
                    timeout_s=(slave.timeout_ms or config.request_timeout_ms) / 1000,
                    retry=config.retry_config, clock=context.clock, logger=context.logger)
        for slave in settings.all_slaves()]
    source = ModbusSource(settings, readers)
    parts: SourceParts[None, Reading, dict[str, Any]] = SourceParts(
        provider=None, fetcher=source.fetch, item_id=lambda r: r.item_id,
        transformer=reading_event, change_detector=reading_version)
    return UniversalPollingConnector(config=config, parts=parts, store=context.store,
                                     logger=context.logger, on_close=source.aclose)
