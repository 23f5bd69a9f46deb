"""The ``amqp-source`` config (``providerConfig``): the broker's URL, the queue to
consume, how many unacknowledged messages it may hand over at once, and whether
the connector declares the queue and its bindings. Every field is checked when
the config is read; no error repeats the URL's password."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from providers.broker_tls import BrokerTls, ExistingFile, read_secret_file

DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}
# AMQP 0-9-1 short strings: queue and exchange names are at most 255 bytes.
ShortName = Annotated[str, Field(min_length=1, max_length=255)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              frozen=True)


class AmqpBinding(_Model):
    """Bind the queue to an existing ``exchange`` with ``routingKey``."""

    exchange: ShortName
    routing_key: str = Field("", max_length=255)


class AmqpTls(BrokerTls):
    """TLS for ``amqps://``: the CA (the system's when absent), a client certificate."""


class AmqpSourceConfig(_Model):
    """``url``: ``amqp[s]://user:password@host:port/vhost`` (the password usually a
    ``${VAR}``, or in ``passwordFile``). ``prefetch``: unacknowledged messages the
    broker may send at once. ``declare``: declare the queue (durable, of
    ``queueType``) and its ``bindings``; otherwise the queue must exist.
    ``maxDeliveries``: a message delivered more often (quorum queues count; on
    classic queues the connector counts redeliveries in Redis) is kept as poison in
    the rejected stream; 0 turns this off."""

    url: str = Field(min_length=1)
    queue: ShortName
    prefetch: int = Field(100, ge=1, le=65535)
    declare: bool = False
    queue_type: Literal["classic", "quorum"] = "quorum"
    bindings: list[AmqpBinding] = Field(default_factory=list)
    password_file: ExistingFile | None = None
    tls: AmqpTls | None = None
    max_deliveries: int = Field(20, ge=0)
    max_message_bytes: int = Field(1024 * 1024, gt=0, le=256 * 1024 * 1024)
    # The event's ``source`` field.
    source: str = Field("amqp", min_length=1)

    @model_validator(mode="after")
    def _check(self) -> AmqpSourceConfig:
        parts = self._parts()
        if self.password_file is not None and parts.password:
            raise ValueError("url has a password and passwordFile is set: give one, not both")
        if self.bindings and not self.declare:
            raise ValueError("bindings need declare: true")
        return self

    def _parts(self) -> _UrlParts:
        parts = urlsplit(self.url)
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError("url: the scheme must be amqp:// or amqps://")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise ValueError("url: invalid port") from None
        if not parts.hostname:
            raise ValueError("url: no host")
        return _UrlParts(parts.hostname, port, parts.scheme == "amqps" or self.tls is not None,
                         unquote(parts.password) if parts.password else None)

    @property
    def host(self) -> str:
        """``host:port``, the broker's name in logs and errors (never the password)."""
        parts = self._parts()
        return f"{parts.host}:{parts.port}"

    @property
    def uses_tls(self) -> bool:
        return self._parts().tls

    @property
    def url_password(self) -> str | None:
        return self._parts().password

    def read_password(self) -> str | None:
        """``passwordFile``'s content (read now: rotation), else None."""
        if self.password_file is None:
            return None
        return read_secret_file(self.password_file)


class _UrlParts:
    __slots__ = ("host", "password", "port", "tls")

    def __init__(self, host: str, port: int, tls: bool, password: str | None) -> None:
        self.host, self.port, self.tls, self.password = host, port, tls, password
