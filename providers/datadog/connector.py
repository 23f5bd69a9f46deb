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
resets) instead of Retry-After; it is read as one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr
from pydantic.alias_generators import to_camel

from framework.core import Clock, Logger, MalformedResponseError
from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    ConnectorState,
    FetchResult,
    HttpClient,
    PollingConnector,
    UniversalPollingConnector,
    parse_json,
    parse_provider_config,
)
from providers.datadog.schema import DatadogEvent, event_id, event_timestamp, to_event

EVENTS_PATH = "/api/v2/events"
CURSOR = "from"


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
        body = parse_json(response, connector=self._connector)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise MalformedResponseError(
                f"{EVENTS_PATH}: expected an object with a 'data' list, got {_shape(body)}",
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


class RateLimitResetTransport(httpx.AsyncBaseTransport):
    """Gives a 429 that has only ``X-RateLimit-Reset`` the equivalent Retry-After,
    so the framework's retry policy honours Datadog's reset time."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        reset = response.headers.get("X-RateLimit-Reset", "").strip()
        if response.status_code == 429 and "Retry-After" not in response.headers and (
            reset.isdigit()
        ):
            response.headers["Retry-After"] = reset
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def create_datadog_connector(
    config: ConnectorConfig, context: ConnectorContext
) -> PollingConnector:
    settings = parse_provider_config(DatadogConfig, config)
    http = HttpClient(
        config,
        clock=context.clock,
        logger=context.logger,
        headers={
            "DD-API-KEY": settings.api_key.get_secret_value(),
            "DD-APPLICATION-KEY": settings.app_key.get_secret_value(),
            "Accept": "application/json",
        },
        transport=RateLimitResetTransport(context.http_transport or httpx.AsyncHTTPTransport()),
    )
    client = DatadogEventsClient(
        settings, http, clock=context.clock, logger=context.logger, connector=config.name
    )
    return UniversalPollingConnector[DatadogEventsClient, dict[str, Any], DatadogEvent](
        config=config,
        provider=client,
        page_fetcher=DatadogEventsClient.pages,
        item_id=event_id,
        transformer=to_event,
        store=context.store,
        logger=context.logger,
        on_close=http.aclose,
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _shape(body: Any) -> str:
    if isinstance(body, dict):
        return "an object with keys " + ", ".join(sorted(body)[:8])
    return f"a JSON {type(body).__name__}"
