"""NOAA_WEATHER's case for the provider contract (framework.testing.contract):
alert features in the shape of ``GET /alerts/active`` (application/geo+json)."""

from __future__ import annotations

from typing import Any

from framework.testing import ProviderCase, Recording, Reply, Routes
from providers.noaa.schema import NoaaAlert

PATH = "/alerts/active"


_EVENTS = ("Red Flag Warning", "High Wind Warning", "Flash Flood Warning", "Winter Storm Warning")


def alert_feature(number: int, revision: int = 0) -> dict[str, Any]:
    """Alert ``number`` at ``revision``, in the shape api.weather.gov serves."""
    urn = f"urn:oid:2.49.0.1.840.0.{number:06d}.001.1"
    return {
        "id": f"https://api.weather.gov/alerts/{urn}",
        "type": "Feature",
        "geometry": None,
        "properties": {
            "@id": f"https://api.weather.gov/alerts/{urn}",
            "@type": "wx:Alert",
            "id": urn,
            "areaDesc": f"Zone {number}, CA",
            "affectedZones": [f"https://api.weather.gov/zones/forecast/CAZ{number % 999:03d}"],
            "sent": f"2026-11-20T14:{revision % 60:02d}:00-08:00",
            "effective": "2026-11-20T14:00:00-08:00",
            "onset": "2026-11-20T18:00:00-08:00",
            "expires": "2026-11-21T06:00:00-08:00",
            "ends": None,
            "status": "Actual",
            "messageType": "Update" if revision else "Alert",
            "category": "Met",
            "severity": "Severe",
            "certainty": "Likely",
            "urgency": "Expected",
            "event": _EVENTS[number % len(_EVENTS)],
            "senderName": "NWS San Francisco CA",
            "headline": f"{_EVENTS[number % len(_EVENTS)]} issued (revision {revision})",
            "description": "Strong winds and low humidity.",
            "instruction": None,
            "response": "Prepare",
            "parameters": {"revision": [str(revision)]},
        },
    }


def _collection(features: list[dict[str, Any]], **kwargs: Any) -> Reply:
    body = {"type": "FeatureCollection", "features": features}
    return Reply(body=body, content_type="application/geo+json", **kwargs)


def _routes(*replies: Reply) -> Routes:
    return {PATH: replies}


CASES = [
    ProviderCase(
        type_name="NOAA_WEATHER",
        signal_model=NoaaAlert,
        provider_config=lambda base_url: {"baseUrl": base_url, "area": "CA"},
        required_fields=["baseUrl"],
        initial=Recording(
            lambda _: _routes(_collection([alert_feature(1), alert_feature(2), alert_feature(3)])),
            [alert_feature(n)["id"] for n in (1, 2, 3)],
        ),
        changed=Recording(
            lambda _: _routes(_collection(
                [alert_feature(1), alert_feature(2, revision=1), alert_feature(3)])),
            [alert_feature(2)["id"]],
        ),
        not_modified=Recording(
            lambda _: _routes(_collection([alert_feature(1)], etag='"noaa-1"')),
            [alert_feature(1)["id"]],
        ),
        unsupported={"paged": "the active-alerts endpoint returns every active alert in "
                              "one response; the connector does not page"},
    )
]
