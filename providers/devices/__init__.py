"""IoT devices: the registry (groups, tags, last-seen, status), the heartbeat-absence
watchdog and the ``device_heartbeat`` capability of absence triggers; the MQTT
command/response channel and the device simulator."""

from providers.devices.channel import (
    ChannelLimits,
    DeviceChannel,
    DeviceRefusedError,
    DeviceTimeoutError,
)
from providers.devices.channel_broker import DeviceBroker
from providers.devices.channel_link import DeviceLinkError
from providers.devices.channel_topics import (
    InvalidDeviceRequestError,
    command_topic,
    response_topic,
)
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
from providers.devices.simulator import DeviceSimulator, SimulatorOptions
from providers.devices.simulator_device import SimulatedDevice
from providers.devices.watchdog import SweepResult, Watchdog, WatchdogSettings
from providers.devices.watchdog_metrics import WatchdogMetrics

__all__ = [
    "DEFAULT_EVENTS_STREAM",
    "DEFAULT_GROUP",
    "DEFAULT_TIMEOUT_S",
    "ChannelLimits",
    "Device",
    "DeviceBroker",
    "DeviceChannel",
    "DeviceGroups",
    "DeviceKeys",
    "DeviceLinkError",
    "DevicePage",
    "DeviceRefusedError",
    "DeviceRegistry",
    "DeviceSimulator",
    "DeviceTimeoutError",
    "Heartbeat",
    "HeartbeatOutcome",
    "InvalidDeviceRequestError",
    "MaintenanceWindow",
    "SimulatedDevice",
    "SimulatorOptions",
    "SweepResult",
    "Watchdog",
    "WatchdogMetrics",
    "WatchdogSettings",
    "check_device_id",
    "check_group",
    "command_topic",
    "device_heartbeat_spec",
    "response_topic",
]
