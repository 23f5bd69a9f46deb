"""``connector-run`` of an http-webhook as a real process: a kill -9 storm while senders
post (each retrying what was not answered 2xx, as webhook senders do) loses nothing
and, with Idempotency-Keys, duplicates nothing; two replica processes serve at once;
SIGTERM drains."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis as sync_redis

from framework.testing import free_port
from tests.process import ConnectorProcess, write_config

pytestmark = pytest.mark.slow

TOKEN = "storm-token-0123456789"


def webhook_entry(port: int) -> dict[str, Any]:
    return {"name": "hooks", "type": "http-webhook", "leaseTtlSeconds": 2,
            "providerConfig": {"host": "127.0.0.1", "port": port,
                               "auth": {"mode": "bearer", "secrets": {"sender": "${HOOK_TOKEN}"}},
                               "requestTimeoutMs": 2000}}


def start(config: Path, log: Path, redis_url: str, **env: str) -> ConnectorProcess:
    return ConnectorProcess("hooks", redis_url=redis_url, config=config, log=log,
                            env={"HOOK_TOKEN": TOKEN, **env})


async def deliver(session: aiohttp.ClientSession, url: str, key: str, deadline: float) -> int:
    """Post until answered 200 (refused connections and 503s are retried); the tries."""
    tries = 0
    while time.monotonic() < deadline:
        tries += 1
        try:
            async with session.post(url, data=orjson.dumps({"key": key}), headers={
                    "Authorization": f"Bearer {TOKEN}", "Idempotency-Key": key,
                    "Content-Type": "application/json"}) as answer:
                if answer.status == 200:
                    return tries
                assert answer.status == 503, await answer.text()
        except (TimeoutError, aiohttp.ClientConnectionError):
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key} was never saved")


def stream_keys(client: sync_redis.Redis) -> list[str]:
    return [orjson.loads(fields["payload"])["value"]["key"]
            for _, fields in client.xrange("raw-input-signals")]


@pytest.mark.timeout(300)
def test_a_kill_9_storm_loses_nothing_and_duplicates_nothing_with_idempotency_keys(
    sync: sync_redis.Redis, redis_server: Any, tmp_path: Path,
) -> None:
    port = free_port()
    config = write_config(tmp_path / "connectors.json", webhook_entry(port))
    url = f"http://127.0.0.1:{port}/webhook"
    processes = [start(config, tmp_path / "log-0", redis_server.url)]
    processes[0].wait_for("webhook_listening")
    keys: list[str] = []

    async def senders(storm_over: asyncio.Event) -> list[int]:
        """A steady flow of new keys, 8 in flight, until the storm is over."""
        deadline = time.monotonic() + 90
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def lane(lane_id: int) -> list[int]:
                tries = []
                for number in itertools.count():
                    if storm_over.is_set() and number >= 5:
                        return tries
                    key = f"order-{lane_id}-{number}"
                    keys.append(key)
                    tries.append(await deliver(session, url, key, deadline))
                    await asyncio.sleep(0.02)
                return tries

            lanes = await asyncio.gather(*(lane(i) for i in range(8)))
            return [t for lane_tries in lanes for t in lane_tries]

    async def storm() -> list[int]:
        storm_over = asyncio.Event()
        task = asyncio.create_task(senders(storm_over))
        for kill in range(4):
            await asyncio.sleep(random.uniform(0.2, 0.5))
            processes[-1].signal(signal.SIGKILL)
            processes[-1].wait(10)
            processes.append(start(config, tmp_path / f"log-{kill + 1}", redis_server.url))
            await asyncio.to_thread(processes[-1].wait_for, "webhook_listening")
        storm_over.set()
        return await task

    try:
        tries = asyncio.run(storm())
        found = stream_keys(sync)
    finally:
        for process in processes:
            process.close()

    assert sorted(found) == sorted(keys)  # every event once: nothing lost, none twice
    assert max(tries) > 1, "no request fell into a kill"


def test_two_replica_processes_serve_at_once_and_sigterm_drains(
    sync: sync_redis.Redis, redis_server: Any, tmp_path: Path,
) -> None:
    ports = [free_port(), free_port()]
    processes = []
    for replica, port in zip("ab", ports, strict=True):
        config = write_config(tmp_path / f"connectors-{replica}.json", webhook_entry(port))
        processes.append(start(config, tmp_path / f"log-{replica}", redis_server.url,
                               CONNECTOR_REPLICA=replica))
    try:
        for process in processes:
            process.wait_for("webhook_listening")

        async def post_to_both() -> None:
            deadline = time.monotonic() + 30
            async with aiohttp.ClientSession() as session:
                for n, port in enumerate(ports * 3):
                    await deliver(session, f"http://127.0.0.1:{port}/webhook", f"k{n}", deadline)

        asyncio.run(post_to_both())
        assert sync.exists("lease:hooks:a") and sync.exists("lease:hooks:b")
        for process in processes:
            process.signal(signal.SIGTERM)
        assert [process.wait(30) for process in processes] == [0, 0]
        assert not sync.exists("lease:hooks:a") and not sync.exists("lease:hooks:b")
        assert sorted(stream_keys(sync)) == sorted(f"k{n}" for n in range(6))
    finally:
        for process in processes:
            process.close()


@pytest.mark.parametrize("mode", [(), ("--in-process",)], ids=["children", "in-process"])
def test_run_all_serves_a_webhook(
    sync: sync_redis.Redis, redis_server: Any, tmp_path: Path, mode: tuple[str, ...],
) -> None:
    port = free_port()
    config = write_config(tmp_path / "connectors.json", webhook_entry(port))
    fleet = ConnectorProcess("", redis_url=redis_server.url, config=config,
                             log=tmp_path / "fleet.log", env={"HOOK_TOKEN": TOKEN},
                             command=("connector-fleet", "run-all", *mode))
    try:
        async def post_once() -> None:
            async with aiohttp.ClientSession() as session:
                await deliver(session, f"http://127.0.0.1:{port}/webhook", "k-1",
                              time.monotonic() + 60)

        asyncio.run(post_once())
        assert stream_keys(sync) == ["k-1"]
        fleet.signal(signal.SIGTERM)
        assert fleet.wait(30) == 0
    finally:
        fleet.close()
