"""Commands packed by hiredis: the same bytes and the same errors as redis-py's packer,
and a real server reading them (the ``redis`` fixture's client packs this way)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from framework.core import create_redis
from framework.core.command_packing import HiredisConnection, HiredisUnixConnection
from framework.testing import RedisServer

COMMANDS: list[tuple[Any, ...]] = [
    ("GET", "key"),
    ("SCRIPT LOAD", "return 1"),
    (b"CLIENT SETNAME", b"name"),
    ("SET", "é\u2603", b"\x00\xff raw", 7, -3, 2**70),
    ("ZADD", "z", 0.1, "a", 1e-7, "b", 2.0, "c", float("inf"), "d", -0.0, "e"),
    ("XADD", "s", "*", "event", '{"payload": {"sent_ms": 1.5}}'),
    ("HSET", "h", "big", "x" * 100_000),
    ("SET", "mv", memoryview(b"view")),
]


def _redis_py(*args: Any) -> bytes:
    return b"".join(bytes(chunk) for chunk in Connection().pack_command(*args))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_packs_the_bytes_redis_py_packs(command: tuple[Any, ...]) -> None:
    packed = HiredisConnection().pack_command(*command)
    assert b"".join(packed) == _redis_py(*command)


def test_packs_a_pipeline_as_its_commands_one_after_another() -> None:
    packed = b"".join(HiredisConnection().pack_commands(COMMANDS))
    assert packed == b"".join(_redis_py(*command) for command in COMMANDS)


@pytest.mark.parametrize("bad", [True, None, object()], ids=["bool", "None", "object"])
def test_refuses_what_redis_py_refuses_with_its_error(bad: Any) -> None:
    with pytest.raises(DataError, match="Invalid input of type"):
        Connection().pack_command("SET", "k", bad)
    with pytest.raises(DataError, match="Invalid input of type"):
        HiredisConnection().pack_command("SET", "k", bad)


def test_a_bytearray_redis_py_accepts_is_still_accepted() -> None:
    packed = HiredisConnection().pack_command("SET", "k", bytearray(b"ab"))
    assert b"".join(bytes(chunk) for chunk in packed) == _redis_py("SET", "k", bytearray(b"ab"))


def test_a_string_that_is_not_utf8_encodable_fails_naming_the_codec() -> None:
    with pytest.raises(UnicodeEncodeError):
        HiredisConnection().pack_command("SET", "k", "\ud800")


async def test_a_single_server_client_packs_with_hiredis_and_the_server_reads_it(
        redis: Redis) -> None:
    connection = await redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        assert isinstance(connection, HiredisConnection)
    finally:
        await redis.connection_pool.release(connection)
    await redis.set("k", "é\u2603")
    assert await redis.get("k") == "é\u2603"
    await redis.zadd("z", {"a": 0.1, "b": 2.0})
    assert await redis.zrange("z", 0, -1, withscores=True) == [("a", 0.1), ("b", 2.0)]
    script = redis.register_script("return {ARGV[1], #ARGV}")
    assert await script(args=["x" * 70_000, *range(500)]) == ["x" * 70_000, 501]
    async with redis.pipeline(transaction=True) as pipe:
        for index in range(300):
            pipe.rpush("list", index)
        replies = await pipe.execute()
    assert replies == list(range(1, 301))
    with pytest.raises(DataError):
        await redis.set("k", True)
    assert await redis.get("k") == "é\u2603"  # the refused command left the connection sound


async def test_a_client_over_a_unix_socket_packs_with_hiredis(tmp_path: Any) -> None:
    socket = tmp_path / "redis.sock"
    with RedisServer(extra_args=("--unixsocket", str(socket))):
        client = create_redis(f"unix://{socket}")
        try:
            await client.set("k", 1.5)
            assert await client.get("k") == "1.5"
            connection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            assert isinstance(connection, HiredisUnixConnection)
            await client.connection_pool.release(connection)
        finally:
            await client.aclose()
