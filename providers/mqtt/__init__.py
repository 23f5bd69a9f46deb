"""MQTT (3.1.1 and 5) as a push source: ``mqtt-source``."""

from providers.mqtt.config import MqttSourceConfig, MqttTls, broker_address
from providers.mqtt.connector import MQTT_SOURCE_TYPE, MqttEvents, create_mqtt_connector
from providers.mqtt.source import MqttConnectError, MqttMessage, MqttSource

__all__ = [
    "MQTT_SOURCE_TYPE",
    "MqttConnectError",
    "MqttEvents",
    "MqttMessage",
    "MqttSource",
    "MqttSourceConfig",
    "MqttTls",
    "broker_address",
    "create_mqtt_connector",
]
