"""The Jira issue signal, normalized from one issue of ``GET /rest/api/3/search/jql``
(Jira Cloud platform REST API; Data Center's ``/rest/api/2`` issues have the same shape).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from framework.polling import content_version

# Fields the signal has a place for; any other requested field goes to ``otherFields``.
MAPPED_FIELDS = frozenset({
    "summary", "status", "priority", "issuetype", "assignee", "reporter", "labels",
    "created", "updated", "resolution", "resolutiondate", "duedate", "project",
})
# Per-user and read-only noise: it changes when someone merely opens the issue.
_VOLATILE_FIELDS = frozenset({"lastViewed"})


class JiraIssue(BaseModel):
    """One issue. Optional fields are None when Jira sends null or the field was not asked for."""

    model_config = ConfigDict(frozen=True)

    source: str = "jira"
    id: str
    key: str
    url: str | None = None
    project: str | None = None
    issueType: str | None = None
    summary: str | None = None
    status: str | None = None
    statusCategory: str | None = None
    priority: str | None = None
    assignee: str | None = None
    assigneeAccountId: str | None = None
    reporter: str | None = None
    labels: list[str] = []
    resolution: str | None = None
    created: str | None = None
    updated: str | None = None
    resolved: str | None = None
    dueDate: str | None = None
    otherFields: dict[str, Any] = {}


def issue_id(issue: Any) -> str:
    """The issue's numeric ``id``: unlike the key, it survives a move to another project."""
    if not isinstance(issue, dict):
        raise ValueError(f"issue is a {type(issue).__name__}, not an object")
    identifier = issue.get("id")
    if not isinstance(identifier, str | int) or isinstance(identifier, bool) or identifier == "":
        raise ValueError("issue has no id")
    return str(identifier)


def issue_version(issue: Any) -> str:
    """``fields.updated``: Jira moves it on every edit, comment or transition. Without it,
    a hash of the issue minus the fields that change when someone only views it."""
    fields = issue.get("fields") if isinstance(issue, dict) else None
    if isinstance(fields, dict) and isinstance(fields.get("updated"), str):
        return str(fields["updated"])
    stable = dict(issue) if isinstance(issue, dict) else issue
    if isinstance(fields, dict):
        stable["fields"] = {k: v for k, v in fields.items() if k not in _VOLATILE_FIELDS}
    return content_version(stable)


def to_issue(issue: dict[str, Any], *, browse_url: str) -> JiraIssue:
    fields = issue.get("fields")
    if not isinstance(fields, dict):
        raise ValueError("issue has no fields object")
    key = issue.get("key")
    if not isinstance(key, str) or not key:
        raise ValueError("issue has no key")
    assignee = _object(fields, "assignee")
    status = _object(fields, "status")
    return JiraIssue(
        id=issue_id(issue),
        key=key,
        url=f"{browse_url}/{key}",
        project=_object(fields, "project").get("key"),
        issueType=_object(fields, "issuetype").get("name"),
        summary=fields.get("summary"),
        status=status.get("name"),
        statusCategory=_object(status, "statusCategory").get("key"),
        priority=_object(fields, "priority").get("name"),
        assignee=assignee.get("displayName"),
        assigneeAccountId=assignee.get("accountId") or assignee.get("name"),
        reporter=_object(fields, "reporter").get("displayName"),
        labels=_strings(fields.get("labels")),
        resolution=_object(fields, "resolution").get("name"),
        created=fields.get("created"),
        updated=fields.get("updated"),
        resolved=fields.get("resolutiondate"),
        dueDate=fields.get("duedate"),
        otherFields={
            k: v for k, v in fields.items()
            if k not in MAPPED_FIELDS and k not in _VOLATILE_FIELDS
        },
    )


def _object(container: dict[str, Any], name: str) -> dict[str, Any]:
    """A nested object such as ``fields.status``; {} when null or absent."""
    value = container.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"fields.{name} is a {type(value).__name__}, not an object")
    return value


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("fields.labels is not a list of strings")
    return value
