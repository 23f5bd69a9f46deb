"""Device capabilities over the MQTT command channel."""

from providers.devices.capabilities.actions import (
    DEVICE_RESOURCE,
    FIRMWARE_UPDATE_ID,
    FIRMWARE_UPDATE_VERSION,
    REBOOT_ID,
    REBOOT_VERSION,
    DeviceActions,
    device_actions_from_env,
)
from providers.devices.capabilities.catalog_specs import (
    DeviceCapabilityDeps,
    device_capability_deps_from_env,
    device_capability_specs,
)
from providers.devices.capabilities.gpio_local import GpioRefusedError, LocalGpio
from providers.devices.capabilities.manifest import (
    FirmwareManifest,
    InvalidFirmwareManifestError,
    firmware_trust_from_env,
    verify_manifest,
)
from providers.devices.capabilities.params import FirmwareUpdateParams, RebootParams

__all__ = [
    "DEVICE_RESOURCE",
    "FIRMWARE_UPDATE_ID",
    "FIRMWARE_UPDATE_VERSION",
    "REBOOT_ID",
    "REBOOT_VERSION",
    "DeviceActions",
    "DeviceCapabilityDeps",
    "GpioRefusedError",
    "LocalGpio",
    "FirmwareManifest",
    "FirmwareUpdateParams",
    "InvalidFirmwareManifestError",
    "RebootParams",
    "device_actions_from_env",
    "device_capability_deps_from_env",
    "device_capability_specs",
    "firmware_trust_from_env",
    "verify_manifest",
]
