"""The NOAA alert signal, normalized from one GeoJSON feature of
``GET /alerts/active`` (api.weather.gov, ``application/geo+json``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class NoaaAlert(BaseModel):
    """One active alert. Optional fields are None when NOAA sends null or omits them."""

    model_config = ConfigDict(frozen=True)

    source: str = "noaa"
    id: str
    url: str | None = None
    event: str
    severity: str | None = None
    urgency: str | None = None
    certainty: str | None = None
    status: str | None = None
    messageType: str | None = None
    category: str | None = None
    areaDesc: str | None = None
    affectedZones: list[str] = []
    sent: str | None = None
    effective: str | None = None
    onset: str | None = None
    expires: str | None = None
    ends: str | None = None
    headline: str | None = None
    description: str | None = None
    instruction: str | None = None
    response: str | None = None
    senderName: str | None = None
    hasGeometry: bool = False
    # NOAA issues an update or a cancellation as a new alert (a new id) that lists
    # the alerts it replaces here; consumers link them through these identifiers.
    references: list[str] = []


_COPIED = (
    "event", "severity", "urgency", "certainty", "status", "messageType", "category",
    "areaDesc", "sent", "effective", "onset", "expires", "ends", "headline",
    "description", "instruction", "response", "senderName",
)


def feature_id(feature: Any) -> str:
    """The feature's ``id`` (its URL), or ``properties.id`` (its URN) when absent."""
    if not isinstance(feature, dict):
        raise ValueError(f"feature is a {type(feature).__name__}, not an object")
    properties = feature.get("properties")
    identifier = feature.get("id") or (properties or {}).get("id")
    if not isinstance(identifier, str) or not identifier:
        raise ValueError("feature has neither id nor properties.id")
    return identifier


def to_alert(feature: dict[str, Any]) -> NoaaAlert:
    properties = feature.get("properties")
    if not isinstance(properties, dict):
        raise ValueError("feature has no properties object")
    zones = properties.get("affectedZones")
    return NoaaAlert.model_validate(
        {
            **{key: properties.get(key) for key in _COPIED},
            "id": properties.get("id") or feature_id(feature),
            "url": feature.get("id"),
            "affectedZones": zones if isinstance(zones, list) else [],
            "hasGeometry": feature.get("geometry") is not None,
            "references": _reference_ids(properties.get("references")),
        }
    )


def _reference_ids(references: Any) -> list[str]:
    if not isinstance(references, list):
        return []
    return [
        str(ref.get("identifier") or ref.get("@id"))
        for ref in references
        if isinstance(ref, dict) and (ref.get("identifier") or ref.get("@id"))
    ]
