"""The ``NOAA_WEATHER`` connector: the active alerts of chosen areas and severities.

``GET {baseUrl}{alertsPath}?area=CA,OR&severity=Severe,Extreme`` with the
User-Agent the API requires and ``If-None-Match`` / ``If-Modified-Since`` from
the last poll. The response is the complete set of active alerts, so alerts
that are no longer in it are pruned from the state.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl
from pydantic.alias_generators import to_camel

from framework.core import MalformedResponseError
from framework.polling import (
    ConnectorState,
    FetchResult,
    HttpClient,
    HttpSourceType,
    SourceParts,
    SourceWiring,
    describe_shape,
    http_connector_factory,
    read_json,
)
from providers.noaa.schema import NoaaAlert, feature_id, to_alert

DEFAULT_USER_AGENT = "connector-fleet/0.1 (+https://github.com/connector-fleet; ops@example.com)"
_FILTERS = ("area", "severity", "urgency", "certainty", "event", "status")


class NoaaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    base_url: HttpUrl
    alerts_path: str = Field("/alerts/active", pattern=r"^/")
    user_agent: str = Field(DEFAULT_USER_AGENT, min_length=1)
    area: str | None = None
    severity: str | None = None
    urgency: str | None = None
    certainty: str | None = None
    event: str | None = None
    status: str | None = None

    @property
    def alerts_url(self) -> str:
        return str(self.base_url).rstrip("/") + self.alerts_path

    def headers(self) -> dict[str, str]:
        return {"User-Agent": self.user_agent, "Accept": "application/geo+json"}

    def query(self) -> dict[str, str]:
        return {name: value for name in _FILTERS if (value := getattr(self, name))}


class NoaaClient:
    def __init__(self, settings: NoaaConfig, http: HttpClient, *, connector: str) -> None:
        self.settings = settings
        self.http = http
        self._connector = connector

    async def active_alerts(self, state: ConnectorState) -> FetchResult[dict[str, Any]]:
        headers = {}
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        response = await self.http.get(
            self.settings.alerts_url, params=self.settings.query(), headers=headers
        )
        if response.status_code == 304:
            return FetchResult(not_modified=True)
        body = await read_json(response, connector=self._connector)
        features = body.get("features") if isinstance(body, dict) else None
        if not isinstance(features, list):
            raise MalformedResponseError(
                f"{self.settings.alerts_url}: expected a GeoJSON FeatureCollection with a "
                f"'features' list, got {describe_shape(body)}",
                connector=self._connector,
            )
        return FetchResult(
            items=features,
            complete=True,
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
        )


async def _fetch(client: NoaaClient, state: ConnectorState) -> FetchResult[dict[str, Any]]:
    return await client.active_alerts(state)


def _parts(
    settings: NoaaConfig, wiring: SourceWiring
) -> SourceParts[NoaaClient, dict[str, Any], NoaaAlert]:
    client = NoaaClient(settings, wiring.http, connector=wiring.config.name)
    return SourceParts[NoaaClient, dict[str, Any], NoaaAlert](
        provider=client,
        fetcher=_fetch,
        item_id=feature_id,
        transformer=to_alert,
    )


create_noaa_weather_connector = http_connector_factory(HttpSourceType(
    settings=NoaaConfig, headers=NoaaConfig.headers, build=_parts))
