"""AMQP 0-9-1 (RabbitMQ) as a push source: ``amqp-source``."""

from providers.amqp.config import AmqpBinding, AmqpSourceConfig, AmqpTls
from providers.amqp.connector import AMQP_SOURCE_TYPE, AmqpEvents, create_amqp_connector
from providers.amqp.source import AmqpConnectError, AmqpMessage, AmqpSource

__all__ = [
    "AMQP_SOURCE_TYPE",
    "AmqpBinding",
    "AmqpConnectError",
    "AmqpEvents",
    "AmqpMessage",
    "AmqpSource",
    "AmqpSourceConfig",
    "AmqpTls",
    "create_amqp_connector",
]
