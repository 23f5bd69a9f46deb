"""Signed firmware manifests: what an update installs, signed with Ed25519 by the
firmware's publisher, checked before anything is sent to a device.

A manifest is ``{"version", "url", "sha256", "sizeBytes", "signature"}``; the
signature (``ed25519:<key-id>:<base64>``, the catalog's scheme) covers the other
fields as sorted compact JSON. The keys trusted for firmware are their own set
(``FIRMWARE_TRUSTED_KEYS`` file or directory, ``FIRMWARE_TRUSTED_KEYS_JSON``), in
the catalog's trusted-key format: whoever may sign capabilities need not be who
may sign firmware.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from framework.core import ConnectorFleetError, PermanentSourceError
from framework.trust import PrivateKey, TrustStore, load_trust_store


class InvalidFirmwareManifestError(PermanentSourceError):
    """A manifest that is unsigned, signed by an untrusted or expired key, changed
    since signing, or not for the version asked: nothing is sent."""


class FirmwareManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    version: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$")
    url: str = Field(min_length=1, max_length=2048, pattern=r"^https://")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(alias="sizeBytes", gt=0, le=1 << 34)
    signature: str | None = Field(None, max_length=256)

    def signed_fields(self) -> bytes:
        fields = self.model_dump(by_alias=True, exclude={"signature"})
        return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)

    def signed_with(self, key: PrivateKey) -> FirmwareManifest:
        return self.model_copy(update={"signature": key.sign(self.signed_fields())})

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


def verify_manifest(manifest: FirmwareManifest, version: str, trust: TrustStore, *,
                    device_id: str, now_s: float) -> None:
    """Raises :class:`InvalidFirmwareManifestError` saying what is wrong."""
    where = f"device {device_id}: firmware manifest {manifest.version}"
    if manifest.version != version:
        raise InvalidFirmwareManifestError(f"{where} is for version {manifest.version}, "
                                           f"not the version asked ({version})")
    try:
        trust.verify(manifest.signed_fields(), manifest.signature,
                     capability=f"firmware {manifest.version}", now_s=now_s)
    except ConnectorFleetError as exc:
        raise InvalidFirmwareManifestError(f"{where}: {exc}") from None


def firmware_trust_from_env(environ: Mapping[str, str] = os.environ) -> TrustStore:
    """``FIRMWARE_TRUSTED_KEYS`` (file or directory) and ``FIRMWARE_TRUSTED_KEYS_JSON``."""
    path = environ.get("FIRMWARE_TRUSTED_KEYS")
    return load_trust_store(Path(path) if path else None,
                            environ.get("FIRMWARE_TRUSTED_KEYS_JSON"))
