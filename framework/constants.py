"""Redis key names and defaults shared by every part of connector-fleet.

Key schema (``{name}`` is the connector name, written literally):

=================================  ======  ==============================================
key                                type    holds
=================================  ======  ==============================================
``lease:{name}``                   string  owner token of the running instance, with TTL
``connector:state:{name}``         string  JSON: etag, lastModified, cursors, generation
``connector:state:{name}:versions`` hash   item id -> version of the last published copy
``metrics:connector:{name}``       hash    poll counters and timings (seed metrics)
``raw-input-signals``              stream  default output stream of every connector
=================================  ======  ==============================================
"""

from __future__ import annotations

LEASE_PREFIX = "lease:"
STATE_PREFIX = "connector:state:"
VERSIONS_SUFFIX = ":versions"
METRICS_PREFIX = "metrics:connector:"

DEFAULT_OUTPUT_STREAM = "raw-input-signals"
DEFAULT_LEASE_TTL_S = 30
DEFAULT_STREAM_MAXLEN = 1_000_000
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_CONFIG_PATH = "connectors.json"
DEFAULT_DRAIN_TIMEOUT_S = 30.0

# A standby checks this often whether the lease is free, so that it takes over
# well within a second of the holder's lease disappearing.
STANDBY_CHECK_INTERVAL_S = 0.25
# An instance that lost its lease waits this long before competing again, so
# the standbys (checking every STANDBY_CHECK_INTERVAL_S) take over first.
LOST_LEASE_BACKOFF_S = 1.0
# The holder renews at this fraction of the TTL: two renewals may fail before
# the lease can expire.
LEASE_RENEW_FRACTION = 1 / 3
# Commits are split into chunks of this many items so one huge poll never
# blocks Redis for long; each chunk is atomic on its own.
COMMIT_CHUNK_ITEMS = 5_000

# The supervisor's view of its children (name -> JSON), for `connector-fleet status`.
SUPERVISOR_CHILDREN_KEY = "fleet:supervisor:children"

ENTRY_POINT_GROUP = "connector_fleet.connectors"


def lease_key(name: str) -> str:
    return f"{LEASE_PREFIX}{name}"


def state_key(name: str) -> str:
    return f"{STATE_PREFIX}{name}"


def versions_key(name: str) -> str:
    return f"{STATE_PREFIX}{name}{VERSIONS_SUFFIX}"


def metrics_key(name: str) -> str:
    return f"{METRICS_PREFIX}{name}"
