"""Redis key names and defaults shared by every part of connector-fleet.

Key schema (``{name}`` is the connector name, written literally):

=================================  ======  ==============================================
key                                type    holds
=================================  ======  ==============================================
``lease:{name}``                   string  owner token of the running instance, with TTL
``connector:state:{name}``         string  JSON: etag, lastModified, cursors, generation
``connector:state:{name}:versions`` hash   item id -> version of the last published copy
``metrics:connector:{name}``       hash    poll counters and timings (polling.metrics)
``raw-input-signals``              stream  default output stream of every connector
``raw-input-signals:I``            stream  shard I of it, when ``outputShards`` is set
=================================  ======  ==============================================

With Cluster hash tags on (``KeyScheme(tagged=True)``) the first four become
``lease:{NAME}``... and, with shards, ``lease:{STREAM:I}:NAME``... beside the shard
stream ``{STREAM:I}`` (braces written literally: the hash tag); see KeyScheme.

=================================  ======  ==============================================
key                                type    holds
=================================  ======  ==============================================
``permit:{R}:holders``            zset    holder id -> expiry (ms) of resource R's permits
``permit:{R}:tokens``             hash    holder id -> fencing token of its permit
``permit:{R}:fence``              string  last fencing token handed out for R (INCR)
``fence:seen:{T}``                string  highest fencing token target T accepted
``audit:chain``                    stream  the audit chain (body, hash, sig, keyId)
``audit:chain:head``               hash    seq, hash and entry id of the newest record
``audit:chain:checkpoint``         hash    body (JSON seq, hash, id, at of the last trimmed
                                           record), sig
``capability-alerts``              stream  alert events (rollbacks, refusals)
``fleet:breakers``                 hash    ``{breaker}|{owner}`` -> JSON breaker state
``fleet:breakers:opened``          pubsub  JSON {breaker, owner, retryInS} when one opens
``fleet:steps:{stream}:{identity}`` hash   ``{rule}:{step}`` -> JSON result, with TTL
                                           (identity: ``item:{connector}:{item_id}:{version}``
                                           or the entry id; deleted or shortened at the XACK)
``fleet:emitted:{T}:{steps key}`` hash   a rule's emit to stream T recorded in T's slot
                                           (Cluster, when T's slot is not the entry's)
``{stream}:dlq``                   stream  dead letters of ``{stream}`` (consuming.dead_letters)
``fleet:consumers:{group}:{name}`` string  JSON heartbeat of a live stream consumer, with TTL
``fleet:consumer-errors:{group}:{stream}`` hash  entry id -> JSON last handler error
``catalog:capabilities``           set     ids of every capability in the catalog
``catalog:capability:{id}``        hash    version -> signed definition JSON
``catalog:revocations:{id}``       hash    version range -> JSON revocation (reason, time)
``catalog:changes``                pubsub  JSON {id, kind} after every register / revoke
``fleet:control:{name}``           hash    operator controls of connector {name}: ``paused``
                                           (JSON by, at, reason), ``lastError`` (JSON)
``fleet:control``                  pubsub  JSON {connector, action}: pause, resume, restart,
                                           poll_now (wakes the connector's worker)
``fleet:api:tokens``               hash    SHA-256 of an API token -> JSON id, name, role
``fleet:api:auth-failures:{ip}``   string  failed API logins from {ip}, with TTL
=================================  ======  ==============================================

On a Redis Cluster the audit chain's keys are ``{audit:chain}``, ``{audit:chain}:head``,
``{audit:chain}:checkpoint`` and a capability's ``catalog:capability:{ID}``...: the
braces are literal hash tags there (see audit_keys, catalog_definitions_key).
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

LEASE_PREFIX = "lease:"
STATE_PREFIX = "connector:state:"
VERSIONS_SUFFIX = ":versions"
SEEN_SUFFIX = ":seen"
REJECTED_SUFFIX = ":rejected"
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
# blocks Redis for long, nor its own event loop while it encodes one (a few ms
# a thousand items; 5,000 held the loop 100-180 ms on a loaded machine); each
# chunk is atomic on its own.
COMMIT_CHUNK_ITEMS = 1_000

# The supervisor's view of its children (name -> JSON), for `connector-fleet status`.
SUPERVISOR_CHILDREN_KEY = "fleet:supervisor:children"

ENTRY_POINT_GROUP = "connector_fleet.connectors"

# Resource permits (framework.trust.arbiter). The resource name sits in braces so that a
# resource's keys share one Redis Cluster hash slot (its Lua scripts touch all three).
PERMIT_PREFIX = "permit:"
FENCE_SEEN_PREFIX = "fence:seen:"
DEFAULT_PERMIT_TTL_S = 30.0
DEFAULT_PERMIT_WAIT_TIMEOUT_S = 10.0
# Audit chain (framework.trust.audit.chain) and the alerts stream of the safe executor.
AUDIT_STREAM = "audit:chain"
AUDIT_HEAD_KEY = "audit:chain:head"
AUDIT_CHECKPOINT_KEY = "audit:chain:checkpoint"
ALERTS_STREAM = "capability-alerts"

# Circuit breaker states, field "{breaker}|{owner}" -> JSON (capabilities.breaker).
BREAKERS_KEY = "fleet:breakers"
BREAKERS_OPENED_CHANNEL = "fleet:breakers:opened"
# A breaker watcher whose subscription broke retries this often.
BREAKERS_WATCH_RETRY_S = 1.0
# Completed rule steps of one stream entry: hash "{rule}:{step}" -> JSON result.
STEPS_PREFIX = "fleet:steps:"
# A redelivery after this long may repeat a completed step (the record expired); also
# how long a dead-lettered entry's records wait for `dlq replay`.
DEFAULT_STEP_RECORD_TTL_S = 7 * 24 * 3600
# After the XACK, the records of an event with an identity (connector, item_id, version)
# live this long: a republished copy (after a failover rollback) within it runs nothing
# again. Records keyed by the entry id are deleted at the XACK.
DEFAULT_STEP_IDENTITY_TTL_S = 3600
# Stream retention (framework.consuming.retention): how often a consumer process trims
# the entries every group has acknowledged from its streams.
DEFAULT_STREAM_TRIM_INTERVAL_S = 60.0
DEFAULT_RULES_PATH = "rules.json"

# Stream consumers (framework.consuming.consumer).
DEAD_LETTER_SUFFIX = ":dlq"
CONSUMER_HEARTBEAT_PREFIX = "fleet:consumers:"
CONSUMER_ERRORS_PREFIX = "fleet:consumer-errors:"
# Hash per group: stream -> where the group was created ({"startId", "startedAtId", "at"}).
CONSUMER_GROUP_START_PREFIX = "fleet:consumer-group-start:"
# Where a new group starts: "$" only entries added from now on (a week of history must
# not replay a week of actions), "0" the whole stream, or an entry id.
DEFAULT_START_ID = "$"
DEFAULT_CONSUMER_GROUP = "connector-fleet"
DEFAULT_MAX_IN_FLIGHT = 64
DEFAULT_CLAIM_IDLE_MS = 30_000
DEFAULT_MAX_DELIVERIES = 5
# A consumer re-claims its in-flight entries at this fraction of the visibility
# timeout: two heartbeats may fail before another consumer may take them.
CONSUMER_HEARTBEAT_FRACTION = 1 / 3


# Operator controls (worker.ops control API -> worker.connector): a durable hash per
# connector, and a channel that wakes the worker at once (the hash is what counts).
CONTROL_PREFIX = "fleet:control:"
CONTROL_CHANNEL = "fleet:control"
# The ops API's bearer tokens, and its count of failed logins per client address.
API_TOKENS_KEY = "fleet:api:tokens"
API_AUTH_FAILURES_PREFIX = "fleet:api:auth-failures:"


def control_key(connector: str) -> str:
    return f"{CONTROL_PREFIX}{connector}"


def dead_letter_stream(stream: str) -> str:
    return f"{stream}{DEAD_LETTER_SUFFIX}"


def consumer_heartbeat_key(group: str, consumer: str) -> str:
    return f"{CONSUMER_HEARTBEAT_PREFIX}{group}:{consumer}"


def consumer_group_start_key(group: str) -> str:
    return f"{CONSUMER_GROUP_START_PREFIX}{group}"


def consumer_errors_key(group: str, stream: str) -> str:
    return f"{CONSUMER_ERRORS_PREFIX}{group}:{stream}"


def steps_key(stream: str, entry_id: str) -> str:
    return f"{STEPS_PREFIX}{stream}:{entry_id}"


# A rule's emit recorded in the target stream's slot, when that is not the slot of the
# entry's step records (Redis Cluster): hash "{rule}:{step}" -> JSON result, with TTL.
EMITTED_PREFIX = "fleet:emitted:"


def emitted_key(target_stream: str, steps: str) -> str:
    """``fleet:emitted:{TAG}:STEPS``: TAG is the target's hash tag (its slot), STEPS the
    entry's step-records key (which emit of which entry)."""
    tag = target_stream
    start = tag.find("{")
    end = tag.find("}", start + 1) if start >= 0 else -1
    if start >= 0 and end > start + 1:
        tag = tag[start + 1 : end]
    return f"{EMITTED_PREFIX}{{{tag}}}:{steps}"


