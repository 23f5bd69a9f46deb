"""``patient_alert``'s parameters: whom the alert is about, what it says, which
resources to write (``Communication`` and/or ``Flag``) and, for the rollback,
``status: entered-in-error`` (retract what this step wrote)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

_REFERENCE = r"^(Patient|Group)/[A-Za-z0-9\-.]{1,64}$"
_SENDER = r"^(Device|Organization|Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$"
RETRACTED = "entered-in-error"
ResourceKind = Literal["Communication", "Flag"]


class PatientAlertParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    patient: str = Field(pattern=_REFERENCE)
    message: str = Field(min_length=1, max_length=10_000)
    priority: Literal["routine", "urgent", "asap", "stat"] = "urgent"
    category: str | None = Field(None, min_length=1, max_length=200)
    resources: list[ResourceKind] = Field(default_factory=lambda: list[ResourceKind](
        ["Communication"]), min_length=1, max_length=2)
    # Flag.code's text (what the flag warns of); required with a Flag.
    flag_code: str | None = Field(None, alias="flagCode", min_length=1, max_length=200)
    sender: str | None = Field(None, pattern=_SENDER)
    # "completed": write the alert; "entered-in-error": retract this step's alert.
    status: Literal["completed", "entered-in-error"] = "completed"
    # The FHIR server's base; None: the configured FHIR_BASE_URL.
    base_url: str | None = Field(None, alias="baseUrl", pattern=r"^https?://")

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if len(set(self.resources)) != len(self.resources):
            raise ValueError("resources lists a type twice")
        if "Flag" in self.resources and self.flag_code is None and self.status != RETRACTED:
            raise ValueError("flagCode is required when resources include Flag")
        return self
