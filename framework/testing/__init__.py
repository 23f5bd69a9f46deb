"""Helpers for testing connectors against real peers: a private redis-server, an
HTTP server that replays recorded responses, a controllable clock, and the
provider contract every connector type passes."""

from framework.testing.bluez import (
    BluezControl,
    BluezMock,
)
from framework.testing.clock import (
    FakeClock,
)
from framework.testing.contract import (
    ProviderCase,
    Recording,
    Routes,
)
from framework.testing.dovecot import (
    Dovecot,
)
from framework.testing.mavlink_vehicle import (
    MavlinkVehicle,
)
from framework.testing.mosquitto import (
    MosquittoServer,
)
from framework.testing.opcua import (
    OpcUaServer,
    opcua_node_id,
)
from framework.testing.postgres import (
    PostgresServer,
)
from framework.testing.rabbitmq import (
    RabbitMqServer,
)
from framework.testing.redis_server import (
    RedisServer,
    free_port,
)
from framework.testing.redis_topologies import (
    RedisCluster,
    SentinelTrio,
    wait_until,
)
from framework.testing.replay_http import (
    RecordedRequest,
    ReplayServer,
    Reply,
)
from framework.testing.tansu import (
    TansuBroker,
    tansu_binary,
)

__all__ = [
    "BluezControl",
    "BluezMock",
    "Dovecot",
    "FakeClock",
    "MavlinkVehicle",
    "MosquittoServer",
    "PostgresServer",
    "OpcUaServer",
    "opcua_node_id",
    "RabbitMqServer",
    "ProviderCase",
    "RecordedRequest",
    "Recording",
    "RedisCluster",
    "RedisServer",
    "SentinelTrio",
    "TansuBroker",
    "tansu_binary",
    "ReplayServer",
    "Reply",
    "Routes",
    "wait_until",
    "free_port",
]
