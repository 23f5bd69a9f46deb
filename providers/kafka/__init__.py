"""Apache Kafka (any broker speaking its protocol): the ``kafka-source`` connector
type, which appends records to the stream exactly once, resuming from the
partitions' offsets saved with each batch, and the ``kafka_publish`` capability."""

from providers.kafka.actions import DEDUPE_HEADER, KafkaActions, KafkaPublishParams
from providers.kafka.config import KafkaSourceConfig
from providers.kafka.connector import KAFKA_SOURCE_TYPE, create_kafka_source_connector
from providers.kafka.source import KafkaSource, KafkaSourceDeps

__all__ = [
    "DEDUPE_HEADER",
    "KafkaActions",
    "KafkaPublishParams",
    "KAFKA_SOURCE_TYPE",
    "KafkaSource",
    "KafkaSourceConfig",
    "KafkaSourceDeps",
    "create_kafka_source_connector",
]
