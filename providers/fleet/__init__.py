"""The fleet's own actions: ``emit_event`` (XADD a base event to one of the fleet's
streams) and ``log`` (a line in the fleet's structured log)."""

from providers.fleet.actions import emit_event, fleet_capabilities, log_message

__all__ = ["emit_event", "fleet_capabilities", "log_message"]
