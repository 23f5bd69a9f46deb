"""The ``DATADOG`` connector: the Events Explorer's events, by a sliding time window.

Why events and not monitors: a user watches what *happens* — a monitor
triggering, recovering or re-notifying, a deploy, a configuration change —
and every monitor state change is itself an event (``source:alert``), with
the monitor id and group. ``GET /api/v1/monitor`` only gives each monitor's
current state, so a transition between two polls (alert, then recovery) would
be missed; the events stream keeps both.

``GET {api}/api/v2/events?filter[query]=...&filter[from]=...&filter[to]=now
&sort=timestamp&page[limit]=N`` with ``DD-API-KEY`` / ``DD-APPLICATION-KEY``
(never logged), then ``page[cursor]=meta.page.after`` until the response has
no ``after``. The window starts at the ``from`` cursor kept in the state minus
``overlapS`` (late-indexed events are not missed at the boundary; the ones
seen twice are skipped by their version). Oldest first, so after each page
the cursor moves to the newest event published, and a failure mid-way
resumes there. After the last page the cursor is the window's end, and ids
older than the window are pruned: the version state holds one window.

A 429 from Datadog carries ``X-RateLimit-Reset`` (seconds until the limit
resets) instead of Retry-After; it is read as one (:data:`RATE_LIMITS`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr
from pydantic.alias_generators import to_camel

from framework.core import Clock, Logger, MalformedResponseError
from framework.polling import (
    ConnectorState,
    FetchResult,
    HttpClient,
    HttpSourceType,
    RateLimitRules,
    SourceParts,
    SourceWiring,
    describe_shape,
    http_connector_factory,
    read_json,
)
from providers.datadog.schema import DatadogEvent, event_id, event_timestamp, to_event

EVENTS_PATH = "/api/v2/events"
CURSOR = "from"
RATE_LIMITS = RateLimitRules(name="Datadog", reset_header="X-RateLimit-Reset")


class DatadogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    api_key: SecretStr
    app_key: SecretStr
    # The Datadog site of the organization (datadoghq.com, datadoghq.eu, us5.datadoghq.com...).
    site: str = Field("datadoghq.com", pattern=r"^[a-z0-9]+(\.[a-z0-9-]+)+$")
    # Overrides site (a proxy, or a test server).
    base_url: HttpUrl | None = None
    query: str | None = None
    page_limit: int = Field(100, ge=1, le=1000)
    initial_lookback_s: int = Field(3600, gt=0)
    overlap_s: int = Field(120, ge=0)
    max_pages: int = Field(50, ge=1)

    @property
    def api_url(self) -> str:
        if self.base_url is not None:
            return str(self.base_url).rstrip("/")
        return f"https://api.{self.site}"

    def headers(self) -> dict[str, str]:
        return {
            "DD-API-KEY": self.api_key.get_secret_value(),
            "DD-APPLICATION-KEY": self.app_key.get_secret_value(),
            "Accept": "application/json",
        }


class DatadogEventsClient:
    def __init__(
        self, settings: DatadogConfig, http: HttpClient, *, clock: Clock, logger: Logger,
        connector: str,
    ) -> None:
        self.settings = settings
        self.http = http
        self._clock = clock
        self._log = logger
        self._connector = connector

    async def pages(self, state: ConnectorState) -> AsyncIterator[FetchResult[dict[str, Any]]]:
        settings = self.settings
        window_end = datetime.fromtimestamp(self._clock.time(), tz=UTC)
        start = self._window_start(state, window_end)
        params = {
            "filter[from]": _iso(start - timedelta(seconds=settings.overlap_s)),
            "filter[to]": _iso(window_end),
            "sort": "timestamp",
            "page[limit]": str(settings.page_limit),
        }
        if settings.query:
            params["filter[query]"] = settings.query
        published_until = start
        for number in range(1, settings.max_pages + 1):
            events, after = await self._page(params)
            published_until = max([published_until, *_timestamps(events)])
            if after is None:
                yield FetchResult(items=events, complete=True,
                                  cursors={CURSOR: _iso(window_end)})
                return
            yield FetchResult(items=events, complete=False,
                              cursors={CURSOR: _iso(published_until)})
            params["page[cursor]"] = after
            if number == settings.max_pages:
                self._log.warning("max_pages_reached", max_pages=settings.max_pages,
                                  resume_from=_iso(published_until))

    def _window_start(self, state: ConnectorState, window_end: datetime) -> datetime:
        saved = state.cursors.get(CURSOR)
        if saved:
            # A cursor ahead of this clock (another host's clock, a reset clock) would
            # make an empty window: never start after now.
            return min(datetime.fromisoformat(saved), window_end)
        return window_end - timedelta(seconds=self.settings.initial_lookback_s)

    async def _page(self, params: dict[str, str]) -> tuple[list[dict[str, Any]], str | None]:
        url = self.settings.api_url + EVENTS_PATH
        response = await self.http.get(url, params=params)
        body = await read_json(response, connector=self._connector)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise MalformedResponseError(
                f"{EVENTS_PATH}: expected an object with a 'data' list, got {describe_shape(body)}",
                connector=self._connector,
            )
        meta = body.get("meta")
        page = meta.get("page") if isinstance(meta, dict) else None
        after = page.get("after") if isinstance(page, dict) else None
        # An empty page with a cursor would loop for ever: it is the end.
        return data, after if isinstance(after, str) and after and data else None


def _timestamps(events: list[dict[str, Any]]) -> list[datetime]:
    found = []
    for event in events:
        try:
            found.append(event_timestamp(event))
        except (ValueError, AttributeError, TypeError):
            continue  # the polling loop reports the bad item; it moves no cursor
    return found


def _parts(
    settings: DatadogConfig, wiring: SourceWiring
) -> SourceParts[DatadogEventsClient, dict[str, Any], DatadogEvent]:
    client = DatadogEventsClient(settings, wiring.http, clock=wiring.context.clock,
                                 logger=wiring.context.logger, connector=wiring.config.name)
    return SourceParts[DatadogEventsClient, dict[str, Any], DatadogEvent](
        provider=client,
        page_fetcher=DatadogEventsClient.pages,
        item_id=event_id,
        transformer=to_event,
    )


create_datadog_connector = http_connector_factory(HttpSourceType(
    settings=DatadogConfig, headers=DatadogConfig.headers, build=_parts,
    rate_limits=RATE_LIMITS, base_url=lambda settings: settings.api_url,
))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

