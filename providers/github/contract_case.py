"""GITHUB's case for the provider contract (framework.testing.contract): items in the
shape of ``GET /repos/{owner}/{repo}/issues`` (REST API 2022-11-28)."""

from __future__ import annotations

from typing import Any

from framework.testing import ProviderCase, Recording, Reply, Routes
from providers.github.schema import GitHubIssue

REPOSITORY = "octo-org/api"
PATH = f"/repos/{REPOSITORY}/issues"
NEXT_PATH = "/repositories/4711/issues"


def issue(number: int, revision: int = 0) -> dict[str, Any]:
    """Issue #{number}; each revision is a later ``updated_at`` and a new title."""
    api = f"https://api.github.com/repos/{REPOSITORY}"
    return {
        "url": f"{api}/issues/{number}",
        "repository_url": api,
        "html_url": f"https://github.com/{REPOSITORY}/issues/{number}",
        "id": 2_900_000_000 + number,
        "node_id": f"I_kwDOAbcd{number}",
        "number": number,
        "title": f"Webhook deliveries time out ({number}, revision {revision})",
        "user": {"login": "mona", "id": 583231, "type": "User", "site_admin": False},
        "labels": [{"id": 5001, "name": "bug", "color": "d73a4a", "default": True}],
        "state": "open",
        "locked": False,
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "comments": revision,
        "created_at": "2026-11-19T09:31:07Z",
        "updated_at": f"2026-11-20T16:{revision:02d}:{number % 60:02d}Z",
        "closed_at": None,
        "author_association": "MEMBER",
        "body": "Deliveries to slow endpoints fail.",
        "state_reason": None,
    }


def listing(items: list[dict[str, Any]], *, next_url: str | None = None,
            etag: str | None = None) -> Reply:
    headers = {"Link": f'<{next_url}>; rel="next", <{next_url}>; rel="last"'} if next_url else {}
    return Reply(body=items, headers=headers, etag=etag)


def _routes(*replies: Reply) -> Routes:
    return {PATH: replies}


def _ids(*numbers: int) -> list[str]:
    return [f"{REPOSITORY}#{n}" for n in numbers]


CASES = [
    ProviderCase(
        type_name="GITHUB",
        signal_model=GitHubIssue,
        provider_config=lambda base_url: {"baseUrl": base_url, "repositories": [REPOSITORY],
                                          "token": "contract-github-token", "perPage": 2},
        required_fields=["repositories"],
        initial=Recording(lambda _: _routes(listing([issue(3), issue(2), issue(1)])),
                          _ids(3, 2, 1)),
        changed=Recording(lambda _: _routes(listing([issue(2, revision=1), issue(3)])),
                          _ids(2)),
        paged=Recording(
            lambda base_url: {
                PATH: [listing([issue(3), issue(2)], next_url=f"{base_url}{NEXT_PATH}?page=2")],
                NEXT_PATH: [listing([issue(1)])],
            },
            _ids(3, 2, 1)),
        not_modified=Recording(lambda _: _routes(listing([issue(1)], etag='W/"gh-1"')),
                               _ids(1)),
    )
]
