"""Grist: the ``grist_sync`` action (upsert a row through the records API)."""

from providers.grist.actions import GRIST_SYNC_ID, GRIST_SYNC_VERSION, GristActions, GristSettings
from providers.grist.params import GristSyncParams

__all__ = [
    "GRIST_SYNC_ID",
    "GRIST_SYNC_VERSION",
    "GristActions",
    "GristSettings",
    "GristSyncParams",
]
