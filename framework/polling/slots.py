"""Redis Cluster hash slots of the keys one script is called with.

A Cluster runs a script only if every key it names hashes to one slot (else
``CROSSSLOT``): a connector whose keys would not is refused when it is built,
with the keys and their slots, rather than at its first commit.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.crc import key_slot

from framework.core.errors import ConfigError


def slots_of(keys: Sequence[str]) -> dict[str, int]:
    """Each key's hash slot (CRC16 of its hash tag, or of the whole key, mod 16384)."""
    return {key: key_slot(key.encode()) for key in keys}


def check_one_slot(connector: str, keys: Sequence[str]) -> None:
    """Raise ConfigError naming ``connector`` and each key's slot if ``keys`` span slots."""
    slots = slots_of(keys)
    if len(set(slots.values())) > 1:
        spread = ", ".join(f"{key} (slot {slot})" for key, slot in slots.items())
        raise ConfigError(
            f"connector {connector}: its commit keys hash to different Cluster slots: "
            f"{spread}; a shared outputStream needs outputShards with hash tags on",
            connector=connector,
        )
