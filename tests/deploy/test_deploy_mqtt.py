"""The k8s generator and the Helm chart render an ``mqtt-source`` connector like any
other type: its own Deployment running ``connector-run NAME``, its password from a
Secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.test_deploy import (
    _write,
    check_pod,
    connector_deployments,
    container,
    render_chart,
    render_generator,
    secret_refs,
    validate_manifests,
)

MQTT = {"name": "plant-mqtt", "type": "mqtt-source",
        "providerConfig": {"broker": "mqtts://mqtt.plant:8883", "topic": ["plant/+/temp"],
                           "username": "fleet", "password": "${MQTT_PASSWORD}"}}


def _check(objects: list[dict[str, Any]]) -> None:
    validate_manifests(objects)
    deployment = connector_deployments(objects)["plant-mqtt"]
    check_pod(deployment)
    assert container(deployment)["command"] == ["connector-run", "plant-mqtt"]
    assert secret_refs(deployment) == {"MQTT_PASSWORD": True}


@pytest.mark.slow
def test_the_generator_renders_an_mqtt_source(tmp_path: Path) -> None:
    _check(render_generator(_write(tmp_path / "connectors.json", MQTT)))


def test_the_chart_renders_an_mqtt_source() -> None:
    _check(render_chart(connectors=[MQTT]))
