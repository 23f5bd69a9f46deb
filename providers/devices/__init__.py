"""IoT devices: the registry (groups, tags, last-seen, status), the heartbeat-absence
watchdog and the ``device_heartbeat`` capability of absence triggers."""

from providers.devices.heartbeats import device_heartbeat_spec
from providers.devices.registry import (
    Device,
    DevicePage,
    DeviceRegistry,
    Heartbeat,
    HeartbeatOutcome,
)
from providers.devices.registry_groups import DeviceGroups, MaintenanceWindow
from providers.devices.registry_keys import (
    DEFAULT_EVENTS_STREAM,
    DEFAULT_GROUP,
    DEFAULT_TIMEOUT_S,
    DeviceKeys,
    check_device_id,
    check_group,
)
from providers.devices.watchdog import SweepResult, Watchdog, WatchdogSettings
from providers.devices.watchdog_metrics import WatchdogMetrics

__all__ = [
    "DEFAULT_EVENTS_STREAM",
    "DEFAULT_GROUP",
    "DEFAULT_TIMEOUT_S",
    "Device",
    "DeviceGroups",
    "DeviceKeys",
    "DevicePage",
    "DeviceRegistry",
    "Heartbeat",
    "HeartbeatOutcome",
    "MaintenanceWindow",
    "SweepResult",
    "Watchdog",
    "WatchdogMetrics",
    "WatchdogSettings",
    "check_device_id",
    "check_group",
    "device_heartbeat_spec",
]
