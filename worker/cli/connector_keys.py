"""Which Redis keys the CLI reads for a connector: its configured entry's keys under
the settings' KeyScheme (FLEET_REDIS_HASH_TAGS), so that what it prints is the exact
key to use with redis-cli in every mode."""

from __future__ import annotations

from framework.core import LEASE_PREFIX, ConfigError, ConnectorKeys, InvalidEntriesError, Settings
from framework.polling import ConnectorConfig, load_fleet_config


def configured_connectors(settings: Settings) -> dict[str, ConnectorConfig]:
    """The valid entries of the configuration (none if it cannot be read)."""
    try:
        return dict(load_fleet_config(settings.connectors_config_path).connectors)
    except InvalidEntriesError as exc:
        return {
            name: entry for name, entry in exc.valid.items() if isinstance(entry, ConnectorConfig)
        }
    except ConfigError:
        return {}


def keys_of(settings: Settings, name: str) -> ConnectorKeys:
    """``name``'s keys: from its entry (its shard) if configured, else by name alone."""
    config = configured_connectors(settings).get(name)
    scheme = settings.key_scheme
    return config.keys(scheme) if config is not None else scheme.connector(name)


def connector_of_lease_key(key: str) -> str:
    """The connector a ``lease:*`` key belongs to, in every KeyScheme form:
    ``lease:NAME``, ``lease:{NAME}``, ``lease:{STREAM:I}:NAME``."""
    rest = key.removeprefix(LEASE_PREFIX)
    if rest.startswith("{") and "}" in rest:
        tag, _, after = rest[1:].partition("}")
        return after.removeprefix(":") or tag
    return rest
