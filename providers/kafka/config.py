"""The ``kafka-source`` providerConfig and the client settings it implies.

Which partitions an instance reads: the lease holder reads every partition of its
topics by manual assignment (no consumer-group rebalancing: the lease already says
who reads), or only those listed in ``partitions``. Scaling out is several
connectors on the same topics with disjoint ``partitions`` lists, each under its
own lease. ``groupId``, when set, only receives the offsets after they are in the
stream, for lag tooling; the connector never resumes from it.

Secrets: ``sasl.password`` as ``${VAR}`` (substituted and redacted by origin) or
``sasl.passwordFile``; TLS keys and certificates are files.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)
from pydantic.alias_generators import to_camel

# Kafka's own rule for topic names (legal characters, at most 249 of them).
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_BROKER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              frozen=True)


def _split_commas(value: Any) -> Any:
    """Environment mode gives lists as ``a,b``."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _valid_broker(value: str) -> str:
    match = _BROKER.match(value)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return value


def _valid_topic(value: str) -> str:
    if not _TOPIC.match(value) or value in {".", ".."}:
        raise ValueError(f"{value!r} is not a Kafka topic name (letters, digits, '.', '_', "
                         "'-'; at most 249)")
    return value


def _readable_file(value: str) -> str:
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"{value}: no such file")
    try:
        path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{value}: cannot be read: {exc.strerror}") from None
    return value


Broker = Annotated[str, AfterValidator(_valid_broker)]
Topic = Annotated[str, AfterValidator(_valid_topic)]
ReadableFile = Annotated[str, AfterValidator(_readable_file)]


class SaslSettings(_Model):
    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    username: str = Field(min_length=1)
    password: SecretStr | None = None
    password_file: ReadableFile | None = None

    @model_validator(mode="after")
    def _one_password(self) -> SaslSettings:
        if (self.password is None) == (self.password_file is None):
            raise ValueError("give exactly one of password and passwordFile")
        return self

    def secret(self) -> str:
        """The password, read from its file at each call (a rotated file is used at
        the next connection)."""
        if self.password is not None:
            return self.password.get_secret_value()
        assert self.password_file is not None
        return Path(self.password_file).read_text(encoding="utf-8").strip()


class TlsSettings(_Model):
    ca_file: ReadableFile | None = None
    cert_file: ReadableFile | None = None
    key_file: ReadableFile | None = None
    key_password_file: ReadableFile | None = None
    check_hostname: bool = True

    @model_validator(mode="after")
    def _cert_with_key(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("certFile and keyFile go together (a client certificate)")
        return self

    def context(self) -> ssl.SSLContext:
        """The client's TLS context; ValueError when a file is not what it should be."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file is not None:
                password = (Path(self.key_password_file).read_text(encoding="utf-8").strip()
                            if self.key_password_file else None)
                context.load_cert_chain(self.cert_file, self.key_file, password=password)
        except ssl.SSLError as exc:
            raise ValueError(f"tls: the CA, certificate or key cannot be used: {exc}") from None
        context.check_hostname = self.check_hostname
        return context


Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]


class KafkaConnection(_Model):
    """Where the brokers are and how to talk to them (a source's and a publish's)."""

    brokers: Annotated[list[Broker], BeforeValidator(_split_commas), Field(min_length=1)]
    security_protocol: Protocol = "PLAINTEXT"
    sasl: SaslSettings | None = None
    tls: TlsSettings | None = None

    @model_validator(mode="after")
    def _security_consistent(self) -> KafkaConnection:
        uses_sasl = self.security_protocol.startswith("SASL")
        if uses_sasl != (self.sasl is not None):
            raise ValueError("sasl is required with securityProtocol SASL_PLAINTEXT or "
                             "SASL_SSL, and only then")
        if self.tls is not None and not self.security_protocol.endswith("SSL"):
            raise ValueError("tls needs securityProtocol SSL or SASL_SSL")
        return self

    def client_options(self) -> dict[str, Any]:
        """aiokafka's security arguments (shared by consumers and producers)."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.endswith("SSL"):
            options["ssl_context"] = (self.tls or TlsSettings()).context()
        if self.sasl is not None:
            options.update(sasl_mechanism=self.sasl.mechanism,
                           sasl_plain_username=self.sasl.username,
                           sasl_plain_password=self.sasl.secret())
        return options


class KafkaSourceConfig(KafkaConnection):
    topic: Topic | None = None
    topics: Annotated[list[Topic] | None, BeforeValidator(_split_commas)] = None
    # None: every partition of each topic (new ones are picked up as they appear).
    partitions: Annotated[list[Annotated[int, Field(ge=0)]] | None,
                          BeforeValidator(_split_commas)] = None
    group_id: str | None = Field(None, min_length=1)
    # Where a partition without a saved position starts (a partition that appears
    # later starts at its beginning, so that nothing written to it is missed).
    start_from: Literal["earliest", "latest"] = "earliest"
    # json: the value is any JSON document; event: a JSON source event
    # {source, value, unit?, timestamp?, nodeId, metadata?}; text: UTF-8 text.
    value_format: Literal["json", "event", "text"] = "json"
    source: str = Field("kafka", min_length=1)
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, gt=0, le=256 * 1024 * 1024)

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSourceConfig:
        if (self.topic is None) == (self.topics is None):
            raise ValueError("give exactly one of topic and topics")
        if self.topics is not None and len(set(self.topics)) != len(self.topics):
            raise ValueError("topics: a topic is listed twice")
        if self.partitions is not None and (
                not self.partitions or len(set(self.partitions)) != len(self.partitions)):
            raise ValueError("partitions: give distinct partition numbers (or leave it out)")
        return self

    @property
    def topic_names(self) -> list[str]:
        return self.topics if self.topics is not None else [self.topic or ""]
