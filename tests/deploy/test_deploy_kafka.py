"""The kafka-source type through the deployment paths: rendered by scripts/render-k8s
and by the Helm chart like any type, checked by ``connector-fleet config check``, and
run by ``connector-fleet run-all`` against a real Kafka-API broker (Tansu)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from framework.testing import RedisServer, TansuBroker
from tests.deploy.test_deploy import (
    BIN,
    check_pod,
    connector_deployments,
    container,
    render_chart,
    render_generator,
    secret_refs,
    validate_manifests,
)
from tests.kafka_peer import create_topic, produce, unique_topic
from tests.process import ConnectorProcess, write_config


def kafka_entry(name: str, brokers: str, topic: str, **provider: Any) -> dict[str, Any]:
    return {"name": name, "type": "kafka-source", "pollIntervalMs": 1000,
            "requestTimeoutMs": 3000, "leaseTtlSeconds": 2,
            "providerConfig": {"brokers": brokers, "topic": topic, **provider}}


SASL = {"securityProtocol": "SASL_PLAINTEXT",
        "sasl": {"mechanism": "SCRAM-SHA-512", "username": "fleet",
                 "password": "${KAFKA_PASSWORD}"}}


@pytest.fixture(scope="module")
def kafka() -> Iterator[TansuBroker]:
    with TansuBroker() as broker:
        yield broker


@pytest.mark.slow
def test_render_k8s_and_the_chart_deploy_a_kafka_source_with_its_secret(tmp_path: Path) -> None:
    entry = kafka_entry("orders-kafka", "kafka-0.kafka:9092,kafka-1.kafka:9092", "orders",
                        groupId="fleet-orders", **SASL)
    fleet = write_config(tmp_path / "connectors.json", entry)
    for objects in (render_generator(fleet), render_chart(connectors=[entry])):
        validate_manifests(objects)
        deployment = connector_deployments(objects)["orders-kafka"]
        check_pod(deployment)
        assert container(deployment)["command"] == ["connector-run", "orders-kafka"]
        assert secret_refs(deployment) == {"KAFKA_PASSWORD": True}


def config_check(fleet: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **env}
    return subprocess.run([str(BIN / "connector-fleet"), "--config", str(fleet), "config",
                           "check"], capture_output=True, text=True, timeout=60, check=False,
                          env=environment)


def test_config_check_accepts_a_kafka_source_and_names_what_is_wrong(tmp_path: Path) -> None:
    good = write_config(tmp_path / "good.json",
                        kafka_entry("orders-kafka", "127.0.0.1:9092", "orders", **SASL))
    checked = config_check(good, KAFKA_PASSWORD="hunter2-secret")
    assert checked.returncode == 0, checked.stderr
    assert "hunter2-secret" not in checked.stdout + checked.stderr

    bad = write_config(tmp_path / "bad.json", kafka_entry(
        "orders-kafka", "127.0.0.1", "orders", tls={"caFile": "/nonexistent/ca.pem"}))
    checked = config_check(bad)
    assert checked.returncode != 0
    report = checked.stdout + checked.stderr
    assert "orders-kafka" in report
    assert "providerConfig.brokers.0" in report and "host:port" in report
    assert "providerConfig.tls.caFile" in report and "/nonexistent/ca.pem" in report


@pytest.mark.slow
async def test_run_all_runs_a_kafka_source_into_the_stream(
    redis: Redis, redis_server: RedisServer, kafka: TansuBroker, tmp_path: Path,
) -> None:
    topic = unique_topic("fleet")
    await create_topic(kafka.bootstrap, topic, 2)
    fleet = write_config(tmp_path / "connectors.json",
                         kafka_entry("fleet-kafka", kafka.bootstrap, topic))
    run_all = ConnectorProcess("fleet-kafka", redis_url=redis_server.url, config=fleet,
                               log=tmp_path / "run-all.log", command=("connector-fleet", "run-all"))
    try:
        await produce(kafka.bootstrap, topic, [json.dumps({"n": i}).encode() for i in range(20)],
                      partitions=2)
        async with asyncio.timeout(60):
            while True:
                if await redis.xlen("raw-input-signals") >= 20:
                    break
                await asyncio.sleep(0.1)
    finally:
        run_all.signal(signal.SIGTERM)
        code = await asyncio.to_thread(run_all.wait, 60)
        run_all.close()
    assert code == 0
    entries = await redis.xrange("raw-input-signals")
    assert {fields["connector"] for _, fields in entries} == {"fleet-kafka"}
    assert len({fields["item_id"] for _, fields in entries}) == 20
