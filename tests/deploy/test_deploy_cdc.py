"""The k8s generator and the Helm chart render ``cdc-postgres`` like any other type:
its own Deployment running ``connector-run NAME``, the connection URL (with its
password) from a Secret, never written into the ConfigMap."""

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

CDC = {"name": "orders-cdc", "type": "cdc-postgres",
       "providerConfig": {"connectionUrl": "${ORDERS_DB_URL}", "tables": ["public.orders"],
                          "slot": "fleet_orders", "publication": "fleet_orders"}}


def _check(objects: list[dict[str, Any]]) -> None:
    validate_manifests(objects)
    deployments = connector_deployments(objects)
    assert sorted(deployments) == ["orders-cdc"]
    deployment = deployments["orders-cdc"]
    check_pod(deployment)
    assert container(deployment)["command"] == ["connector-run", "orders-cdc"]
    assert secret_refs(deployment) == {"ORDERS_DB_URL": True}


@pytest.mark.slow
def test_the_generator_renders_cdc_postgres(tmp_path: Path) -> None:
    _check(render_generator(_write(tmp_path / "connectors.json", CDC)))


def test_the_chart_renders_cdc_postgres() -> None:
    _check(render_chart(connectors=[CDC]))
