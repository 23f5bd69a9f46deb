"""Bluetooth Low Energy advertisements and GATT values (bleak on BlueZ): ``ble-scanner``."""

from providers.ble.config import BleScannerConfig, Characteristic, PassivePattern
from providers.ble.connector import BLE_SCANNER_TYPE, BleEvents, create_ble_connector
from providers.ble.readings import Advertisement, CharacteristicValue, DeviceThrottle
from providers.ble.source import BleSource

__all__ = [
    "BLE_SCANNER_TYPE",
    "Advertisement",
    "BleEvents",
    "BleScannerConfig",
    "BleSource",
    "Characteristic",
    "CharacteristicValue",
    "DeviceThrottle",
    "PassivePattern",
    "create_ble_connector",
]
