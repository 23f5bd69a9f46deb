"""``data.compress_upload``: the device compresses its buffered readings (gzip) into a
batch it keeps until told it is stored; the capability checks the batch (size,
SHA-256), PUTs it to ``url`` through the guarded HTTP client (the host checked
against the step's ``allowHosts`` before any connection, the answer read within a
size limit, the PUT within ``timeoutS``), and only then acknowledges
it to the device, which drops it. An upload that fails loses nothing: the next
call hands the same batch out again (same ``batchId``, same ``Idempotency-Key``
suffix, so the collector can deduplicate). The postcondition checks that the device
dropped the batch. An upload cannot be unsent: the rollback is ``none`` (audited
and alerted)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

from framework.consuming import CallContext, CallPolicy, CapabilitySpec
from framework.core import PermanentSourceError, TransientSourceError
from providers.devices.capabilities.actions import DEVICE_RESOURCE
from providers.devices.capabilities.device_link import DeviceLink, device_scope, state_of
from providers.devices.capabilities.device_params import CompressUploadParams
from providers.devices.capabilities.params import parse_params
from providers.http.guarded_client import GuardedClient

UPLOAD_ID, UPLOAD_VERSION = "data.compress_upload", "1.0.0"
POLICY = CallPolicy(timeout_s=320.0, max_retries=1)


class InvalidBatchError(PermanentSourceError):
    """The device's batch is not what it says (bad base64, size, digest)."""


class UploadCapability:
    """``client``: the guarded HTTP client (the owner closes it)."""

    def __init__(self, link: DeviceLink, client: GuardedClient) -> None:
        self._link = link
        self._client = client

    def specs(self) -> list[CapabilitySpec]:
        return [CapabilitySpec(
            UPLOAD_ID, UPLOAD_VERSION, self.compress_upload,
            description="Upload a device's buffered readings, gzip-compressed, over HTTP",
            read_state=self.read_state, resource=DEVICE_RESOURCE, policy=POLICY,
            breaker_scope=device_scope)]

    async def read_state(self, params: Mapping[str, Any],
                         context: CallContext) -> Mapping[str, Any]:
        call = parse_params(CompressUploadParams, UPLOAD_ID, params)
        settings = await self._link.settings(call.device_id, context.logger)
        return state_of(call.device_id, settings, {
            "buffered": (settings or {}).get("buffered"),
            "pending_batches": (settings or {}).get("pending_batches")})

    async def compress_upload(self, params: Mapping[str, Any],
                              context: CallContext) -> dict[str, Any]:
        call = parse_params(CompressUploadParams, UPLOAD_ID, params)
        batch = await self._link.command(call.device_id, "data_compress", {},
                                         timeout_s=call.timeout_s)
        batch_id, data = _checked(batch, call)
        try:
            async with asyncio.timeout(call.timeout_s):  # the PUT's own total deadline
                response = await self._client.request(
                    "PUT", call.url, step_hosts=context.hosts, content=data,
                    headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip",
                             "Idempotency-Key": f"{call.device_id}:{batch_id}"})
        except TimeoutError:
            raise TransientSourceError(
                f"{UPLOAD_ID}: the collector did not answer within {call.timeout_s} s for "
                f"batch {batch_id} of device {call.device_id} (kept on the device)") from None
        if response.status_code >= 300:
            error = PermanentSourceError if 400 <= response.status_code < 500 and \
                response.status_code not in (408, 429) else TransientSourceError
            raise error(f"{UPLOAD_ID}: the collector answered HTTP {response.status_code} "
                        f"for batch {batch_id} of device {call.device_id} (kept on the device)")
        await self._link.command(call.device_id, "data_ack", {"batchId": batch_id},
                                 timeout_s=call.timeout_s)
        context.logger.info("device_data_uploaded", device_id=call.device_id,
                            batch_id=batch_id, bytes=len(data), count=batch.get("count"))
        return {"batchId": batch_id, "bytes": len(data), "count": batch.get("count"),
                "sha256": batch.get("sha256"), "status": response.status_code}


def _checked(batch: Mapping[str, Any], call: CompressUploadParams) -> tuple[str, bytes]:
    where = f"device {call.device_id}: batch"
    batch_id, encoded = batch.get("batchId"), batch.get("data")
    if not isinstance(batch_id, str) or not 0 < len(batch_id) <= 64 \
            or not isinstance(encoded, str):
        raise InvalidBatchError(f"{where}: expected 'batchId' and base64 'data'")
    if len(encoded) > (call.max_bytes * 4) // 3 + 4:
        raise InvalidBatchError(f"{where} {batch_id}: over maxBytes ({call.max_bytes})")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBatchError(f"{where} {batch_id}: 'data' is not base64") from None
    if len(data) > call.max_bytes:
        raise InvalidBatchError(f"{where} {batch_id}: {len(data)} bytes, over maxBytes "
                                f"({call.max_bytes})")
    if hashlib.sha256(data).hexdigest() != batch.get("sha256"):
        raise InvalidBatchError(f"{where} {batch_id}: its SHA-256 does not match its data")
    return batch_id, data
