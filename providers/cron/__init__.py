"""``cron-trigger``: one event per tick of a cron expression, exactly once across
restarts and failovers."""

from providers.cron.source import CronConfig, create_cron_connector

__all__ = ["CronConfig", "create_cron_connector"]
