"""Generated NOAA alert features in the shape of api.weather.gov's GeoJSON."""

from __future__ import annotations

from typing import Any

from providers.noaa.contract_case import alert_feature

__all__ = ["alert_feature", "collection"]

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
