"""The plant the pump and irrigation tests drive: a real pymodbus slave
(:class:`RegisterSimulator`) holding a pump and three irrigation zones, its
configuration, and a rule run through a consumer group (for redeliveries)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from framework.consuming import CallPolicy, CapabilitySpec
from providers.modbus.register_simulator import RegisterSimulator
from providers.plant import PlantSettings
from tests.providers.redelivery import deliver_twice

# Where things are on the slave.
RUN_COIL, SPEED_REGISTER, LEVEL_REGISTER, INLET_INPUT = 0, 10, 3, 2
ZONE_COILS = {"Z-01": 5, "Z-02": 6, "Z-03": 7}
MAX_DURATION_S = 60


def plant_config(device: RegisterSimulator | int, **changes: Any) -> dict[str, Any]:
    port = device if isinstance(device, int) else device.port
    config: dict[str, Any] = {
        "devices": {"plc-1": {"protocol": "modbus", "host": "127.0.0.1", "port": port,
                              "timeoutMs": 1000}},
        "pumps": {"P-01": {"device": "plc-1", "run": {"coil": RUN_COIL},
                           "speed": {"holding": SPEED_REGISTER, "scale": 0.1},
                           "maxSpeed": 100,
                           "signals": {"level": {"input": LEVEL_REGISTER, "scale": 0.01},
                                       "inletOpen": {"discrete": INLET_INPUT}}}},
        "zones": {zone: {"device": "plc-1", "valve": {"coil": coil},
                         "maxDurationS": MAX_DURATION_S}
                  for zone, coil in ZONE_COILS.items()},
        "sweepIntervalMs": 50,
        "closeLeaseMs": 1000,
    }
    config.update(changes)
    return config


def plant_settings(device: RegisterSimulator | int, **changes: Any) -> PlantSettings:
    return PlantSettings.model_validate(plant_config(device, **changes))


def healthy(device: RegisterSimulator) -> None:
    """Water in the sump (0.80 m) and the inlet valve open: the interlocks pass."""
    device.set_words("input", LEVEL_REGISTER, [80])
    device.set_bits("discrete", INLET_INPUT, [True])


async def run_twice(redis: Redis, spec: CapabilitySpec, step: dict[str, Any]) -> None:
    """One event through a rule calling ``step``, delivered, then delivered again
    (as after a consumer crash before its acknowledgement reached Redis)."""
    rules = {"version": 1, "rules": [{
        "name": "plant", "match": {"stream": "plant"}, "steps": [{"id": "act", **step}]}]}
    event = {"source": "scada", "value": 1, "timestamp": "2026-12-03T10:00:00Z",
             "nodeId": "scada-1"}
    await deliver_twice(redis, rules, replace(spec, policy=CallPolicy(max_retries=0)),
                        "plant", event)


def quick_definition(path: Path, folder: Path) -> Path:
    """The signed-definition template with its postconditions given up after 300 ms
    (instead of 5 s): for the tests where they are meant to stay false."""
    raw = orjson.loads(path.read_bytes())
    for condition in raw["postconditions"]:
        if "timeoutMs" in condition:
            condition["timeoutMs"] = 300
    copy = folder / path.name
    copy.write_bytes(orjson.dumps(raw))
    return copy
