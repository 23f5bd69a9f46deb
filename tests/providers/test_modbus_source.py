"""modbus-tcp against real pymodbus slaves and a real Redis: every type and order,
publish on change / deadband / every poll, a dead or slow slave among live ones,
a slave restart with backoff, Modbus exception codes, and every config error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import structlog
from pymodbus.constants import ExcCodes
from redis.asyncio import Redis

from framework.core import ConfigError, SystemClock
from framework.core.logs import get_logger
from framework.polling import ConnectorConfig, ConnectorContext, Lease, StateStore
from framework.testing import free_port
from providers.modbus import SlaveConfig, create_modbus_connector, decode, encode
from providers.modbus.blocks import plan_blocks
from providers.modbus.register_simulator import RegisterSimulator
from providers.modbus.words import Order

STREAM = "raw-input-signals"
NAME = "plc"


@pytest.fixture
async def slave() -> AsyncIterator[RegisterSimulator]:
    async with RegisterSimulator() as device:
        yield device


@pytest.fixture
async def other() -> AsyncIterator[RegisterSimulator]:
    async with RegisterSimulator(unit_id=7) as device:
        yield device


def slave_entry(device: RegisterSimulator, name: str, registers: list[dict[str, Any]],
                **extra: Any) -> dict[str, Any]:
    return {"name": name, "host": device.host, "port": device.port,
            "unitId": device.unit_id, "registers": registers, **extra}


async def connector_for(redis: Redis, provider: dict[str, Any], **entry: Any) -> Any:
    config = ConnectorConfig.model_validate({
        "name": NAME, "type": "modbus-tcp", "pollIntervalMs": 100, "requestTimeoutMs": 2000,
        "retryConfig": {"baseDelayMs": 50, "maxDelayMs": 200}, **entry,
        "providerConfig": provider})
    lease = Lease(redis, NAME, ttl_s=30)
    await redis.delete(lease.key)
    assert await lease.try_acquire()
    context = ConnectorContext(store=StateStore(redis, config, lease, clock=SystemClock()),
                               clock=SystemClock(), logger=get_logger(connector=NAME))
    return create_modbus_connector(config, context)


async def events(redis: Redis) -> list[dict[str, Any]]:
    return [orjson.loads(f["payload"]) for _, f in await redis.xrange(STREAM)]


async def values(redis: Redis) -> list[tuple[str, Any]]:
    return [(e["metadata"]["register"], e["value"]) for e in await events(redis)]


ORDERS: list[tuple[Order, Order]] = [
    ("big", "big"), ("little", "big"), ("big", "little"), ("little", "little")]
SAMPLES = {"int16": -12345, "uint16": 54321, "int32": -123456789, "uint32": 3_987_654_321,
           "float32": 1.5, "float64": -2.718281828459045}


def test_the_four_orders_lay_out_a_float32_as_devices_do() -> None:
    # 1.0f is 0x3F800000: ABCD, CDAB, BADC, DCBA.
    assert decode([0x3F80, 0x0000], "float32") == 1.0
    assert decode([0x0000, 0x3F80], "float32", word_order="little") == 1.0
    assert decode([0x803F, 0x0000], "float32", byte_order="little") == 1.0
    assert decode([0x0000, 0x803F], "float32", word_order="little", byte_order="little") == 1.0
    assert decode([0xFFFE], "int16") == -2 and decode([0xFEFF], "int16", byte_order="little") == -2
    assert encode(0x01020304, "uint32", word_order="little") == [0x0304, 0x0102]
    with pytest.raises(ValueError, match="does not fit int16"):
        encode(40000, "int16")


async def test_every_type_in_every_order_is_published_with_its_unit(
    redis: Redis, slave: RegisterSimulator,
) -> None:
    registers: list[dict[str, Any]] = []
    expected: dict[str, Any] = {}
    address = 0
    for kind, sample in SAMPLES.items():
        for word_order, byte_order in ORDERS:
            name = f"{kind}-{word_order}-{byte_order}"
            words = encode(sample, kind, word_order=word_order, byte_order=byte_order)
            slave.set_words("input" if kind == "uint32" else "holding", address, words)
            registers.append({"name": name, "address": address, "type": kind, "unit": "V",
                              "wordOrder": word_order, "byteOrder": byte_order,
                              **({"table": "input"} if kind == "uint32" else {})})
            expected[name] = sample
            address += len(words) + 1
    slave.set_words("holding", 500, [100, 200, 300])
    slave.set_bits("coil", 3, [True])
    slave.set_bits("discrete", 4, [False, True])
    registers += [
        {"name": "scaled", "address": 500, "type": "int16", "count": 3, "scale": 0.1},
        {"name": "pump", "address": 3, "type": "coil"},
        {"name": "doors", "address": 4, "type": "bool", "table": "discrete", "count": 2}]
    expected.update({"scaled": [10.0, 20.0, 30.0], "pump": True, "doors": [False, True]})
    connector = await connector_for(redis, {"host": slave.host, "port": slave.port,
                                            "unitId": slave.unit_id, "registers": registers})

    summary = await connector.poll()

    assert (summary.published, summary.failed) == (len(expected), 0)
    published = dict(await values(redis))
    assert published == expected
    [first] = [e for e in await events(redis) if e["metadata"]["register"] == "float32-big-big"]
    assert first["source"] == "modbus" and first["unit"] == "V"
    assert first["nodeId"] == f"127.0.0.1:{slave.port}#1"
    assert first["metadata"]["raw"] == encode(SAMPLES["float32"], "float32")
    assert first["metadata"]["type"] == "float32" and first["metadata"]["table"] == "holding"
    await connector.aclose()


async def test_a_changed_value_is_published_once_and_an_unchanged_one_never_again(
    redis: Redis, slave: RegisterSimulator,
) -> None:
    slave.set_words("holding", 0, [5, 6])
    connector = await connector_for(redis, {"host": slave.host, "port": slave.port,
                                            "registers": [
                                                {"name": "a", "address": 0, "type": "int16"},
                                                {"name": "b", "address": 1, "type": "int16"}]})
    await connector.poll()
    slave.set_words("holding", 1, [7])

    summary = await connector.poll()

    assert (summary.published, summary.skipped_unchanged) == (1, 1)
    assert await values(redis) == [("a", 5), ("b", 6), ("b", 7)]
    await connector.aclose()


async def test_a_deadband_holds_small_moves_and_publishes_their_sum(
    redis: Redis, slave: RegisterSimulator,
) -> None:
    connector = await connector_for(redis, {"host": slave.host, "port": slave.port,
                                            "deadband": 1.0, "registers": [
                                                {"name": "t", "address": 0, "type": "int16",
                                                 "scale": 0.5},
                                                {"name": "exact", "address": 1,
                                                 "type": "int16", "deadband": 0}]})
    for raw in (40, 41, 42, 43, 38):  # t = 20, 20.5, 21 (within 1 of 20), 21.5, 19
        slave.set_words("holding", 0, [raw])
        slave.set_words("holding", 1, [raw])
        await connector.poll()

    published = await values(redis)
    assert [v for name, v in published if name == "t"] == [20.0, 21.5, 19.0]
    assert [v for name, v in published if name == "exact"] == [40, 41, 42, 43, 38]
    await connector.aclose()


async def test_every_poll_publishes_each_reading(redis: Redis, slave: RegisterSimulator) -> None:
    connector = await connector_for(redis, {"host": slave.host, "port": slave.port,
                                            "publish": "every-poll", "registers": [
                                                {"name": "a", "address": 0, "type": "uint16"}]})
    for _ in range(3):
        await connector.poll()
        await asyncio.sleep(0.002)  # a new millisecond: a new reading's version

    assert await values(redis) == [("a", 0)] * 3
    await connector.aclose()


async def test_a_dead_slave_is_an_error_naming_it_while_the_live_ones_publish(
    redis: Redis, slave: RegisterSimulator, other: RegisterSimulator,
) -> None:
    dead_port = free_port()  # nothing listens there
    slave.set_words("holding", 0, [11])
    other.set_words("holding", 0, [22])
    connector = await connector_for(redis, {"slaves": [
        slave_entry(slave, "boiler", [{"name": "t", "address": 0, "type": "int16"}]),
        {"name": "chiller", "host": "127.0.0.1", "port": dead_port, "registers": [
            {"name": "t", "address": 0, "type": "int16"},
            {"name": "p", "address": 1, "type": "int16"}]},
        slave_entry(other, "pump", [{"name": "t", "address": 0, "type": "int16"}])]})

    with structlog.testing.capture_logs() as logs:
        summary = await connector.poll()

    assert (summary.published, summary.failed) == (2, 2)
    assert [(e["nodeId"], e["value"]) for e in await events(redis)] == [
        ("boiler", 11), ("pump", 22)]
    failed = {e["item_id"]: e["error"] for e in logs if e["event"] == "item_failed"}
    assert set(failed) == {"chiller/t", "chiller/p"}
    assert "modbus slave chiller (127.0.0.1:" in failed["chiller/p"]
    assert "register p (holding 1)" in failed["chiller/p"]
    assert f"cannot connect to 127.0.0.1:{dead_port}" in failed["chiller/p"]
    await connector.aclose()


async def test_a_slow_slave_costs_its_own_deadline_not_the_others_values(
    redis: Redis, slave: RegisterSimulator, other: RegisterSimulator,
) -> None:
    other.delay_s = 3.0
    slave.set_words("holding", 0, [1])
    connector = await connector_for(redis, {"slaves": [
        slave_entry(slave, "fast", [{"name": "t", "address": 0, "type": "int16"}]),
        slave_entry(other, "slow", [{"name": "t", "address": 0, "type": "int16"}],
                    timeoutMs=300)]})

    with structlog.testing.capture_logs() as logs:
        started = time.monotonic()
        summary = await connector.poll()
        took = time.monotonic() - started

    assert (summary.published, summary.failed) == (1, 1)
    assert await values(redis) == [("t", 1)]
    assert took < other.delay_s  # the poll did not wait for the slow answer
    [error] = [e["error"] for e in logs if e["event"] == "item_failed"]
    assert "modbus slave slow" in error and "no answer within 300 ms" in error
    await connector.aclose()


async def test_a_restarted_slave_is_reconnected_after_a_backoff_without_repeats(
    redis: Redis, slave: RegisterSimulator,
) -> None:
    slave.set_words("holding", 0, [1, 2])
    connector = await connector_for(redis, {"host": slave.host, "port": slave.port,
                                            "registers": [
                                                {"name": "a", "address": 0, "type": "int16"},
                                                {"name": "b", "address": 1, "type": "int16"}]},
                                     retryConfig={"baseDelayMs": 300, "maxDelayMs": 600,
                                                  "jitterRatio": 0})
    await connector.poll()
    await slave.stop()

    with structlog.testing.capture_logs() as logs:
        down = await connector.poll()
        backing_off = await connector.poll()  # within the backoff: no connection attempt
    slave.set_words("holding", 1, [3])
    await slave.start()
    for _ in range(100):  # the backoff runs out within 0.6 s
        if not (summary := await connector.poll()).failed:
            break
        await asyncio.sleep(0.05)

    assert (down.failed, backing_off.failed) == (2, 2)
    errors = [e["error"] for e in logs if e["event"] == "item_failed"]
    assert "next attempt in" not in errors[0] and "next attempt in" in errors[-1]
    assert (summary.published, summary.skipped_unchanged) == (1, 1)
    assert await values(redis) == [("a", 1), ("b", 2), ("b", 3)]
    await connector.aclose()


async def test_exception_codes_name_the_register_and_spare_its_neighbours(
    redis: Redis, slave: RegisterSimulator,
) -> None:
    slave.set_words("holding", 0, [1, 2, 3])
    slave.refuse[1] = ExcCodes.DEVICE_BUSY
    connector = await connector_for(redis, {"slaves": [slave_entry(slave, "rtu", [
        {"name": "a", "address": 0, "type": "int16"},
        {"name": "busy", "address": 1, "type": "int16"},
        {"name": "c", "address": 2, "type": "int16"},
        {"name": "beyond", "address": 5000, "type": "int16"}])]})

    with structlog.testing.capture_logs() as logs:
        summary = await connector.poll()

    assert (summary.published, summary.failed) == (2, 2)
    assert await values(redis) == [("a", 1), ("c", 3)]
    failed = {e["item_id"]: e["error"] for e in logs if e["event"] == "item_failed"}
    assert "modbus slave rtu" in failed["rtu/busy"]
    assert "register busy (holding 1): refused by the slave: Modbus exception 6 " \
           "(SERVER DEVICE BUSY)" in failed["rtu/busy"]
    assert "register beyond (holding 5000)" in failed["rtu/beyond"]
    assert "Modbus exception 2 (ILLEGAL DATA ADDRESS)" in failed["rtu/beyond"]
    await connector.aclose()


def _one_slave(**register: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "registers": [
        {"name": "r", "address": 0, "type": "int16", **register}]}


@pytest.mark.parametrize(("provider", "message"), [
    ({"registers": [{"name": "r", "address": 0, "type": "int16"}]},
     "host and registers are required"),
    ({"host": "127.0.0.1"}, "host and registers are required"),
    ({**_one_slave(), "slaves": []}, "providerConfig.slaves"),
    ({**_one_slave(), "slaves": [_one_slave()]}, "not both"),
    (_one_slave(type="int8"), "providerConfig.registers.0.type"),
    (_one_slave(address=70000), "providerConfig.registers.0.address"),
    (_one_slave(address=65535, type="float64"), "runs past 65535"),
    (_one_slave(count=0), "providerConfig.registers.0.count"),
    (_one_slave(count=100, type="float32"), "spans 200 registers, more than one Modbus read"),
    (_one_slave(type="coil", table="holding"), "type coil is read from a bit table"),
    (_one_slave(type="uint16", table="coil"), "type uint16 is read from a register table"),
    (_one_slave(type="bool", scale=2), "scale and deadband apply to numbers"),
    (_one_slave(wordOrder="middle"), "providerConfig.registers.0.wordOrder"),
    (_one_slave(name="a/b"), "providerConfig.registers.0.name"),
    (_one_slave(deadband=-1), "providerConfig.registers.0.deadband"),
    (_one_slave(bitOrder="big"), "bitOrder: unknown field"),
    ({"host": "127.0.0.1", "registers": [{"name": "r", "address": 0, "type": "int16"},
                                         {"name": "r", "address": 1, "type": "int16"}]},
     "register name 'r' is given twice"),
    ({"slaves": [_one_slave(), _one_slave()]}, "slave name '127.0.0.1:502#1' is given twice"),
    ({**_one_slave(), "unitId": 256}, "providerConfig.unitId"),
    ({**_one_slave(), "port": 0}, "providerConfig.port"),
    ({**_one_slave(), "publish": "sometimes"}, "providerConfig.publish"),
    ({"slaves": [{**_one_slave(), "timeoutMs": 999_999}]}, "must be below the poll deadline"),
])
async def test_config_errors_name_the_field(
    redis: Redis, provider: dict[str, Any], message: str,
) -> None:
    with pytest.raises(ConfigError, match=f"modbus-tcp connector {NAME}: ") as raised:
        await connector_for(redis, provider)
    assert message in str(raised.value)


@pytest.fixture
async def babbler() -> AsyncIterator[int]:
    """A TCP peer that is no Modbus slave: it answers anything with an endless
    stream of junk."""
    async def babble(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                writer.write(b"\x00\x01junk" * 8192)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(babble, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def test_a_peer_answering_junk_is_an_error_within_its_deadline(
    redis: Redis, slave: RegisterSimulator, babbler: int,
) -> None:
    slave.set_words("holding", 0, [9])
    connector = await connector_for(redis, {"slaves": [
        slave_entry(slave, "good", [{"name": "t", "address": 0, "type": "int16"}]),
        {"name": "junk", "host": "127.0.0.1", "port": babbler, "timeoutMs": 500,
         "registers": [{"name": "t", "address": 0, "type": "int16"}]}]})

    with structlog.testing.capture_logs() as logs:
        summary = await connector.poll()

    assert (summary.published, summary.failed) == (1, 1)
    assert await values(redis) == [("t", 9)]
    [error] = [e["error"] for e in logs if e["event"] == "item_failed"]
    assert "modbus slave junk (127.0.0.1:" in error and "no answer within 500 ms" in error
    await connector.aclose()


def test_close_registers_of_a_table_share_a_read_within_the_protocol_limit() -> None:
    registers = [{"name": f"h{i}", "address": i, "type": "uint16"} for i in range(200)]
    registers += [{"name": "far", "address": 400, "type": "float32"},
                  {"name": "near-far", "address": 410, "type": "uint16"},
                  {"name": "in", "address": 0, "type": "int16", "table": "input"},
                  {"name": "c", "address": 0, "type": "coil", "count": 2000}]
    slave = SlaveConfig.model_validate({"name": "s", "host": "h", "registers": registers})

    blocks = plan_blocks(slave, max_gap=8, word_order="big", byte_order="big")

    assert [(b.table, b.address, b.count, len(b.slots)) for b in blocks] == [
        ("coil", 0, 2000, 1), ("holding", 0, 125, 125), ("holding", 125, 75, 75),
        ("holding", 400, 11, 2), ("input", 0, 1, 1)]
    assert blocks[3].slots[1].item_id == "s/near-far" and blocks[3].slots[1].offset == 10


async def test_one_poll_reads_a_block_per_request(redis: Redis, slave: RegisterSimulator) -> None:
    connector = await connector_for(redis, {"host": slave.host, "port": slave.port,
                                            "registers": [
                                                {"name": f"r{i}", "address": i * 2,
                                                 "type": "uint16"} for i in range(100)]})
    summary = await connector.poll()
    assert summary.published == 100
    assert slave.reads == 2  # 199 registers with gaps of 1: two reads of at most 125
    await connector.aclose()


async def test_a_nan_or_infinite_float_is_published_as_its_name(
    redis: Redis, slave: RegisterSimulator,
) -> None:
    slave.set_words("holding", 0, [0x7FC0, 0, 0xFF80, 0])  # float32 NaN, -infinity
    connector = await connector_for(redis, {"host": slave.host, "port": slave.port,
                                            "registers": [{"name": "f", "address": 0,
                                                           "type": "float32", "count": 2}]})
    await connector.poll()
    assert await values(redis) == [("f", ["NaN", "-Infinity"])]
    await connector.aclose()