def lease_key(name: str) -> str:
    """``lease:NAME``: the untagged name (single server, Sentinel); see KeyScheme."""
    return KeyScheme().connector(name).lease


def state_key(name: str) -> str:
    return KeyScheme().connector(name).state


def versions_key(name: str) -> str:
    return KeyScheme().connector(name).versions


def metrics_key(name: str) -> str:
    return KeyScheme().connector(name).metrics


@dataclass(frozen=True)
class ConnectorKeys:
    """The Redis keys of one connector under one KeyScheme."""

    lease: str
    state: str
    versions: str
    metrics: str
    output_stream: str  # the stream (or the stream shard) its commits XADD to
    # A push source's dedupe keys and the messages it could not use
    # (framework.polling.append).
    seen: str = ""
    rejected: str = ""

    @property
    def append_keys(self) -> list[str]:
        """KEYS of ``append.lua``, in its order."""
        return [self.lease, self.state, self.seen, self.output_stream, self.rejected]

    @property
    def commit_keys(self) -> list[str]:
        """KEYS of ``commit.lua``, in its order."""
        return [self.lease, self.state, self.versions, self.output_stream]


@dataclass(frozen=True)
class KeyScheme:
    """The one switch between the documented key names and Cluster hash tags.

    ``tagged=False`` (single server, Sentinel): ``lease:NAME``, ``connector:state:NAME``,
    ``connector:state:NAME:versions``, ``metrics:connector:NAME``, stream shards
    ``STREAM:I``. ``tagged=True`` (Cluster): the part in braces is the hash tag, so every
    key a script touches hashes to one slot: ``lease:{NAME}`` ... without shards, and
    with shards ``lease:{STREAM:I}:NAME`` ... next to the shard stream ``{STREAM:I}``
    (a shard is shared by several connectors, so its tag, not the name, groups them).
    A connector's shard is ``crc16(NAME) mod shards`` (CRC-16/XMODEM, as Redis's slots):
    stable across processes, releases and languages.
    """

    tagged: bool = False

    def connector(
        self, name: str, *, output_stream: str = DEFAULT_OUTPUT_STREAM,
        output_shards: int | None = None,
    ) -> ConnectorKeys:
        stream = output_stream
        group, suffix = name, ""
        if output_shards is not None:
            group = shard_stream_name(output_stream, shard_of(name, output_shards))
            stream, suffix = self._tag(group), f":{name}"
        tag = self._tag(group) + suffix if self.tagged else name
        return ConnectorKeys(
            lease=f"{LEASE_PREFIX}{tag}",
            state=f"{STATE_PREFIX}{tag}",
            versions=f"{STATE_PREFIX}{tag}{VERSIONS_SUFFIX}",
            metrics=f"{METRICS_PREFIX}{tag}",
            output_stream=stream,
            seen=f"{STATE_PREFIX}{tag}{SEEN_SUFFIX}",
            rejected=f"{STATE_PREFIX}{tag}{REJECTED_SUFFIX}",
        )

    def shard_streams(self, output_stream: str, output_shards: int) -> list[str]:
        """Every shard of ``output_stream``, shard 0 first (what consumers read)."""
        return [self._tag(shard_stream_name(output_stream, i)) for i in range(output_shards)]

    def _tag(self, group: str) -> str:
        return f"{{{group}}}" if self.tagged else group


