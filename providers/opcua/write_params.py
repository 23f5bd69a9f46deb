"""``opcua_write``'s parameters, and the endpoints it may reach.

A call names a configured endpoint (``"endpoint": "boiler-plc"``), never a URL: the
servers are the operator's list (``OPCUA_ENDPOINTS``, a JSON object of name →
endpoint settings, or the file ``OPCUA_ENDPOINTS_FILE``), so no event can point a
write at a host of its choosing. Two operations::

    {"endpoint": "boiler-plc", "nodeId": "ns=2;s=Setpoint", "value": 21.5,
     "variantType": "Float"}
    {"endpoint": "boiler-plc", "nodeId": "ns=2;s=Pump", "method": "ns=2;s=Pump.Start",
     "arguments": [{"value": 1200.0, "variantType": "Double"}]}

The first writes ``value`` (a list: an array) as a Variant of ``variantType``; the
second calls ``method`` on the object ``nodeId``. A bad parameter is a ValueError
naming it (``opcua_write: value: 70000 does not fit Int16 (-32768..32767)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import orjson
from asyncua import ua
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from framework.core import ConfigError
from providers.opcua.config import EndpointConfig, NodeIdText
from providers.opcua.values import WRITABLE_TYPES, variant

VariantName = Literal[
    "Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
    "Float", "Double", "String", "DateTime", "ByteString"]
assert set(VariantName.__args__) == set(WRITABLE_TYPES)  # type: ignore[attr-defined]  # Literal's args
MAX_ARGUMENTS = 64


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel,
                              populate_by_name=True)


class Argument(_Model):
    value: Any
    variant_type: VariantName

    @model_validator(mode="after")
    def _fits(self) -> Argument:
        self.as_variant()
        return self

    def as_variant(self) -> ua.Variant:
        return variant(self.value, self.variant_type)


class WriteParams(_Model):
    endpoint: str = Field(min_length=1)
    node_id: NodeIdText
    value: Any = None
    variant_type: VariantName | None = None
    method: NodeIdText | None = None
    arguments: list[Argument] = Field(default_factory=list, max_length=MAX_ARGUMENTS)
    timeout_ms: int = Field(3000, gt=0, le=60_000)

    @model_validator(mode="before")
    @classmethod
    def _one_operation(cls, given: Any) -> Any:
        if isinstance(given, Mapping) and given.get("method") is not None:
            extra = [key for key in ("value", "variantType") if key in given]
            if extra:
                raise ValueError(f"a method call takes arguments, not {' or '.join(extra)}")
        return given

    @model_validator(mode="after")
    def _write_is_typed(self) -> WriteParams:
        if self.method is None:
            if self.variant_type is None:
                raise ValueError("variantType is required to write a value")
            if self.value is None:
                raise ValueError("value is required to write (or give method to call one)")
            if self.arguments:
                raise ValueError("arguments go with method")
            self.variant()  # raises when the value does not fit its type
        return self

    @property
    def operation(self) -> Literal["write", "call"]:
        return "write" if self.method is None else "call"

    def variant(self) -> ua.Variant:
        assert self.variant_type is not None
        return variant(self.value, self.variant_type)

    @property
    def target(self) -> str:
        return f"opcua:{self.endpoint}/{self.node_id}"


def parse_params(params: Mapping[str, Any]) -> WriteParams:
    try:
        return WriteParams.model_validate(dict(params))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'params'}: "
            f"{error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors())
        raise ValueError(f"opcua_write: {problems}") from None


def endpoints_from_env(env: Mapping[str, str]) -> dict[str, EndpointConfig]:
    """``OPCUA_ENDPOINTS`` (JSON) or the file ``OPCUA_ENDPOINTS_FILE``; none: ``{}``.
    A ConfigError names the variable and the endpoint that is wrong."""
    where = "OPCUA_ENDPOINTS"
    text = env.get(where)
    if not text and env.get("OPCUA_ENDPOINTS_FILE"):
        where = f"OPCUA_ENDPOINTS_FILE {env['OPCUA_ENDPOINTS_FILE']}"
        try:
            text = Path(env["OPCUA_ENDPOINTS_FILE"]).read_text()
        except OSError as exc:
            raise ConfigError(f"{where}: {exc.strerror}") from None
    if not text:
        return {}
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object of name -> endpoint settings")
    return parse_endpoints(raw, where)


def parse_endpoints(raw: Mapping[str, Any], where: str) -> dict[str, EndpointConfig]:
    endpoints: dict[str, EndpointConfig] = {}
    for name, settings in raw.items():
        try:
            endpoints[name] = EndpointConfig.model_validate(settings)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"
                for error in exc.errors())
            raise ConfigError(f"{where}: endpoint {name}: {problems}") from None
    return endpoints
