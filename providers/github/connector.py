"""The ``GITHUB`` connector: issues and pull requests of chosen repositories.

Per repository, ``GET {baseUrl}/repos/{owner}/{repo}/issues?state=all&sort=updated
&direction=desc&since=...&per_page=100``, following the ``Link: rel="next"`` pages.
Incremental: ``since`` is the newest ``updated_at`` already read, minus
``overlapSeconds`` for GitHub's replication lag (the overlap comes back unchanged
and is skipped). Newest first on purpose: an item updated while we page jumps to
page one, already read, so later pages repeat an item instead of skipping one.

Each repository keeps its cursors (``since:{repo}``, ``etag:{repo}``). The first
page is asked with ``If-None-Match``; a 304 costs no rate limit. A repository
that fails (not found, no access, down) is logged and skipped with its cursors
unchanged, so the others go on; a rate limit ends the whole poll, since it is
the token's and every repository shares it.

GitHub answers an exhausted limit with 403 *or* 429 (REST docs, "Troubleshooting
the REST API"): the primary limit says ``x-ratelimit-remaining: 0`` and the epoch
second ``x-ratelimit-reset``; a secondary limit sends ``retry-after`` or only a
message, after which one should wait at least a minute (:data:`RATE_LIMITS`).
Any other 403 (a token without access) stays a permanent error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator
from pydantic.alias_generators import to_camel

from framework.core import Logger, MalformedResponseError, RateLimitedError, SourceError
from framework.polling import (
    ConnectorState,
    FetchResult,
    HttpClient,
    HttpSourceType,
    LinkHeader,
    PageRequest,
    RateLimitRules,
    SourceParts,
    SourceWiring,
    describe_shape,
    http_connector_factory,
    walk_pages,
)
from providers.github.schema import (
    GitHubIssue,
    RepoIssue,
    is_pull_request,
    item_id,
    item_version,
    to_issue,
    updated_at,
)

DEFAULT_USER_AGENT = "connector-fleet/0.1 (+https://github.com/connector-fleet)"
API_VERSION = "2022-11-28"
_REPOSITORY = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"
SECONDARY_LIMIT_WAIT_S = 60
RATE_LIMITS = RateLimitRules(
    name="GitHub",
    statuses=frozenset({403, 429}),
    reset_header="x-ratelimit-reset",
    reset_is_epoch=True,
    remaining_header="x-ratelimit-remaining",
    body_markers=(b"secondary rate limit", b"abuse detection"),
    fallback_wait_s=SECONDARY_LIMIT_WAIT_S,
)


class GitHubConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    base_url: HttpUrl = HttpUrl("https://api.github.com")
    repositories: list[Annotated[str, Field(pattern=_REPOSITORY)]] = Field(min_length=1)
    token: SecretStr | None = None
    state: Literal["open", "closed", "all"] = "all"
    labels: str | None = None
    include_pull_requests: bool = True
    per_page: int = Field(100, ge=1, le=100)
    overlap_seconds: int = Field(60, ge=0)
    initial_since: datetime | None = None
    user_agent: str = Field(DEFAULT_USER_AGENT, min_length=1)

    @field_validator("token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # connectors.json writes an optional secret as ${VAR:-}, which is "" when unset.
        return None if value == "" else value

    def issues_url(self, repository: str) -> str:
        return f"{str(self.base_url).rstrip('/')}/repos/{repository}/issues"

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION,
                   "User-Agent": self.user_agent}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token.get_secret_value()}"
        return headers


@dataclass(frozen=True)
class _Listing:
    """What one repository answered: its items and the cursors to save with them."""

    items: list[RepoIssue]
    cursors: dict[str, str]
    not_modified: bool = False


class GitHubClient:
    def __init__(
        self, settings: GitHubConfig, http: HttpClient, *, logger: Logger, connector: str
    ) -> None:
        self.settings = settings
        self.http = http
        self._log = logger
        self._connector = connector

    async def issues(self, state: ConnectorState) -> FetchResult[RepoIssue]:
        listings: list[_Listing] = []
        failures: list[SourceError] = []
        for repository in self.settings.repositories:
            try:
                listings.append(await self.list_repository(repository, state))
            except RateLimitedError:
                raise
            except SourceError as exc:
                failures.append(exc)
                self._log.error("repository_failed", repository=repository, error=str(exc))
        if failures and not listings:
            raise failures[0]
        if not failures and all(listing.not_modified for listing in listings):
            return FetchResult(not_modified=True)
        return FetchResult(
            items=[item for listing in listings for item in listing.items],
            complete=False,
            cursors={k: v for listing in listings for k, v in listing.cursors.items()},
        )

    async def list_repository(self, repository: str, state: ConnectorState) -> _Listing:
        """Every item of ``repository`` updated since its cursor, each once."""
        etag = state.cursors.get(f"etag:{repository}")
        since = _parse_time(state.cursors.get(f"since:{repository}"))
        first = PageRequest(self.settings.issues_url(repository), params=self._params(since),
                            headers={"If-None-Match": etag} if etag else {})
        raw: list[Any] = []
        cursors: dict[str, str] = {}
        async for page in walk_pages(self.http, LinkHeader(), first, read_items=self._issues_of,
                                     connector=self._connector):
            if page.not_modified:
                return _Listing(items=[], cursors={}, not_modified=True)
            if page.number == 1 and (tag := page.response.headers.get("ETag")):
                cursors[f"etag:{repository}"] = tag
            raw.extend(page.items)
        # Over every item read, pull requests included, so that filtering them out
        # does not hold the cursor back; never earlier than before (a deleted item).
        newest = max(filter(None, [since, *map(updated_at, raw)]), default=None)
        if newest is not None:
            cursors[f"since:{repository}"] = _github_time(newest)
        return _Listing(items=self._unique(repository, raw), cursors=cursors)

    def _issues_of(self, body: Any, request: PageRequest) -> list[Any]:
        if not isinstance(body, list):
            raise MalformedResponseError(
                f"{request.url}: expected a JSON list of issues, got {describe_shape(body)}",
                connector=self._connector)
        return body

    def _unique(self, repository: str, raw: list[Any]) -> list[RepoIssue]:
        """One copy per number, the first (newest); an item without a number is kept
        as it is, for the poll to count and log as failed."""
        unique: dict[object, RepoIssue] = {}
        for issue in raw:
            if not self.settings.include_pull_requests and is_pull_request(issue):
                continue
            number = issue.get("number") if isinstance(issue, dict) else None
            unique.setdefault(number if isinstance(number, int) else object(),
                              RepoIssue(repository, issue))
        return list(unique.values())

    def _params(self, since: datetime | None) -> dict[str, str | int]:
        settings = self.settings
        params: dict[str, str | int] = {"state": settings.state, "sort": "updated",
                                        "direction": "desc", "per_page": settings.per_page}
        if settings.labels:
            params["labels"] = settings.labels
        start = since or settings.initial_since
        if start is not None:
            start = start if start.tzinfo else start.replace(tzinfo=UTC)
            params["since"] = _github_time(start - timedelta(seconds=settings.overlap_seconds))
        return params


async def _fetch(client: GitHubClient, state: ConnectorState) -> FetchResult[RepoIssue]:
    return await client.issues(state)


def _parts(
    settings: GitHubConfig, wiring: SourceWiring
) -> SourceParts[GitHubClient, RepoIssue, GitHubIssue]:
    client = GitHubClient(settings, wiring.http, logger=wiring.context.logger,
                          connector=wiring.config.name)
    return SourceParts[GitHubClient, RepoIssue, GitHubIssue](
        provider=client,
        fetcher=_fetch,
        item_id=item_id,
        transformer=to_issue,
        change_detector=item_version,
    )


create_github_connector = http_connector_factory(HttpSourceType(
    settings=GitHubConfig, headers=GitHubConfig.headers, build=_parts,
    rate_limits=RATE_LIMITS, base_url=lambda settings: str(settings.base_url),
))


def _parse_time(value: str | None) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None  # an unreadable cursor: list from initialSince again rather than guess
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def _github_time(moment: datetime) -> str:
    """ISO 8601 in UTC to the second, as GitHub writes ``updated_at``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
