"""Capabilities: their spec, the registry, the innermost invoker (timeout, retries)
and circuit breakers."""
