"""The one place where built-in connector types and capabilities are registered."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from framework.consuming import CapabilityRegistry, CapabilitySpec
from framework.polling import ConnectorRegistry
from providers.alarm import AlarmActions, AlarmSettings
from providers.amqp import AMQP_SOURCE_TYPE, create_amqp_connector
from providers.ble import BLE_SCANNER_TYPE, create_ble_connector
from providers.cron import create_cron_connector
from providers.datadog import create_datadog_connector
from providers.devices import device_heartbeat_spec
from providers.devices.capabilities import (
    DeviceActions,
    device_actions_from_env,
    device_capability_deps_from_env,
    device_capability_specs,
)
from providers.email import EmailActions, SmtpSettings
from providers.fhir import FhirActions, FhirSettings
from providers.fleet import fleet_capabilities
from providers.fs import create_fs_watch_connector
from providers.github import create_github_connector
from providers.grist import GristActions, GristSettings
from providers.http import HttpActions, create_http_json_connector
from providers.imap import create_imap_connector
from providers.jira import create_jira_connector
from providers.kafka import KAFKA_SOURCE_TYPE, KafkaActions, create_kafka_source_connector
from providers.mavlink import DroneActions
from providers.modbus import create_modbus_connector, modbus_write_spec, valve_control_spec
from providers.mqtt import MQTT_SOURCE_TYPE, create_mqtt_connector
from providers.noaa import create_noaa_weather_connector
from providers.opcua import (
    OPCUA_SOURCE_TYPE,
    create_opcua_connector,
    endpoints_from_env,
    opcua_write_spec,
)
from providers.outbox import EnvSecrets
from providers.plant import PlantActions, PlantSettings
from providers.postgres import create_cdc_connector
from providers.slack import SlackActions
from providers.sms import SmsActions, SmsSettings
from providers.webhook import WEBHOOK_TYPE, create_webhook_connector


def register_builtin_connectors(registry: ConnectorRegistry) -> None:
    registry.register_connector("NOAA_WEATHER", create_noaa_weather_connector)
    registry.register_connector("DATADOG", create_datadog_connector)
    registry.register_connector("HTTP_JSON", create_http_json_connector)
    registry.register_connector("JIRA", create_jira_connector)
    registry.register_connector("GITHUB", create_github_connector)
    registry.register_connector("cron-trigger", create_cron_connector)
    registry.register_connector("fs-watch", create_fs_watch_connector)
    registry.register_connector("email-imap", create_imap_connector)
    # Receivers run as several replicas behind a Service, each under lease:NAME:REPLICA.
    registry.register_connector(WEBHOOK_TYPE, create_webhook_connector, replicas=True)
    registry.register_connector(KAFKA_SOURCE_TYPE, create_kafka_source_connector)
    registry.register_connector("modbus-tcp", create_modbus_connector)
    registry.register_connector(MQTT_SOURCE_TYPE, create_mqtt_connector)
    registry.register_connector(AMQP_SOURCE_TYPE, create_amqp_connector)
    registry.register_connector(BLE_SCANNER_TYPE, create_ble_connector)
    registry.register_connector("cdc-postgres", create_cdc_connector)
    registry.register_connector(OPCUA_SOURCE_TYPE, create_opcua_connector)


def default_registry() -> ConnectorRegistry:
    """Built-in types plus every type installed through entry points."""
    registry = ConnectorRegistry()
    register_builtin_connectors(registry)
    registry.load_entry_points()
    return registry


@dataclass(frozen=True)
class BuiltinActions:
    """The clients the built-in capabilities hold (the HTTP pool, Kafka producers):
    whoever registered them closes them (``aclose``)."""

    http: HttpActions
    kafka: KafkaActions
    # pump_control, irrigation_control; their close sweeper is background work.
    plant: PlantActions = field(default_factory=lambda: PlantActions(PlantSettings()))
    devices: DeviceActions | None = None

    async def aclose(self) -> None:
        try:
            await self.http.aclose()
        finally:
            try:
                await self.kafka.aclose()
            finally:
                if self.devices is not None:
                    await self.devices.aclose()


def register_builtin_capabilities(
    registry: CapabilityRegistry, *, http: HttpActions | None = None,
    kafka: KafkaActions | None = None, env: Mapping[str, str] | None = None,
) -> BuiltinActions:
    """``http_call``, ``webhook_call``, ``emit_event``, ``log``, ``valve_control`` and
    ``modbus_write`` (Modbus; addresses in the call's parameters), ``kafka_publish`` and the
    messaging actions (:func:`messaging_capabilities`), ``pump_control`` and
    ``irrigation_control`` (the plant of ``PLANT_CONFIG_JSON`` / ``PLANT_CONFIG``), the
    field actions (``drone_waypoint``, ``alarm_trigger``), ``device_heartbeat`` and the
    device capabilities over MQTT (``providers.devices.capabilities``), ``opcua_write``;
    returns the clients they hold, which the caller closes (``aclose``: the HTTP pool,
    which the messaging actions share, and the Kafka producers). ``env``: where the
    messaging and plant actions read their settings and secrets (the process
    environment by default), and ``opcua_write`` its servers (``OPCUA_ENDPOINTS``, by
    name)."""
    environment = os.environ if env is None else env
    devices = device_actions_from_env(environment)
    actions = BuiltinActions(http=http or HttpActions(), kafka=kafka or KafkaActions(),
                             plant=PlantActions(PlantSettings.from_env(environment)),
                             devices=devices)
    for spec in [*actions.http.specs(), *fleet_capabilities(), valve_control_spec(),
                 modbus_write_spec(), *actions.kafka.specs(),
                 *messaging_capabilities(actions.http, environment),
                 *actions.plant.specs(), *field_capabilities(environment),
                 device_heartbeat_spec(environment), *devices.specs(),
                 *device_capability_specs(device_capability_deps_from_env(
                     devices, actions.http.client, environment)),
                 opcua_write_spec(endpoints_from_env(environment))]:
        registry.register(spec)
    return actions


def messaging_capabilities(http: HttpActions, env: Mapping[str, str]) -> list[CapabilitySpec]:
    """``email_send`` (the SMTP server from ``SMTP_*``), ``slack_message`` and
    ``sms_send`` (Twilio, or OVH with ``OVH_SMS_SERVICE`` / ``OVH_API_BASE``) and
    ``patient_alert`` (the FHIR server ``FHIR_BASE_URL``, token ``FHIR_TOKEN``) and
    ``grist_sync`` (``GRIST_BASE_URL``, ``GRIST_API_KEY``), over the
    HTTP actions' guarded client; their secrets are read from ``env`` at each call."""
    secrets = EnvSecrets(env)
    return [
        EmailActions(SmtpSettings.from_env(env), client=http.client, secrets=secrets).spec(),
        SlackActions(client=http.client, secrets=secrets).spec(),
        SmsActions(SmsSettings.from_env(env), client=http.client, secrets=secrets).spec(),
        FhirActions(FhirSettings(base_url=env.get("FHIR_BASE_URL") or None),
                    client=http.client, secrets=secrets).spec(),
        GristActions(GristSettings(base_url=env.get("GRIST_BASE_URL") or None),
                     client=http.client, secrets=secrets).spec(),
    ]


def field_capabilities(env: Mapping[str, str]) -> list[CapabilitySpec]:
    """``drone_waypoint`` (the vehicles of ``MAVLINK_VEHICLES``, read at each call) and
    ``alarm_trigger`` (the MQTT broker of ``ALARM_MQTT_*``, password
    ``ALARM_MQTT_PASSWORD`` read at each call)."""
    return [DroneActions(env=env).spec(),
            AlarmActions(AlarmSettings.from_env(env), secrets=EnvSecrets(env)).spec()]


def default_capability_registry(
    *, http: HttpActions | None = None, kafka: KafkaActions | None = None,
) -> tuple[CapabilityRegistry, BuiltinActions]:
    """Built-in capabilities plus every one installed through entry points."""
    registry = CapabilityRegistry()
    actions = register_builtin_capabilities(registry, http=http, kafka=kafka)
    registry.load_entry_points()
    return registry, actions
