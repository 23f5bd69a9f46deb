"""The repository's connectors.json: every provider has an example, and it checks on a
fresh checkout (no variables set) because only entries whose variables have
defaults are enabled."""

from __future__ import annotations

from pathlib import Path

import orjson

from framework.polling.config import load_fleet_config
from providers.builtin import default_registry
from tests.conftest import REPO_ROOT

CONNECTORS = REPO_ROOT / "connectors.json"


async def test_connectors_json_checks_without_any_variable_set() -> None:
    fleet = load_fleet_config(CONNECTORS, environ={})

    assert await default_registry().validate(fleet) == []
    assert sorted({c.type for c in fleet.connectors.values()}) == default_registry().types
    jira = fleet.connectors["jira-prod"]
    assert (jira.type, jira.enabled, jira.poll_interval_ms, jira.max_retries) == (
        "JIRA", False, 300_000, 3)
    assert jira.provider_config["apiToken"] == "${JIRA_API_TOKEN}"  # waits for its secret


async def test_the_jira_example_runs_once_its_variables_are_set(tmp_path: Path) -> None:
    document = orjson.loads(CONNECTORS.read_bytes())
    for entry in document["connectors"]:
        entry["enabled"] = entry["name"] == "jira-prod"
    path = tmp_path / "connectors.json"
    path.write_bytes(orjson.dumps(document))

    # A missing variable stops that connector only: it is listed, not loaded.
    assert "environment variable JIRA_BASE_URL is required by providerConfig.baseUrl" in \
        load_fleet_config(path, environ={}).broken["jira-prod"]

    fleet = load_fleet_config(path, environ={"JIRA_BASE_URL": "https://example.atlassian.net",
                                             "JIRA_API_TOKEN": "t"})
    assert await default_registry().validate(fleet) == []
    assert "'t'" not in str(fleet.connectors["jira-prod"].redacted())


def only(tmp_path: Path, *names: str) -> Path:
    """connectors.json with only ``names`` enabled (and nothing else in it)."""
    document = orjson.loads(CONNECTORS.read_bytes())
    document["connectors"] = [dict(e, enabled=True) for e in document["connectors"]
                              if e["name"] in names]
    path = tmp_path / "connectors.json"
    path.write_bytes(orjson.dumps(document))
    return path


async def test_the_datadog_example_needs_both_keys_and_hides_them(tmp_path: Path) -> None:
    path = only(tmp_path, "dd-events")

    assert "environment variable DD_API_KEY is required by providerConfig.apiKey" in \
        load_fleet_config(path, environ={"DD_APP_KEY": "app"}).broken["dd-events"]

    fleet = load_fleet_config(path, environ={"DD_API_KEY": "api-secret", "DD_APP_KEY":
                                             "app-secret", "DD_SITE": "datadoghq.eu"})
    assert await default_registry().validate(fleet) == []
    entry = fleet.connectors["dd-events"]
    assert entry.provider_config["site"] == "datadoghq.eu"
    assert "secret" not in str(entry.redacted()) and "secret" not in repr(entry)


async def test_the_http_json_examples_build_with_their_defaults_or_variables(
    tmp_path: Path,
) -> None:
    quakes = load_fleet_config(only(tmp_path, "quakes-usgs"), environ={})
    assert await default_registry().validate(quakes) == []
    assert quakes.connectors["quakes-usgs"].provider_config["url"].startswith(
        "https://earthquake.usgs.gov/")

    path = only(tmp_path, "gitlab-issues")
    assert "GITLAB_PROJECT_ID is required by providerConfig.url" in load_fleet_config(
        path, environ={"GITLAB_TOKEN": "glpat-x"}).broken["gitlab-issues"]
    gitlab = load_fleet_config(path, environ={"GITLAB_TOKEN": "glpat-secret",
                                              "GITLAB_PROJECT_ID": "278964"})
    assert await default_registry().validate(gitlab) == []
    entry = gitlab.connectors["gitlab-issues"]
    assert entry.provider_config["url"] == "https://gitlab.com/api/v4/projects/278964/issues"
    assert "glpat-secret" not in str(entry.redacted())
