"""``python -m worker NAME`` is ``connector-run NAME`` (how the supervisor starts children)."""

from worker.cli import connector_run

connector_run()
