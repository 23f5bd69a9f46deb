"""One event through a rule, delivered, then delivered again: as after a consumer
crash before its acknowledgement reached Redis. What the actions' "a redelivered
event does not act twice" tests share."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from redis.asyncio import Redis

from framework.consuming import CapabilitySpec, RegistryExecutor
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.delivery import Delivery
from framework.consuming.group import GroupMember
from framework.consuming.rules.handler import RulesHandler
from framework.consuming.rules.loader import parse_rules
from framework.core import SystemClock
from tests.execution_deps import execution_deps


async def deliver_twice(redis: Redis, rules: dict[str, Any], spec: CapabilitySpec,
                        stream: str, event: dict[str, Any]) -> None:
    """``event`` appended to ``stream``, handled by ``rules`` (calling ``spec``) and
    acknowledged; then the same entry handled and acknowledged again."""
    registry = CapabilityRegistry()
    registry.register(spec)
    handler = RulesHandler(parse_rules(rules),
                           RegistryExecutor(registry, execution_deps(redis, SystemClock())),
                           redis=redis)
    entry_id = await redis.xadd(stream, {"event": orjson.dumps(event).decode()})
    entries: list[Any] = await redis.xrange(stream, entry_id, entry_id) or []
    [(read_id, fields)] = entries
    delivery = Delivery(stream, read_id, fields, "rules", "consumer-1")
    member = GroupMember(redis, group="rules", consumer="consumer-1", dead_letter_streams={})
    await member.ack([(delivery, await handler.handle(delivery) or ())])
    again = replace(delivery, delivery_count=2)
    await member.ack([(again, await handler.handle(again) or ())])
