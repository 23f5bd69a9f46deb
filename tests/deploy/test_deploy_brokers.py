"""The k8s generator and the Helm chart render ``mqtt-source`` and ``amqp-source``
connectors like any other type: each its own Deployment running ``connector-run
NAME``, its password from a Secret."""

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
AMQP = {"name": "orders-amqp", "type": "amqp-source",
        "providerConfig": {"url": "amqps://fleet:${AMQP_PASSWORD}@rabbit:5671/%2F",
                           "queue": "orders", "declare": True,
                           "bindings": [{"exchange": "orders", "routingKey": "#"}]}}


def _check(objects: list[dict[str, Any]]) -> None:
    validate_manifests(objects)
    deployments = connector_deployments(objects)
    assert sorted(deployments) == ["orders-amqp", "plant-mqtt"]
    for name, deployment in deployments.items():
        check_pod(deployment)
        assert container(deployment)["command"] == ["connector-run", name]
        assert secret_refs(deployment) == {"MQTT_PASSWORD": True, "AMQP_PASSWORD": True}


@pytest.mark.slow
def test_the_generator_renders_broker_sources(tmp_path: Path) -> None:
    _check(render_generator(_write(tmp_path / "connectors.json", MQTT, AMQP)))


def test_the_chart_renders_broker_sources() -> None:
    _check(render_chart(connectors=[MQTT, AMQP]))
