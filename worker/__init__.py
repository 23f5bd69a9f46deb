"""Processes: ``connector-run`` (one connector) and the ``connector-fleet`` CLI."""
