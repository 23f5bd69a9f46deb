"""Helpers for testing connectors against real peers: a private redis-server,
an HTTP server that replays recorded responses, and a controllable clock."""

from framework.testing.clock import FakeClock
from framework.testing.redis_server import RedisServer, free_port
from framework.testing.replay_http import ReplayServer, Reply

__all__ = ["FakeClock", "RedisServer", "ReplayServer", "Reply", "free_port"]
