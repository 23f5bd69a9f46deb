"""The ``JIRA`` connector: the issues a JQL query selects.

``GET {baseUrl}/rest/api/3/search/jql?jql=...&fields=...&maxResults=...`` and then
``&nextPageToken=...`` until the last page (with ``searchPath=/rest/api/2/search``, Data
Center's search, ``&startAt=...`` until ``total``). Two modes:

- ``snapshot`` (default): every poll reads the whole result set, so an issue that
  no longer matches (closed, moved) is pruned from the state. ``maxIssues`` caps
  the set: a larger one fails the poll rather than pruning what was not read.
- ``incremental``: the query is narrowed to issues updated since the last poll
  (see :mod:`providers.jira.jql`); nothing is pruned. Use it for large projects,
  with a JQL on attributes that do not change (project, issue type): an issue
  leaving the query while we page could shift the next page past one issue.
  ``initialLookbackMinutes`` bounds the first poll.

In snapshot mode the same shift can hide an issue from one poll: it is pruned and
published again by the next one, a repeat and never a loss.

An issue is republished when its ``fields.updated`` moves. Auth: ``email`` +
``apiToken`` is Jira Cloud's basic auth; ``apiToken`` alone is sent as a bearer
token (a Data Center personal access token).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from framework.core import Clock, MalformedResponseError, PermanentSourceError
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
from providers.jira.jql import incremental_jql, window_minutes
from providers.jira.schema import JiraIssue, issue_id, issue_version, to_issue

DEFAULT_FIELDS = (
    "summary", "status", "priority", "issuetype", "assignee", "reporter", "labels",
    "created", "updated", "resolution", "resolutiondate", "duedate", "project",
)
# Epoch seconds (our clock) at which the last successful incremental poll began.
WINDOW_CURSOR = "pollStartedAt"

Issue = dict[str, Any]


class JiraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    base_url: HttpUrl
    jql: str = Field(min_length=1)
    email: str | None = None
    api_token: SecretStr | None = None
    fields: list[str] = Field(default_factory=lambda: list(DEFAULT_FIELDS), min_length=1)
    page_size: int = Field(100, ge=1, le=5000)
    max_issues: int = Field(10_000, ge=1)
    search_path: str = Field("/rest/api/3/search/jql", pattern=r"^/")
    mode: Literal["snapshot", "incremental"] = "snapshot"
    overlap_minutes: int = Field(5, ge=1)
    # Incremental mode's first poll: how far back to read (None: everything the JQL selects).
    initial_lookback_minutes: int | None = Field(None, ge=1)

    @field_validator("email", "api_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # connectors.json writes an optional secret as ${VAR:-}, which is "" when unset.
        return None if value == "" else value

    @model_validator(mode="after")
    def _email_needs_token(self) -> JiraConfig:
        if self.email and not self.api_token:
            raise ValueError("email is set but apiToken is not (basic auth needs both)")
        return self

    @property
    def root(self) -> str:
        return str(self.base_url).rstrip("/")

    def requested_fields(self) -> str:
        # ``updated`` is the change detector: always ask for it.
        return ",".join(dict.fromkeys([*self.fields, "updated"]))

    def headers(self) -> dict[str, str]:
        return {"Accept": "application/json", **self.auth_headers()}

    def auth_headers(self) -> dict[str, str]:
        if self.api_token is None:
            return {}
        token = self.api_token.get_secret_value()
        if self.email:
            pair = base64.b64encode(f"{self.email}:{token}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}
        return {"Authorization": f"Bearer {token}"}


class JiraClient:
    def __init__(
        self, settings: JiraConfig, http: HttpClient, *, clock: Clock, connector: str
    ) -> None:
        self.settings = settings
        self.http = http
        self._clock = clock
        self._connector = connector

    async def issues(self, state: ConnectorState) -> FetchResult[Issue]:
        settings = self.settings
        if settings.mode == "snapshot":
            return FetchResult(items=await self.search(settings.jql), complete=True)
        started_s = self._clock.time()
        last_s = _epoch_s(state.cursors.get(WINDOW_CURSOR))
        minutes = (
            settings.initial_lookback_minutes if last_s is None
            else window_minutes(started_s - last_s, settings.overlap_minutes)
        )
        items = await self.search(incremental_jql(settings.jql, minutes))
        return FetchResult(items=items, complete=False, cursors={WINDOW_CURSOR: f"{started_s:.3f}"})

    async def search(self, jql: str) -> list[Issue]:
        """Every issue ``jql`` selects, each once (the first, newest copy wins)."""
        url = self.settings.root + self.settings.search_path
        issues: dict[str, Issue] = {}
        unidentified: list[Issue] = []
        pages_asked: set[tuple[str, str | int]] = set()
        following: dict[str, str | int] = {}
        while True:
            params = {"jql": jql, "fields": self.settings.requested_fields(),
                      "maxResults": self.settings.page_size, **following}
            body = await read_json(await self.http.get(url, params=params),
                                   connector=self._connector)
            page, following = self._page(body, url)
            for issue in page:
                try:
                    issues.setdefault(issue_id(issue), issue)
                except ValueError:
                    unidentified.append(issue)  # the poll counts and logs it
            self._check_size(len(issues) + len(unidentified))
            if not following:
                return [*issues.values(), *unidentified]
            (next_page,) = following.items()
            if next_page in pages_asked:
                raise MalformedResponseError(
                    f"{url}: the next page ({next_page[0]}={next_page[1]}) was already read; "
                    "stopping instead of paging for ever", connector=self._connector)
            pages_asked.add(next_page)

    def _page(self, body: Any, url: str) -> tuple[Sequence[Any], dict[str, str | int]]:
        """The page's issues and the parameter that asks for the next page ({} on the last).

        Jira Cloud's enhanced search pages by ``nextPageToken`` and ends with
        ``isLast``; Data Center's ``/rest/api/2/search`` by ``startAt`` and ``total``.
        """
        issues = body.get("issues") if isinstance(body, dict) else None
        if not isinstance(issues, list):
            raise MalformedResponseError(
                f"{url}: expected an object with an 'issues' list, got {describe_shape(body)}",
                connector=self._connector)
        if "nextPageToken" in body or "isLast" in body:
            return issues, self._next_token(body, url)
        total, start = body.get("total"), body.get("startAt")
        if not isinstance(total, int) or not isinstance(start, int):
            return issues, {}
        if start + len(issues) >= total:
            return issues, {}
        if not issues:
            raise MalformedResponseError(
                f"{url}: empty page at startAt={start} of total={total}; the result set "
                "cannot be read completely", connector=self._connector)
        return issues, {"startAt": start + len(issues)}

    def _next_token(self, body: dict[str, Any], url: str) -> dict[str, str | int]:
        token = body.get("nextPageToken")
        # Jira Cloud omits nextPageToken on the last page (JRACLOUD-92184); isLast is
        # the documented end marker, and a page that is not last must say where next.
        if body.get("isLast") is True or (token is None and "isLast" not in body):
            return {}
        if not isinstance(token, str) or not token:
            raise MalformedResponseError(
                f"{url}: page is not the last (isLast={body.get('isLast')!r}) but has no "
                "nextPageToken; the result set cannot be read completely",
                connector=self._connector)
        return {"nextPageToken": token}

    def _check_size(self, count: int) -> None:
        if count > self.settings.max_issues:
            raise PermanentSourceError(
                f"the JQL selects more than maxIssues={self.settings.max_issues} issues; "
                "narrow the JQL, raise maxIssues, or use mode=incremental",
                connector=self._connector)


async def _fetch(client: JiraClient, state: ConnectorState) -> FetchResult[Issue]:
    return await client.issues(state)


def _parts(
    settings: JiraConfig, wiring: SourceWiring
) -> SourceParts[JiraClient, Issue, JiraIssue]:
    client = JiraClient(settings, wiring.http, clock=wiring.context.clock,
                        connector=wiring.config.name)
    return SourceParts[JiraClient, Issue, JiraIssue](
        provider=client,
        fetcher=_fetch,
        item_id=issue_id,
        transformer=partial(to_issue, browse_url=settings.root + "/browse"),
        change_detector=issue_version,
    )


create_jira_connector = http_connector_factory(HttpSourceType(
    settings=JiraConfig, headers=JiraConfig.headers, build=_parts))


def _epoch_s(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None  # an unreadable cursor: read everything again rather than guess

