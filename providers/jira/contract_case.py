"""JIRA's case for the provider contract (framework.testing.contract): issues in the
shape of ``GET /rest/api/3/search/jql`` (Jira Cloud enhanced search)."""

from __future__ import annotations

from typing import Any

from framework.testing import ProviderCase, Recording, Reply, Routes
from providers.jira.schema import JiraIssue

PATH = "/rest/api/3/search/jql"


def issue(number: int, revision: int = 0) -> dict[str, Any]:
    """Issue SEC-{number}; each revision is a later ``updated`` and a new summary."""
    return {
        "expand": "renderedFields,names,schema,operations,editmeta,changelog",
        "id": str(10_000 + number),
        "self": f"https://example.atlassian.net/rest/api/3/issue/{10_000 + number}",
        "key": f"SEC-{number}",
        "fields": {
            "summary": f"Finding {number} (revision {revision})",
            "status": {"name": "Open", "id": "10000",
                       "statusCategory": {"id": 2, "key": "new", "name": "To Do"}},
            "priority": {"name": "High", "id": "2"},
            "issuetype": {"id": "10004", "name": "Bug", "subtask": False},
            "assignee": None,
            "reporter": {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Emma Richards"},
            "labels": ["security"],
            "created": "2026-11-18T09:12:44.512+0100",
            "updated": f"2026-11-20T14:{revision:02d}:12.345+0100",
            "resolution": None,
            "project": {"id": "10002", "key": "SEC", "name": "Security"},
        },
    }


def search_page(issues: list[dict[str, Any]], next_page_token: str | None = None) -> Reply:
    body: dict[str, Any] = {"issues": issues, "isLast": next_page_token is None}
    if next_page_token:
        body["nextPageToken"] = next_page_token
    return Reply(body=body)


def _routes(*replies: Reply) -> Routes:
    return {PATH: replies}


def _ids(*numbers: int) -> list[str]:
    return [str(10_000 + n) for n in numbers]


CASES = [
    ProviderCase(
        type_name="JIRA",
        signal_model=JiraIssue,
        provider_config=lambda base_url: {"baseUrl": base_url, "jql": "project = SEC",
                                          "email": "bot@example.com",
                                          "apiToken": "contract-jira-token"},
        required_fields=["baseUrl", "jql"],
        initial=Recording(lambda _: _routes(search_page([issue(1), issue(2), issue(3)])),
                          _ids(1, 2, 3)),
        changed=Recording(
            lambda _: _routes(search_page([issue(1), issue(2, revision=1), issue(3)])),
            _ids(2)),
        paged=Recording(
            lambda _: _routes(search_page([issue(1), issue(2)], "page-2"),
                              search_page([issue(3)])),
            _ids(1, 2, 3)),
        unsupported={"not_modified": "Jira's search answers carry no ETag or Last-Modified "
                                     "and ignore conditional requests; versions come from "
                                     "each issue's fields.updated"},
    )
]
