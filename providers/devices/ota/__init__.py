"""OTA rollouts: canary, soak with health analysis, waves, automatic rollback."""

from providers.devices.ota.driver import OtaDeps, RolloutDriver, RolloutError
from providers.devices.ota.health import HealthReport, analyse_health
from providers.devices.ota.plan import RolloutPlan, parse_duration_s, parse_percent
from providers.devices.ota.status import (
    group_members,
    rollout_status,
    start_rollout,
)
from providers.devices.ota.store import RolloutStore, list_rollouts

__all__ = [
    "HealthReport",
    "OtaDeps",
    "RolloutDriver",
    "RolloutError",
    "RolloutPlan",
    "RolloutStore",
    "analyse_health",
    "group_members",
    "list_rollouts",
    "parse_duration_s",
    "parse_percent",
    "rollout_status",
    "start_rollout",
]
