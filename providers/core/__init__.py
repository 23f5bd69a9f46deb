"""Core action capabilities: ``emit_event`` (XADD a base event) and ``log``."""

from providers.core.actions import core_capabilities, emit_event, log_message

__all__ = ["core_capabilities", "emit_event", "log_message"]
