"""Generated NOAA alert features in the shape of api.weather.gov's GeoJSON."""

from __future__ import annotations

from typing import Any

_EVENTS = ("Red Flag Warning", "High Wind Warning", "Flash Flood Warning", "Winter Storm Warning")


def alert_feature(number: int, revision: int = 0) -> dict[str, Any]:
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


def collection(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "@context": ["https://geojson.org/geojson-ld/geojson-context.jsonld"],
        "type": "FeatureCollection",
        "features": features,
        "title": "Current watches, warnings, and advisories",
        "updated": "2026-11-20T22:00:00+00:00",
    }


class ChangingFeed:
    """Each request returns ``size`` alerts; about ``1/change_every`` of them have a
    new revision (never seen before) compared with the previous request."""

    def __init__(self, size: int, change_every: int = 10) -> None:
        self.size = size
        self.change_every = change_every
        self.requests = 0
        self.revisions = [0] * size
        self.last_served: list[dict[str, Any]] = []

    def next_body(self) -> dict[str, Any]:
        self.requests += 1
        for number in range(self.size):
            if (number + self.requests) % self.change_every == 0:
                self.revisions[number] = self.requests
        self.last_served = [alert_feature(n, self.revisions[n]) for n in range(self.size)]
        return collection(self.last_served)
