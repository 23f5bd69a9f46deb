"""Deployments of an http-webhook connector (scripts/render-k8s and the chart): its
port on the container and a Service in front of every replica, each replica named
after its pod (CONNECTOR_REPLICA) so that each takes its own lease and all serve."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.test_deploy import (
    RENDER_K8S,
    check_pod,
    connector_deployments,
    container,
    env_of,
    of_kind,
    render_chart,
    render_generator,
    validate_manifests,
)

WEBHOOK = {"name": "github-hooks", "type": "http-webhook", "providerConfig": {
    "port": 8443, "path": "/github",
    "auth": {"mode": "githubHmac", "secrets": {"github": "${GITHUB_WEBHOOK_SECRET}"}}}}


def check_receiver(objects: list[dict[str, Any]], service_name: str) -> None:
    deployment = connector_deployments(objects)["github-hooks"]
    check_pod(deployment)
    ports = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
    assert ports["webhook"] == 8443
    assert env_of(deployment)["CONNECTOR_REPLICA"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}}
    [service] = [s for s in of_kind(objects, "Service") if s["metadata"]["name"] == service_name]
    assert service["spec"]["ports"] == [{"name": "webhook", "port": 8443,
                                        "targetPort": "webhook", "protocol": "TCP"}]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"].get("clusterIP") != "None"  # one address, balanced


@pytest.mark.slow
def test_the_generator_exposes_a_webhook_behind_a_service(tmp_path: Path) -> None:
    fleet = tmp_path / "connectors.json"
    fleet.write_text(json.dumps({"connectors": [WEBHOOK]}), encoding="utf-8")

    objects = render_generator(fleet, "--replicas", "3")

    validate_manifests(objects)
    check_receiver(objects, "connector-github-hooks")
    assert connector_deployments(objects)["github-hooks"]["spec"]["replicas"] == 3


@pytest.mark.slow
def test_the_generator_refuses_a_webhook_port_it_cannot_render(tmp_path: Path) -> None:
    fleet = tmp_path / "connectors.json"
    entry = {**WEBHOOK, "providerConfig": {**WEBHOOK["providerConfig"], "port": "${PORT}"}}
    fleet.write_text(json.dumps({"connectors": [entry]}), encoding="utf-8")

    result = subprocess.run([str(RENDER_K8S), "--config", str(fleet), "--image", "x:1"],
                            capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 78
    assert "connector github-hooks: providerConfig.port must be a port number" in result.stderr


@pytest.mark.slow
def test_the_chart_exposes_a_webhook_behind_a_service() -> None:
    objects = render_chart(connectors=[WEBHOOK])

    validate_manifests(objects)
    check_receiver(objects, "demo-connector-fleet-github-hooks")
