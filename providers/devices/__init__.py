"""IoT devices: the MQTT command/response channel and the device simulator."""

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
from providers.devices.simulator import DeviceSimulator, SimulatorOptions
from providers.devices.simulator_device import SimulatedDevice

__all__ = [
    "ChannelLimits",
    "DeviceBroker",
    "DeviceChannel",
    "DeviceLinkError",
    "DeviceRefusedError",
    "DeviceSimulator",
    "DeviceTimeoutError",
    "InvalidDeviceRequestError",
    "SimulatedDevice",
    "SimulatorOptions",
    "command_topic",
    "response_topic",
]
