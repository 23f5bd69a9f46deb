"""connector-fleet's library, in four sides and a test kit:

* :mod:`framework.core`: what every side shares (clock, Redis keys and connections,
  Lua loading, logs, redaction, ``${VAR}`` substitution, settings, errors,
  cancellation, deadlines, expressions, versions);
* :mod:`framework.polling`: sources into streams (configuration, registry, lease,
  state and the fenced commit, the poller, HTTP, pagination, rate limits, metrics);
* :mod:`framework.consuming`: streams into rules and calls (the stream consumer,
  dead letters, event contracts, rules, capabilities);
* :mod:`framework.trust`: the signed catalog, resource permits, the audit chain
  and the safe execution pipeline;
* :mod:`framework.testing`: real peers and the provider contract, for tests.

Each side's ``__init__`` is its public surface; ``providers`` and ``worker``
import only those. The core imports no side; polling imports neither consuming
nor trust (checked by the import contracts in ``pyproject.toml``).
"""
