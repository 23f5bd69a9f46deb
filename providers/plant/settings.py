"""Where the plant's pumps and irrigation zones are: devices (Modbus TCP slaves or
OPC-UA servers) and the points on them, read from ``PLANT_CONFIG_JSON`` (inline)
or ``PLANT_CONFIG`` (a file path). Hosts come only from here, never from an event::

    {"devices": {"plc-1": {"protocol": "modbus", "host": "10.0.0.20", "port": 502},
                 "opc-1": {"protocol": "opcua", "endpoint": "opc.tcp://10.0.0.30:4840"}},
     "pumps": {"P-01": {"device": "plc-1", "run": {"coil": 0},
                        "speed": {"holding": 10, "scale": 0.1}, "maxSpeed": 100,
                        "signals": {"level": {"input": 3, "scale": 0.01},
                                    "inletOpen": {"discrete": 2}}}},
     "zones": {"Z-01": {"device": "plc-1", "valve": {"coil": 5}, "maxDurationS": 3600}}}

A point is one Modbus coil, discrete input, holding or input register (a number
of ``type``, the register holding value / ``scale``), or one OPC-UA node.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from framework.consuming import describe_validation_error
from framework.core import ConfigError
from providers.modbus.words import NumericType

_MODEL = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel,
                    populate_by_name=True)
_TABLES = ("coil", "discrete", "holding", "input", "node")


class Point(BaseModel):
    model_config = _MODEL

    coil: int | None = Field(None, ge=0, le=65535)
    discrete: int | None = Field(None, ge=0, le=65535)
    holding: int | None = Field(None, ge=0, le=65535)
    input: int | None = Field(None, ge=0, le=65535)
    node: str | None = Field(None, min_length=1, max_length=512)
    type: NumericType = "uint16"
    scale: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_place(self) -> Point:
        places = [table for table in _TABLES if getattr(self, table) is not None]
        if len(places) != 1:
            raise ValueError(f"a point is exactly one of {', '.join(_TABLES)} "
                             f"(given: {', '.join(places) or 'none'})")
        return self

    @property
    def table(self) -> str:
        return next(table for table in _TABLES if getattr(self, table) is not None)

    @property
    def address(self) -> int:
        value = getattr(self, self.table)
        assert isinstance(value, int), "an OPC-UA node has no Modbus address"
        return value

    @property
    def label(self) -> str:
        return f"{self.table} {getattr(self, self.table)}"

    @property
    def is_bit(self) -> bool:
        return self.table in ("coil", "discrete")


class Device(BaseModel):
    model_config = _MODEL

    protocol: Literal["modbus", "opcua"]
    host: str | None = Field(None, min_length=1)
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    endpoint: str | None = Field(None, pattern=r"^opc\.tcp://[^/\s]+(/\S*)?$")
    timeout_ms: int = Field(3000, gt=0, le=60_000)

    @model_validator(mode="after")
    def _addressed(self) -> Device:
        if self.protocol == "modbus" and self.host is None:
            raise ValueError("a modbus device needs host")
        if self.protocol == "opcua" and self.endpoint is None:
            raise ValueError("an opcua device needs endpoint (opc.tcp://host:port)")
        return self

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1000

    @property
    def hostname(self) -> str:
        """The host connected to (for allow-lists and messages)."""
        if self.protocol == "modbus":
            return str(self.host)
        return str(self.endpoint).removeprefix("opc.tcp://").split("/")[0].rsplit(":", 1)[0]

    @property
    def tcp_port(self) -> int:
        if self.protocol == "modbus":
            return self.port
        netloc = str(self.endpoint).removeprefix("opc.tcp://").split("/")[0]
        head, _, tail = netloc.rpartition(":")
        return int(tail) if head and tail.isdigit() else 4840


class Pump(BaseModel):
    model_config = _MODEL

    device: str
    run: Point
    speed: Point | None = None
    # Feedback points, when the device reports them apart from the commands.
    running: Point | None = None
    speed_feedback: Point | None = None
    min_speed: float = 0.0
    max_speed: float = Field(100.0, gt=0)
    # Readings an interlock checks (level, flow, inlet valve), as state.signals.NAME.
    signals: dict[str, Point] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _writable(self) -> Pump:
        _check_writable(self.run, "run", bit=True)
        if self.speed is not None:
            _check_writable(self.speed, "speed", bit=False)
        if self.min_speed > self.max_speed:
            raise ValueError(f"minSpeed {self.min_speed} is above maxSpeed {self.max_speed}")
        return self


class Zone(BaseModel):
    model_config = _MODEL

    device: str
    valve: Point
    max_duration_s: int = Field(gt=0, le=7 * 86400)

    @model_validator(mode="after")
    def _writable(self) -> Zone:
        _check_writable(self.valve, "valve", bit=True)
        return self


class PlantSettings(BaseModel):
    model_config = _MODEL

    devices: dict[str, Device] = Field(default_factory=dict)
    pumps: dict[str, Pump] = Field(default_factory=dict)
    zones: dict[str, Zone] = Field(default_factory=dict)
    # How often each consumer looks for irrigation closes that are due, and how long
    # one that claimed a close has to do it before another may.
    sweep_interval_ms: int = Field(500, ge=10, le=60_000)
    close_lease_ms: int = Field(10_000, ge=100, le=600_000)

    @model_validator(mode="after")
    def _devices_known(self) -> PlantSettings:
        for kind, items in (("pump", self.pumps), ("zone", self.zones)):
            for name, item in items.items():
                if item.device not in self.devices:
                    raise ValueError(f"{kind} {name}: device {item.device!r} is not in "
                                     f"devices ({', '.join(sorted(self.devices)) or 'none'})")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PlantSettings:
        """From ``PLANT_CONFIG_JSON`` or the file ``PLANT_CONFIG``; empty without
        either. ConfigError naming the variable and the field otherwise."""
        source, text = "PLANT_CONFIG_JSON", env.get("PLANT_CONFIG_JSON")
        if not text and env.get("PLANT_CONFIG"):
            source = f"PLANT_CONFIG ({env['PLANT_CONFIG']})"
            try:
                text = Path(env["PLANT_CONFIG"]).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{source}: cannot read: {exc}") from None
        if not text:
            return cls()
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise ConfigError(f"{source}: {describe_validation_error(exc)}") from None


def _check_writable(point: Point, name: str, *, bit: bool) -> None:
    if point.table in ("discrete", "input"):
        raise ValueError(f"{name}: a {point.table} is read-only; use "
                         f"{'coil' if bit else 'holding'} or node")
    if point.table != "node" and point.is_bit != bit:
        raise ValueError(f"{name}: must be a {'coil' if bit else 'holding register'}")


def known(items: Mapping[str, object], kind: str, name: str) -> str:
    """The message for an unknown pump or zone, naming the configured ones."""
    return (f"{kind} {name!r} is not configured (PLANT_CONFIG; known: "
            f"{', '.join(sorted(items)) or 'none'})")
