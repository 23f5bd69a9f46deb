"""The ``mqtt-source`` config (``providerConfig``): where the broker is, what to
subscribe to, how to log in, and the session that keeps messages while the
connector is down. Every field is checked when the config is read, so a bad
topic filter or a missing CA file is an error naming the field, not a failure at
the first connect."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from providers.broker_tls import BrokerTls, ExistingFile, read_secret_file

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


def check_topic_filter(topic: str) -> str:
    """A topic filter as MQTT defines it: ``+`` is a whole level, ``#`` the last."""
    if not topic:
        raise ValueError("a topic filter cannot be empty")
    if "\x00" in topic or len(topic.encode()) > 65535:
        raise ValueError(f"topic filter {topic!r} is not a valid MQTT string")
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ValueError(f"topic filter {topic!r}: '#' must be a whole level and the last")
        if "+" in level and level != "+":
            raise ValueError(f"topic filter {topic!r}: '+' must be a whole level")
    return topic


TopicFilter = Annotated[str, AfterValidator(check_topic_filter)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              frozen=True)


class MqttTls(BrokerTls):
    """TLS to the broker: the CA that signed its certificate (the system's when
    absent) and, for brokers that want one, a client certificate and key."""


class MqttSourceConfig(_Model):
    """``broker``: ``mqtt://host:1883`` or ``mqtts://host:8883`` (TLS). ``topic``: one
    filter or a list (wildcards ``+`` and ``#``). ``qos``: 0 (at most once), 1
    (at least once, acknowledged after the append) or 2 (exactly once: PUBREC after
    the append, the packet ids saved with it). ``password`` (usually
    ``${VAR}``) or ``passwordFile`` (read at each connect, so a rotated password is
    picked up on reconnect)."""

    broker: str = Field(min_length=1)
    topic: TopicFilter | list[TopicFilter]
    qos: Literal[0, 1, 2] = 1
    client_id: str | None = Field(None, min_length=1, max_length=256)
    username: str | None = Field(None, min_length=1)
    password: str | None = None
    password_file: ExistingFile | None = None
    protocol: Literal["3.1.1", "5"] = "5"
    tls: MqttTls | None = None
    # v5: how long the broker keeps the session (and queues messages) while we are away.
    session_expiry_s: int = Field(7 * 24 * 3600, gt=0, le=0xFFFFFFFE)
    keepalive_s: int = Field(30, ge=5, le=65535)
    # v5: how many unacknowledged messages the broker may send us at once.
    max_inflight: int = Field(1000, ge=1, le=65535)
    max_message_bytes: int = Field(1024 * 1024, gt=0, le=256 * 1024 * 1024)
    # The event's ``source`` field.
    source: str = Field("mqtt", min_length=1)
    # A top-level field of the JSON payload (or an MQTT 5 user property) that the
    # publisher sets to a unique id: redeliveries carrying it are dropped.
    dedupe_field: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _check(self) -> MqttSourceConfig:
        self.address()  # raises on a bad broker URL
        if self.topic == []:
            raise ValueError("topic: at least one topic filter")
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and passwordFile: give one, not both")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("a password needs a username")
        return self

    @property
    def topics(self) -> list[str]:
        return [self.topic] if isinstance(self.topic, str) else list(self.topic)

    def address(self) -> tuple[str, int, bool]:
        """(host, port, TLS?) of ``broker``."""
        return broker_address(self.broker, tls=self.tls is not None)

    def read_password(self) -> str | None:
        """The password, from the file when one is named (read now: rotation)."""
        if self.password_file is None:
            return self.password
        return read_secret_file(self.password_file)


def broker_address(broker: str, *, tls: bool) -> tuple[str, int, bool]:
    """(host, port, TLS?) of an ``mqtt[s]://host[:port]`` URL (or a bare ``host[:port]``);
    ``tls``: TLS settings were given, so TLS even on ``mqtt://``."""
    parts = urlsplit(broker if "://" in broker else f"mqtt://{broker}")
    if "@" in parts.netloc:  # never echo what may be a password
        raise ValueError("broker: credentials go in username/password, not in the URL")
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"broker {broker!r}: the scheme must be mqtt:// or mqtts://")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ValueError(f"broker {broker!r}: invalid port") from None
    if not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"broker {broker!r}: expected mqtt[s]://host[:port]")
    return parts.hostname, port, parts.scheme == "mqtts" or tls
