"""``device_heartbeat`` through the safe pipeline: its signed definition template
resolves, the call records the heartbeat and is audited; a hostile id is refused."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from framework.core import DeadLetterError, SystemClock
from providers.devices import DeviceRegistry, device_heartbeat_spec
from tests.providers.messaging_rig import definition_path, safe_rig


async def test_a_signed_heartbeat_call_records_the_device(redis: Redis) -> None:
    rig = await safe_rig(redis, [device_heartbeat_spec({})],
                         [definition_path("devices", "device_heartbeat")])
    result = await rig.call("device_heartbeat", {"deviceId": 1042, "group": "north",
                                                 "timeoutS": 600, "rule": "meter-silent"})
    assert result["deviceId"] == "1042" and result["outcome"] == "new"
    device = await DeviceRegistry(redis, clock=SystemClock()).show("1042")
    assert device is not None and device.group == "north" and device.timeout_ms == 600_000
    assert await rig.kinds() == ["executed"]  # audited


async def test_a_hostile_device_id_is_refused_by_the_capability(redis: Redis) -> None:
    rig = await safe_rig(redis, [device_heartbeat_spec({})],
                         [definition_path("devices", "device_heartbeat")])
    with pytest.raises(DeadLetterError, match="deviceId: expected 1 to 128"):
        await rig.call("device_heartbeat", {"deviceId": "../../etc/passwd"})
    assert await DeviceRegistry(redis, clock=SystemClock()).count() == 0
