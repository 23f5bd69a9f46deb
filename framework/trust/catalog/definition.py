"""Capability definitions: their JSON format, validated strictly.

A :class:`CapabilityDefinition` holds ``id, version, sector, description,
handler, preconditions, postconditions, rollbackStrategy, signature``; an
unknown field, a wrong type, a bad version or an expression that does not
parse is refused with the file (or Redis key) and the field. See
docs/catalog.md for the format and :mod:`framework.trust.catalog.signing` for what the
signature covers.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from framework.core.errors import ExpressionError, InvalidDefinitionError, VersionError
from framework.core.expressions import Expression
from framework.core.versions import VersionRange, parse_version
from framework.trust.catalog.signing import PrivateKey, canonical_encoding

__all__ = [
    "CapabilityDefinition",
    "Condition",
    "RollbackAction",
    "RollbackStrategy",
    "Sector",
    "parse_definition",
]

Sector = Literal["INDUSTRIAL", "MEDICAL", "AGRICULTURE", "FINANCE", "IOT"]

_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,127}$")
_RELEASE = re.compile(r"^\d+\.\d+\.\d+(?:[-.]?(?:a|b|rc|alpha|beta)\.?\d*)?$")


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, populate_by_name=True
    )


class Condition(_Model):
    """A pre- or postcondition: a :mod:`framework.core.expressions` check.

    A postcondition is polled every ``poll_interval_ms`` until true or until
    ``timeout_ms`` has passed (None: checked once).
    """

    check: str = Field(min_length=1)
    description: str = ""
    timeout_ms: int | None = Field(None, alias="timeoutMs", ge=0)
    poll_interval_ms: int = Field(100, alias="pollIntervalMs", gt=0)

    @field_validator("check")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            Expression(value, where="condition")
        except ExpressionError as exc:
            raise ValueError(str(exc)) from None
        return value


class RollbackAction(_Model):
    """Run ``action`` with ``params`` when the handler or a postcondition fails.

    The same capability id with ``{"version": "previous"}`` undoes the step;
    another capability id compensates it.
    """

    action: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    alert_on_rollback: bool = Field(False, alias="alertOnRollback")
    # Range of the action's versions; None = the newest.
    version_range: str | None = Field(None, alias="versionRange")

    @field_validator("version_range")
    @classmethod
    def _range_parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                VersionRange.parse(value)
            except VersionError as exc:
                raise ValueError(str(exc)) from None
        return value


RollbackStrategy = Literal["none"] | RollbackAction


class CapabilityDefinition(_Model):
    """One version of a capability, as registered in the catalog."""

    id: str
    version: str
    sector: Sector
    description: str = ""
    # The key of a registered CapabilitySpec ("valve_control@1.1.0") or its id.
    handler: str = Field(min_length=1)
    preconditions: list[Condition] = Field(default_factory=list)
    postconditions: list[Condition] = Field(default_factory=list)
    rollback_strategy: RollbackStrategy = Field("none", alias="rollbackStrategy")
    # "ed25519:<key-id>:<base64 signature>" (framework.trust.catalog.signing); None = unsigned.
    signature: str | None = None

    @field_validator("id")
    @classmethod
    def _id_is_a_name(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(
                "must start with a letter and hold only letters, digits, '_', '.', '-'"
            )
        return value

    @field_validator("version")
    @classmethod
    def _version_is_semver(cls, value: str) -> str:
        if not _RELEASE.match(value):
            raise ValueError(f"invalid version {value!r} (expected MAJOR.MINOR.PATCH)")
        parse_version(value)
        return value

    @property
    def key(self) -> str:
        """``id@version``, the name every error and log uses."""
        return f"{self.id}@{self.version}"

    def to_json(self) -> bytes:
        """The definition as stored and as a file: camelCase keys, sorted."""
        return orjson.dumps(self.fields(), option=orjson.OPT_SORT_KEYS)

    def fields(self) -> dict[str, Any]:
        """Every field by its JSON name, defaults filled in."""
        return self.model_dump(mode="json", by_alias=True)

    def signed_bytes(self) -> bytes:
        """What the signature covers (framework.trust.catalog.signing.canonical_encoding)."""
        return canonical_encoding(self.fields())

    def signed_with(self, key: PrivateKey) -> CapabilityDefinition:
        """A copy carrying ``key``'s signature over this definition."""
        return self.model_copy(update={"signature": key.sign(self.signed_bytes())})


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


def parse_definition(data: bytes | str | dict[str, Any], *, source: str) -> CapabilityDefinition:
    """Validate a definition; :class:`InvalidDefinitionError` names ``source`` and
    every bad field."""
    try:
        raw = data if isinstance(data, dict) else orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidDefinitionError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidDefinitionError(f"{source}: expected a JSON object, got {type(raw).__name__}")
    try:
        return CapabilityDefinition.model_validate(raw)
    except ValidationError as exc:
        raise InvalidDefinitionError(
            f"{source}: invalid capability definition: {_describe(exc)}"
        ) from None
