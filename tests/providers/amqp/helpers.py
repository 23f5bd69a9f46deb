"""Publishing to and inspecting a queue of the test RabbitMQ node."""

from __future__ import annotations

import aio_pika

from framework.testing import RabbitMqServer


async def publish(node: RabbitMqServer, queue: str, *bodies: bytes,
                  ids: list[str | None] | None = None, exchange: str = "",
                  routing_key: str | None = None) -> None:
    """Persistent messages, confirmed by the broker, to ``exchange`` (the default
    exchange routes to ``queue``)."""
    async with await aio_pika.connect(node.url, timeout=10) as connection:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange) if exchange else channel.default_exchange
        for index, body in enumerate(bodies):
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                       message_id=ids[index] if ids else None)
            await target.publish(message, routing_key=routing_key or queue)


async def declare(node: RabbitMqServer, queue: str, *, quorum: bool = False) -> None:
    async with await aio_pika.connect(node.url, timeout=10) as connection:
        channel = await connection.channel()
        arguments = {"x-queue-type": "quorum"} if quorum else None
        await channel.declare_queue(queue, durable=True, arguments=arguments)


async def depth(node: RabbitMqServer, queue: str) -> int:
    """Messages ready in ``queue`` (not counting unacknowledged ones)."""
    async with await aio_pika.connect(node.url, timeout=10) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
