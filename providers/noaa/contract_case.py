"""NOAA_WEATHER's case for the provider contract (framework.testing.contract):
alert features in the shape of ``GET /alerts/active`` (application/geo+json)."""

from __future__ import annotations

from typing import Any

from framework.testing.contract import ProviderCase, Recording, Routes
from framework.testing.replay_http import Reply
from providers.noaa.schema import NoaaAlert

PATH = "/alerts/active"


def alert(number: int, revision: int = 0) -> dict[str, Any]:
    urn = f"urn:oid:2.49.0.1.840.0.{number:06d}.001.1"
    return {
        "id": f"https://api.weather.gov/alerts/{urn}",
        "type": "Feature",
        "geometry": None,
        "properties": {
            "@id": f"https://api.weather.gov/alerts/{urn}",
            "id": urn,
            "areaDesc": f"Zone {number}, CA",
            "affectedZones": [f"https://api.weather.gov/zones/forecast/CAZ{number:03d}"],
            "sent": f"2026-11-20T14:{revision:02d}:00-08:00",
            "status": "Actual",
            "messageType": "Update" if revision else "Alert",
            "severity": "Severe",
            "certainty": "Likely",
            "urgency": "Expected",
            "event": "High Wind Warning",
            "headline": f"High Wind Warning (revision {revision})",
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
            lambda _: _routes(_collection([alert(1), alert(2), alert(3)])),
            [alert(n)["id"] for n in (1, 2, 3)],
        ),
        changed=Recording(
            lambda _: _routes(_collection([alert(1), alert(2, revision=1), alert(3)])),
            [alert(2)["id"]],
        ),
        not_modified=Recording(
            lambda _: _routes(_collection([alert(1)], etag='"noaa-1"')), [alert(1)["id"]]
        ),
        unsupported={"paged": "the active-alerts endpoint returns every active alert in "
                              "one response; the connector does not page"},
    )
]
