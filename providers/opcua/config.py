"""The ``opcua-source`` config (``providerConfig``) and the endpoint settings that the
source and ``opcua_write`` share: where the server is, how the channel is secured
(None, or Basic256Sha256 with certificates), who logs in. Every field is checked when
the config is read, so a bad node id or a missing certificate is an error naming the
field, not a failure at the first connect."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from asyncua import ua
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

DEFAULT_PORT = 4840
# A password file holds one line: anything longer is not a password.
MAX_SECRET_FILE_BYTES = 4096
MAX_NODES = 10_000


def check_node_id(text: str) -> str:
    """A node id as OPC-UA writes it (``ns=2;s=Temperature``, ``i=2258``)."""
    try:
        ua.NodeId.from_string(text)
    except Exception:  # asyncua raises plain Exception/ValueError subclasses here
        raise ValueError(f"node id {text!r} is not an OPC-UA node id (e.g. ns=2;s=Tank.Level, "
                         "i=2258)") from None
    return text


def _existing_file(path: Path) -> Path:
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    return path


NodeIdText = Annotated[str, AfterValidator(check_node_id)]
ExistingFile = Annotated[Path, AfterValidator(_existing_file)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              frozen=True)


class SecurityConfig(_Model):
    """``policy`` ``None`` (no signing, no encryption) or ``Basic256Sha256``: then the
    client's ``certificate`` and ``privateKey`` (PEM or DER files) and the server's
    ``serverCertificate`` are required (the server's is pinned, never fetched
    unchecked). ``applicationUri``: the URI in the client certificate."""

    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    certificate: ExistingFile | None = None
    private_key: ExistingFile | None = None
    server_certificate: ExistingFile | None = None
    application_uri: str = Field("urn:connector-fleet:client", min_length=1)

    @model_validator(mode="after")
    def _files_with_policy(self) -> SecurityConfig:
        files = {"certificate": self.certificate, "privateKey": self.private_key,
                 "serverCertificate": self.server_certificate}
        if self.policy == "Basic256Sha256":
            missing = [name for name, path in files.items() if path is None]
            if missing:
                raise ValueError(f"policy Basic256Sha256 needs {', '.join(missing)}")
        elif any(path is not None for path in files.values()):
            raise ValueError("certificates are used with policy Basic256Sha256 only")
        return self


class EndpointConfig(_Model):
    """One server: ``endpoint`` ``opc.tcp://host[:4840][/path]``, its security and login.
    ``password`` (usually ``${VAR}``) or ``passwordFile`` (read at each connect)."""

    endpoint: str = Field(min_length=1)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    username: str | None = Field(None, min_length=1)
    password: str | None = None
    password_file: ExistingFile | None = None
    # The largest message accepted from the server (asyncua's max_messagesize).
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=8192, le=256 * 1024 * 1024)

    @model_validator(mode="after")
    def _check_endpoint(self) -> EndpointConfig:
        self.address()  # raises on a bad URL
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and passwordFile: give one, not both")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("a password needs a username")
        return self

    def address(self) -> tuple[str, int]:
        """(host, port) of ``endpoint``."""
        parts = urlsplit(self.endpoint)
        if "@" in parts.netloc:  # never echo what may be a password
            raise ValueError("endpoint: credentials go in username/password, not in the URL")
        if parts.scheme != "opc.tcp":
            raise ValueError(f"endpoint {self.endpoint!r}: the scheme must be opc.tcp://")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError(f"endpoint {self.endpoint!r}: invalid port") from None
        if not parts.hostname:
            raise ValueError(f"endpoint {self.endpoint!r}: expected opc.tcp://host[:port][/path]")
        return parts.hostname, port

    def read_password(self) -> str | None:
        """The password, from the file when one is named (read now: rotation)."""
        if self.password_file is None:
            return self.password
        with self.password_file.open("rb") as file:
            data = file.read(MAX_SECRET_FILE_BYTES + 1)
        if len(data) > MAX_SECRET_FILE_BYTES:
            raise ValueError(f"passwordFile {self.password_file}: larger than "
                             f"{MAX_SECRET_FILE_BYTES} bytes")
        return data.decode().strip()


class SubscriptionConfig(_Model):
    """How the server reports changes: it samples each node every
    ``samplingIntervalMs``, queues up to ``queueSize`` changes per node between
    publishes, and publishes every ``publishingIntervalMs``."""

    publishing_interval_ms: int = Field(100, ge=10, le=3_600_000)
    sampling_interval_ms: int = Field(50, ge=0, le=3_600_000)
    queue_size: int = Field(100, ge=1, le=100_000)


class OpcUaSourceConfig(EndpointConfig):
    """``nodeIds``: the variables to read. ``mode``: ``subscription`` (the server pushes
    data changes, ``subscription`` tunes it) or ``polling`` (all nodes are read every
    ``pollIntervalMs`` and a changed value or status is published)."""

    node_ids: list[NodeIdText] = Field(min_length=1, max_length=MAX_NODES)
    mode: Literal["subscription", "polling"] = "subscription"
    subscription: SubscriptionConfig | None = None
    # A string or byte string value longer than this is not an event (kept raw, rejected).
    max_value_bytes: int = Field(64 * 1024, ge=16, le=16 * 1024 * 1024)
    # The event's ``source`` field.
    source: str = Field("opcua", min_length=1)

    @model_validator(mode="after")
    def _check_mode(self) -> OpcUaSourceConfig:
        if self.mode == "polling" and self.subscription is not None:
            raise ValueError("subscription settings apply to mode subscription, not polling")
        seen: set[str] = set()
        for node in self.node_ids:
            key = ua.NodeId.from_string(node).to_string()
            if key in seen:
                raise ValueError(f"nodeIds: {node} is listed twice")
            seen.add(key)
        return self

    @property
    def subscription_settings(self) -> SubscriptionConfig:
        return self.subscription or SubscriptionConfig()
