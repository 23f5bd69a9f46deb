"""ble-scanner's providerConfig: every bad field is an error naming it, and the
per-device throttle's rules in isolation (dedup, rate limit, the device bound)."""

from __future__ import annotations

from typing import Any

import pytest

from framework.core import ConfigError
from framework.polling import ConnectorConfig, parse_provider_config
from providers.ble import Advertisement, BleScannerConfig, DeviceThrottle
from providers.ble.readings import ThrottleRules
from tests.providers.ble.conftest import ENV_SENSING, SENSOR, entry


def settings_of(**provider: Any) -> BleScannerConfig:
    return parse_provider_config(BleScannerConfig,
                                 ConnectorConfig.model_validate(entry(**provider)))


@pytest.mark.parametrize(("provider", "message"), [
    ({"serviceUUIDs": ["not-a-uuid"]}, "providerConfig.serviceUUIDs.0: Value error, "
                                       "'not-a-uuid' is not a Bluetooth UUID"),
    ({"interface": "eth0"}, "providerConfig.interface: String should match pattern"),
    ({"scanMode": "sideways"}, "providerConfig.scanMode: Input should be 'active' or 'passive'"),
    ({"scanMode": "passive"}, "scanMode 'passive' needs passivePatterns"),
    ({"passivePatterns": [{"adType": 255, "dataHex": "4c00"}]},
     "passivePatterns apply only to scanMode 'passive'"),
    ({"addresses": ["AA:BB:CC"]}, "providerConfig.addresses.0: Value error, 'AA:BB:CC' is "
                                  "not a Bluetooth address"),
    ({"characteristics": [{"address": SENSOR, "uuid": "2a6e", "mode": "write"}]},
     "providerConfig.characteristics.0.mode: Input should be 'read' or 'notify'"),
    ({"characteristics": [{"uuid": "2a6e"}]}, "providerConfig.characteristics.0.address"),
    ({"characteristics": [{"address": SENSOR, "uuid": "2a6e", "intervalMs": 5}]},
     "providerConfig.characteristics.0.intervalMs: Input should be greater than or equal "
     "to 100"),
    ({"minIntervalMs": -1}, "providerConfig.minIntervalMs: Input should be greater than or "
                            "equal to 0"),
    ({"maxDevices": 0}, "providerConfig.maxDevices: Input should be greater than or equal to 1"),
    ({"interface": None}, "interface is required"),
    ({"scanInterval": 5}, "providerConfig.scanInterval: unknown field"),
])
def test_a_bad_field_is_an_error_naming_the_connector_and_the_field(
    provider: dict[str, Any], message: str,
) -> None:
    with pytest.raises(ConfigError, match="ble-scanner connector radio: ") as raised:
        settings_of(**provider)
    assert message in str(raised.value)


def test_short_uuids_and_lower_case_addresses_are_normalized() -> None:
    settings = settings_of(serviceUUIDs=["181A", ENV_SENSING.upper()],
                           characteristics=[{"address": SENSOR.lower(), "uuid": "2A6E"}])
    assert settings.service_uuids == [ENV_SENSING, ENV_SENSING]
    assert settings.characteristics[0].address == SENSOR
    assert settings.characteristics[0].uuid == "00002a6e-0000-1000-8000-00805f9b34fb"


def advertisement(address: str = SENSOR, data: bytes = b"\x01", rssi: int = -50) -> Advertisement:
    return Advertisement(address=address, rssi=rssi, manufacturer_data={1: data})


def throttle(**rules: Any) -> DeviceThrottle:
    defaults = {"min_interval_s": 1.0, "republish_after_s": 60.0, "rssi_step_dbm": 0,
                "max_devices": 100}
    return DeviceThrottle(ThrottleRules(**{**defaults, **rules}))


def test_the_newest_advertisement_of_an_interval_is_published_when_it_ends() -> None:
    gate = throttle()
    gate.offer(advertisement(data=b"\x01"))
    assert [a.manufacturer_data for a in gate.take_due(0.0, 10)] == [{1: b"\x01"}]
    gate.offer(advertisement(data=b"\x02"))
    gate.offer(advertisement(data=b"\x03"))
    assert gate.take_due(0.5, 10) == []
    assert gate.next_due_s(0.5) == pytest.approx(0.5)
    assert [a.manufacturer_data for a in gate.take_due(1.0, 10)] == [{1: b"\x03"}]


def test_the_same_advertisement_is_republished_only_after_the_window() -> None:
    gate = throttle(min_interval_s=0.0, republish_after_s=10.0)
    gate.offer(advertisement())
    assert len(gate.take_due(0.0, 10)) == 1
    gate.offer(advertisement(rssi=-70))
    assert gate.take_due(5.0, 10) == []
    gate.offer(advertisement(rssi=-71))
    assert len(gate.take_due(10.0, 10)) == 1


def test_beyond_max_devices_the_least_recently_heard_is_forgotten() -> None:
    gate = throttle(max_devices=2)
    for address in ("AA:00:00:00:00:01", "AA:00:00:00:00:02", "AA:00:00:00:00:03"):
        gate.offer(advertisement(address))
    assert [a.address for a in gate.take_due(0.0, 10)] == ["AA:00:00:00:00:02",
                                                          "AA:00:00:00:00:03"]
    assert gate.forgotten == 1


def test_a_batch_holds_at_most_the_limit_and_the_rest_stays_pending() -> None:
    gate = throttle()
    for number in range(5):
        gate.offer(advertisement(f"AA:00:00:00:00:0{number}"))
    assert len(gate.take_due(0.0, 3)) == 3
    assert len(gate.take_due(0.0, 3)) == 2
