"""The device command/response channel over MQTT.

A request is published to ``devices/{id}/cmd`` (QoS 1) as
``{"id": <correlation id>, "command": ..., "params": {...}}``; the device answers on
``devices/{id}/res`` with ``{"id": ..., "ok": true, "result": {...}}`` or
``{"id": ..., "ok": false, "error": "..."}``. One MQTT connection serves every
request; a response is matched by its correlation id **and** the device of its
topic (a device cannot answer for another). Whatever else arrives (unknown or late
ids, bad JSON, oversized) is counted and logged, never raised into a request.

Limits: ``max_in_flight`` requests at once (a caller waits for a slot within its
own deadline), ``timeout_s`` covers the wait for a slot and for the answer,
parameters and responses are capped in bytes.

Errors::

    InvalidDeviceRequestError (PermanentSourceError)  bad id / command / params: never sent
    DeviceRefusedError        (PermanentSourceError)  the device answered ok=false
    DeviceTimeoutError        (TransientSourceError)  no answer within timeout_s
    DeviceLinkError           (TransientSourceError)  the broker is unreachable at start /
                                                      the channel is stopped
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from framework.core import Logger, PermanentSourceError, TransientSourceError
from providers.devices.channel_broker import DeviceBroker
from providers.devices.channel_link import DeviceLinkError, MqttLink
from providers.devices.channel_topics import (
    TOPIC_ROOT,
    InvalidDeviceRequestError,
    check_command,
    check_device_id,
    command_topic,
    device_of,
)


class DeviceTimeoutError(TransientSourceError):
    """The device did not answer within the request's timeout."""


class DeviceRefusedError(PermanentSourceError):
    """The device answered, with ``ok: false`` (its ``error`` is in the message)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    max_in_flight: int = 1000
    max_params_bytes: int = 64 * 1024
    max_response_bytes: int = 256 * 1024
    max_timeout_s: float = 600.0


@dataclass(slots=True)
class _Pending:
    device_id: str
    answer: asyncio.Future[Mapping[str, Any]]


class DeviceChannel:
    """``async with DeviceChannel(broker, logger=...) as channel:
    await channel.request("meter-1", "reboot", {}, timeout_s=10)``."""

    def __init__(self, broker: DeviceBroker, *, logger: Logger,
                 limits: ChannelLimits = ChannelLimits(), client_id: str | None = None) -> None:
        self._limits = limits
        self._log = logger
        self._slots = asyncio.Semaphore(limits.max_in_flight)
        self._pending: dict[str, _Pending] = {}
        self._link = MqttLink(
            broker, client_id=client_id or f"connector-fleet-devices-{uuid.uuid4().hex[:12]}",
            topics=[f"{TOPIC_ROOT}/+/res"], on_messages=self._on_responses, logger=logger,
            max_message_bytes=limits.max_response_bytes)
        self.unmatched = 0
        self.malformed = 0
        # Correlation ids: a random prefix per channel, then a counter (one urandom
        # call per request cost ~4% of a rollout's CPU on a loaded host).
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        await self._link.start()

    async def stop(self) -> None:
        await self._link.stop()
        for pending in self._pending.values():
            if not pending.answer.done():
                pending.answer.set_exception(DeviceLinkError("device channel stopped"))
        self._pending.clear()

    async def __aenter__(self) -> DeviceChannel:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def request(self, device_id: str, command: str,
                      params: Mapping[str, Any] | None = None, timeout_s: float = 10.0
                      ) -> Mapping[str, Any]:
        """The device's ``result`` for ``command``; the errors in the module docstring."""
        payload, correlation = self._encode(device_id, command, params, timeout_s)
        try:
            async with asyncio.timeout(timeout_s):
                async with self._slots:
                    return await self._exchange(device_id, correlation, payload)
        except TimeoutError:
            raise DeviceTimeoutError(f"device {device_id}: no answer to {command} within "
                                     f"{timeout_s:g} s") from None

    def _encode(self, device_id: str, command: str, params: Mapping[str, Any] | None,
                timeout_s: float) -> tuple[bytes, str]:
        check_device_id(device_id)
        check_command(command)
        if not 0 < timeout_s <= self._limits.max_timeout_s:
            raise InvalidDeviceRequestError(
                f"device {device_id} {command}: timeout_s must be in (0, "
                f"{self._limits.max_timeout_s:g}], got {timeout_s!r}")
        correlation = f"{self._id_prefix}-{next(self._ids)}"
        try:
            payload = json.dumps({"id": correlation, "command": command,
                                  "params": dict(params or {})}, separators=(",", ":"),
                                 allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidDeviceRequestError(
                f"device {device_id} {command}: params are not JSON: {exc}") from None
        if len(payload) > self._limits.max_params_bytes:
            raise InvalidDeviceRequestError(
                f"device {device_id} {command}: params are {len(payload)} bytes, over "
                f"{self._limits.max_params_bytes}")
        return payload, correlation

    async def _exchange(self, device_id: str, correlation: str, payload: bytes
                        ) -> Mapping[str, Any]:
        if not self._link.connected:
            # A broker restart is not the device's failure: wait for paho's reconnect
            # within this request's deadline (a timeout, retryable, if it is longer).
            await self._link.wait_connected()
        answer: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[correlation] = _Pending(device_id, answer)
        try:
            self._link.publish(command_topic(device_id), payload, qos=1)
            return await answer
        finally:
            self._pending.pop(correlation, None)

    # -- responses (on the event loop, in bursts) --------------------------------------

    def _on_responses(self, burst: list[tuple[str, bytes]]) -> None:
        for topic, payload in burst:
            self._on_response(topic, payload)

    def _on_response(self, topic: str, payload: bytes) -> None:
        device_id = device_of(topic)
        body = _json_object(payload)
        if device_id is None or body is None or not isinstance(body.get("id"), str):
            self.malformed += 1
            self._log.warning("device_response_malformed", topic=topic[:200], size=len(payload))
            return
        pending = self._pending.get(body["id"])
        if pending is None or pending.device_id != device_id or pending.answer.done():
            self.unmatched += 1  # late (timed out), a duplicate, or another device's id
            self._log.info("device_response_unmatched", device_id=device_id)
            return
        outcome = _result_or_error(device_id, body)
        if isinstance(outcome, DeviceRefusedError):
            pending.answer.set_exception(outcome)
        else:
            pending.answer.set_result(outcome)


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _result_or_error(device_id: str, body: Mapping[str, Any]
                     ) -> Mapping[str, Any] | DeviceRefusedError:
    if body.get("ok") is True:
        result = body.get("result", {})
        return result if isinstance(result, dict) else {"value": result}
    error = str(body.get("error") or "no error given")[:500]
    code = body.get("code")
    return DeviceRefusedError(f"device {device_id} refused: {error}",
                              code=str(code)[:64] if code is not None else None)
