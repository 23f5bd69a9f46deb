"""The GitHub issue signal, normalized from one item of
``GET /repos/{owner}/{repo}/issues`` (REST API 2022-11-28), which lists pull
requests too: those carry a ``pull_request`` object.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from framework.polling import content_version


@dataclass(frozen=True, slots=True)
class RepoIssue:
    """One listed item and the repository (as configured) it was listed from."""

    repository: str
    issue: Any


class GitHubIssue(BaseModel):
    """One issue or pull request. Optional fields are None when GitHub sends null."""

    model_config = ConfigDict(frozen=True)

    source: str = "github"
    id: str
    repository: str
    number: int
    kind: Literal["issue", "pull_request"]
    title: str
    state: str
    stateReason: str | None = None
    url: str | None = None
    author: str | None = None
    labels: list[str] = []
    assignees: list[str] = []
    milestone: str | None = None
    comments: int = 0
    locked: bool = False
    draft: bool | None = None
    mergedAt: str | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    closedAt: str | None = None
    body: str | None = None
    githubId: int | None = None
    nodeId: str | None = None


def item_id(item: RepoIssue) -> str:
    """``octo-org/api#42``: an issue number is unique within its repository."""
    number = _object(item.issue).get("number")
    if not isinstance(number, int) or isinstance(number, bool):
        raise ValueError("issue has no number")
    return f"{item.repository}#{number}"


def item_version(item: RepoIssue) -> str:
    """``updated_at``: GitHub moves it on every edit, comment, label or state change."""
    updated = _object(item.issue).get("updated_at")
    return updated if isinstance(updated, str) and updated else content_version(item.issue)


def updated_at(issue: Any) -> datetime | None:
    """The item's ``updated_at`` as an aware datetime, None when absent or unreadable."""
    value = issue.get("updated_at") if isinstance(issue, dict) else None
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def is_pull_request(issue: Any) -> bool:
    return isinstance(issue, dict) and isinstance(issue.get("pull_request"), dict)


def to_issue(item: RepoIssue) -> GitHubIssue:
    issue = _object(item.issue)
    pull = issue.get("pull_request") if is_pull_request(issue) else None
    return GitHubIssue.model_validate({
        "id": item_id(item),
        "repository": item.repository,
        "number": issue.get("number"),
        "kind": "pull_request" if pull is not None else "issue",
        "title": issue.get("title"),
        "state": issue.get("state"),
        "stateReason": issue.get("state_reason"),
        "url": issue.get("html_url"),
        "author": _login(issue.get("user")),
        "labels": [_label_name(label) for label in _list(issue, "labels")],
        "assignees": [login for user in _list(issue, "assignees") if (login := _login(user))],
        "milestone": (issue.get("milestone") or {}).get("title"),
        "comments": issue.get("comments") or 0,
        "locked": bool(issue.get("locked")),
        "draft": issue.get("draft") if pull is not None else None,
        "mergedAt": pull.get("merged_at") if pull is not None else None,
        "createdAt": issue.get("created_at"),
        "updatedAt": issue.get("updated_at"),
        "closedAt": issue.get("closed_at"),
        "body": issue.get("body"),
        "githubId": issue.get("id"),
        "nodeId": issue.get("node_id"),
    })


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"item is a {type(value).__name__}, not an object")
    return value


def _list(issue: dict[str, Any], name: str) -> list[Any]:
    value = issue.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{name} is a {type(value).__name__}, not a list")
    return value


def _login(user: Any) -> str | None:
    return user.get("login") if isinstance(user, dict) else None


def _label_name(label: Any) -> str:
    # The API documents a label as an object, or as a bare name string.
    name = label.get("name") if isinstance(label, dict) else label
    if not isinstance(name, str):
        raise ValueError("a label has no name")
    return name
