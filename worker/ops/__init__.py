"""What operators see and steer: the fleet's status and health read from Redis, the
ops HTTP API every long-running process serves, its control API (``/api/v1``, with
tokens and roles) and the operator console."""

from worker.ops.api_support import ApiOptions
from worker.ops.consumer_groups import (
    ConsumerAddress,
    ConsumerInfo,
    GroupInfo,
    prunable_consumers,
    read_consumer_groups,
)
from worker.ops.context import HealthCheck, OpsContext
from worker.ops.controls import parse_announcement, record_last_error
from worker.ops.fleet_status import ConnectorStatus, connector_status, fleet_status, read_children
from worker.ops.http_api import OpsServer, build_app
from worker.ops.jwt_tokens import JwtVerifier
from worker.ops.operator_audit import Actor, OperatorAudit
from worker.ops.tokens import Role, TokenInfo, TokenStore

__all__ = [
    "Actor",
    "ApiOptions",
    "JwtVerifier",
    "OperatorAudit",
    "Role",
    "TokenInfo",
    "TokenStore",
    "parse_announcement",
    "record_last_error",
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
