"""The repository's connectors.json: every provider has an example, and it checks on a
fresh checkout (no variables set) because only entries whose variables have
defaults are enabled."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from framework.config import load_fleet_config
from framework.errors import InvalidEntriesError
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

    with pytest.raises(InvalidEntriesError, match="environment variable JIRA_BASE_URL is "
                       "required by providerConfig.baseUrl"):
        load_fleet_config(path, environ={})

    fleet = load_fleet_config(path, environ={"JIRA_BASE_URL": "https://example.atlassian.net",
                                             "JIRA_API_TOKEN": "t"})
    assert await default_registry().validate(fleet) == []
    assert "'t'" not in str(fleet.connectors["jira-prod"].redacted())
