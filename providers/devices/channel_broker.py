"""Where the device broker is and how to log in: shared by the command channel and
the simulator. Checked when read: a bad URL is an error naming the field."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from providers.mqtt import MqttTls, broker_address


class DeviceBroker(BaseModel):
    """``broker``: ``mqtt://host:1883`` or ``mqtts://host:8883``; ``password`` is
    usually ``${VAR}`` and never appears in logs or errors."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              frozen=True)

    broker: str = Field(min_length=1)
    username: str | None = Field(None, min_length=1)
    password: str | None = Field(None, repr=False)
    tls: MqttTls | None = None
    keepalive_s: int = Field(30, ge=5, le=65535)
    connect_timeout_s: float = Field(10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _check(self) -> DeviceBroker:
        self.address()
        if self.password is not None and not self.username:
            raise ValueError("a password needs a username")
        return self

    def address(self) -> tuple[str, int, bool]:
        """(host, port, TLS?) of ``broker``."""
        return broker_address(self.broker, tls=self.tls is not None)
