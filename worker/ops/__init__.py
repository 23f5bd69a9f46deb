"""What operators see, read from Redis: the fleet's status and health, and the ops
HTTP API every long-running process serves."""

from worker.ops.consumer_groups import (
    ConsumerAddress,
    ConsumerInfo,
    GroupInfo,
    prunable_consumers,
    read_consumer_groups,
)
from worker.ops.fleet_status import ConnectorStatus, connector_status, fleet_status, read_children
from worker.ops.http_api import HealthCheck, OpsContext, OpsServer, build_app

__all__ = [
    "ConsumerAddress",
    "ConsumerInfo",
    "GroupInfo",
    "prunable_consumers",
    "read_consumer_groups",
    "ConnectorStatus",
    "HealthCheck",
    "OpsContext",
    "OpsServer",
    "build_app",
    "connector_status",
    "fleet_status",
    "read_children",
]