def shard_of(name: str, shards: int) -> int:
    """The shard of connector ``name`` among ``shards`` (see KeyScheme)."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1 (got {shards})")
    return binascii.crc_hqx(name.encode(), 0) % shards


def shard_stream_name(output_stream: str, shard: int) -> str:
    return f"{output_stream}:{shard}"


def permit_keys(resource: str) -> tuple[str, str, str]:
    """``(holders, tokens, fence)`` keys of one resource's permits."""
    base = f"{PERMIT_PREFIX}{{{resource}}}"
    return f"{base}:holders", f"{base}:tokens", f"{base}:fence"


def fence_seen_key(target: str) -> str:
    return f"{FENCE_SEEN_PREFIX}{target}"


# Capability catalog (framework.trust.catalog.store).
CATALOG_IDS_KEY = "catalog:capabilities"
CATALOG_DEFINITIONS_PREFIX = "catalog:capability:"
CATALOG_REVOCATIONS_PREFIX = "catalog:revocations:"
CATALOG_CHANGES_CHANNEL = "catalog:changes"
# A catalog watcher whose subscription broke retries this often (and reads
# every definition afresh meanwhile, so nothing is missed).
CATALOG_WATCH_RETRY_S = 0.5


# On a Redis Cluster (``tagged``) a capability's keys carry its id as hash tag
# (``catalog:capability:{ID}``): the reads of its definitions and revocations stay one
# transaction; untagged, the documented names (``catalog:capability:ID``) stay.
def catalog_definitions_key(capability_id: str, *, tagged: bool = False) -> str:
    return f"{CATALOG_DEFINITIONS_PREFIX}{_tag(capability_id, tagged)}"


