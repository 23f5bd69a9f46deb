"""Alarms: the ``alarm_trigger`` capability (MQTT, escalation levels acknowledged by
the devices, durable across a consumer crash)."""

from providers.alarm.actions import ALARM_TRIGGER_ID, ALARM_TRIGGER_VERSION, AlarmActions
from providers.alarm.params import AlarmParams, AlarmSettings, Level

__all__ = [
    "ALARM_TRIGGER_ID",
    "ALARM_TRIGGER_VERSION",
    "AlarmActions",
    "AlarmParams",
    "AlarmSettings",
    "Level",
]
