"""``opcua-source`` against a server that restarts, is killed, never answers, answers
junk, or refuses the login: it re-subscribes and reports the gap, loses nothing the
server still had, and every failure is an error naming the endpoint within the
deadline (never the password)."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from redis.asyncio import Redis

from framework.core.errors import LeaseLostError
from framework.testing import free_port
from framework.testing.opcua import OpcUaServer, node_id
from tests.providers.opcua.conftest import events, opcua_connector, poll_until

pytestmark = pytest.mark.slow

TICK = node_id("Tick.0")


def _ticks(got: list[dict[str, Any]]) -> list[int]:
    return [e["value"] for e in got if e["nodeId"] == TICK]


async def _poll_for(connector: Any, seconds: float) -> None:
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        try:
            await connector.poll()
        except LeaseLostError:
            raise
        except Exception:  # the server is away: the next poll connects again
            await asyncio.sleep(0.1)


async def _resubscribed(connector: Any, logs: list[Any], times: int) -> None:
    """Poll until the source has reported its ``times``-th gap (it saw the loss and
    subscribed again)."""
    async with asyncio.timeout(30):
        while sum(log["event"] == "opcua_gap" for log in logs) < times:
            await _poll_for(connector, 0.2)


def _come_back(server: OpcUaServer, how: str, tick_ms: float) -> None:
    if how == "kill":
        server.kill()
    else:
        server.stop()
    server.tick_ms = tick_ms
    server.start()


@pytest.mark.parametrize("how", ["restart", "kill"])
async def test_after_the_server_comes_back_it_resubscribes_reports_the_gap_and_loses_nothing(
    redis: Redis, how: str,
) -> None:
    """The server ticks, goes away and comes back still (it keeps its last count and
    its timestamp), then ticks again: the value it still had is published once, and
    every value skipped while nothing listened is flagged by a gap."""
    with OpcUaServer(tick_ms=100) as server, structlog.testing.capture_logs() as logs:
        connector = await opcua_connector(redis, server, nodeIds=[TICK], timeout_ms=2000)
        try:
            await poll_until(connector, redis, 5)
            _come_back(server, how, tick_ms=0)
            kept = json.loads((server.dir / "tick.json").read_text())["count"]
            await _resubscribed(connector, logs, 1)
            async with asyncio.timeout(30):
                while kept not in _ticks(await events(redis)):
                    await _poll_for(connector, 0.2)
            _come_back(server, how, tick_ms=100)
            await _resubscribed(connector, logs, 2)
            before = await redis.xlen("raw-input-signals")
            await poll_until(connector, redis, before + 5, timeout_s=30)
        finally:
            await connector.aclose()
    got = [e for e in await events(redis) if e["nodeId"] == TICK]
    ticks = _ticks(got)
    assert ticks == sorted(set(ticks))  # in order, never twice
    assert kept in ticks
    for previous, event in itertools.pairwise(got):
        if event["value"] != previous["value"] + 1:  # skipped while nothing listened
            assert "gap" in event["metadata"], (previous, event)
    gaps = [log for log in logs if log["event"] == "opcua_gap"]
    assert len(gaps) == 2
    assert all(gap["reason"].startswith(("connection lost", "subscription")) for gap in gaps)
    names = [log["event"] for log in logs]
    assert names.index("opcua_connection_lost") < names.index("opcua_gap")


@pytest.fixture
def silent_peer() -> Iterator[int]:
    """Accepts connections and never says a word."""
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


@pytest.fixture
def junk_peer() -> Iterator[int]:
    """Answers every connection with bytes that are not OPC-UA, then hangs up."""
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn = listener.accept()[0]
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"\x00" * 4096)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join()
    listener.close()


@pytest.mark.parametrize("mode", ["subscription", "polling"])
async def test_a_server_that_never_answers_fails_within_the_deadline(
    redis: Redis, silent_peer: int, mode: str,
) -> None:
    connector = await opcua_connector(redis, f"opc.tcp://127.0.0.1:{silent_peer}/fleet",
                                      timeout_ms=800, mode=mode)
    started = time.monotonic()
    try:
        with pytest.raises(Exception, match=rf"opcua server opc.tcp://127.0.0.1:{silent_peer}"
                                            r"/fleet: no session within 0.8 s"):
            await connector.poll()
    finally:
        await connector.aclose()
    assert time.monotonic() - started < 3.0


async def test_a_peer_that_answers_junk_is_an_error_naming_the_endpoint(
    redis: Redis, junk_peer: int,
) -> None:
    connector = await opcua_connector(redis, f"opc.tcp://127.0.0.1:{junk_peer}", timeout_ms=2000)
    started = time.monotonic()
    try:
        with pytest.raises(Exception, match=rf"opcua server opc.tcp://127.0.0.1:{junk_peer}: "):
            await connector.poll()
    finally:
        await connector.aclose()
    assert time.monotonic() - started < 4.0


async def test_a_server_that_is_gone_is_named_and_retried_after_a_backoff(redis: Redis) -> None:
    port = free_port()
    connector = await opcua_connector(redis, f"opc.tcp://127.0.0.1:{port}", timeout_ms=1000)
    try:
        with pytest.raises(Exception, match=rf"127.0.0.1:{port}: cannot connect"):
            await connector.poll()
        started = time.monotonic()
        with pytest.raises(Exception, match="cannot connect"):
            await connector.poll()
        assert time.monotonic() - started >= 0.45  # ReconnectBackoff's first pause
    finally:
        await connector.aclose()


async def test_login_with_a_password_file_and_a_refused_password_never_shown(
    redis: Redis, tmp_path: Path,
) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-line\n")
    with OpcUaServer(user="fleet", password="s3cret-line") as server:
        good = await opcua_connector(redis, server, nodeIds=[node_id("Label")], username="fleet",
                                     passwordFile=str(secret))
        try:
            await poll_until(good, redis, 1)
        finally:
            await good.aclose()
        with structlog.testing.capture_logs() as logs:
            bad = await opcua_connector(redis, server, name="wrong", username="fleet",
                                        password="hunter2-wrong")
            try:
                with pytest.raises(Exception, match="session refused: Bad.*user fleet") as error:
                    await bad.poll()
            finally:
                await bad.aclose()
            anonymous = await opcua_connector(redis, server, name="anonymous")
            try:
                with pytest.raises(Exception, match="session refused"):
                    await anonymous.poll()
            finally:
                await anonymous.aclose()
    assert (await events(redis))[0]["value"] == "idle"
    assert "hunter2" not in str(error.value)
    assert "hunter2" not in repr(logs)