def catalog_revocations_key(capability_id: str, *, tagged: bool = False) -> str:
    return f"{CATALOG_REVOCATIONS_PREFIX}{_tag(capability_id, tagged)}"


def _tag(name: str, tagged: bool) -> str:
    return f"{{{name}}}" if tagged else name


def audit_keys(*, tagged: bool = False, chain: int | None = None) -> tuple[str, str, str]:
    """``(stream, head, checkpoint)`` of the audit chain: ``audit:chain``..., or with
    ``chain`` I (FLEET_AUDIT_CHAINS > 1) ``audit:chain:I``...; on a Cluster (``tagged``)
    the name is the hash tag (``{audit:chain}``...), so that appending and trimming stay
    single-slot scripts, and separate chains may sit on separate masters."""
    name = AUDIT_STREAM if chain is None else f"{AUDIT_STREAM}:{chain}"
    if not tagged and chain is None:
        return AUDIT_STREAM, AUDIT_HEAD_KEY, AUDIT_CHECKPOINT_KEY
    stream = _tag(name, tagged)
    return stream, f"{stream}:head", f"{stream}:checkpoint"


def audit_chain_of(consumer: str, chains: int) -> int | None:
    """The chain a consumer process appends to when the records are spread over
    ``chains`` chains (FLEET_AUDIT_CHAINS; None: the one chain ``audit:chain``)."""
    return None if chains <= 1 else shard_of(consumer, chains)


# Stored versions a lookup skipped and audited (hash: "version@sha256" -> when), so
# each is audited once for the whole fleet (framework.trust.catalog.skips).
CATALOG_SKIPPED_PREFIX = "catalog:skipped:"


def catalog_skipped_key(capability_id: str, *, tagged: bool = False) -> str:
    return f"{CATALOG_SKIPPED_PREFIX}{_tag(capability_id, tagged)}"


# The field a dead letter's replay carries: the id of the entry it replays, so the
# replay keeps that entry's idempotency keys.
REPLAY_OF_FIELD = "replay_of"
