"""What a broker client (MQTT, AMQP) reads from files: its TLS material (the CA,
a client certificate and key, each checked to exist when the config is read) and a
password file (read at each connect, so a rotated password is picked up)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

# A password file holds one line: anything longer is not a password.
MAX_SECRET_FILE_BYTES = 4096


def _existing_file(path: Path) -> Path:
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    return path


ExistingFile = Annotated[Path, AfterValidator(_existing_file)]


class BrokerTls(BaseModel):
    """TLS to the broker: the CA that signed its certificate (the system's when
    absent) and, for brokers that want one, a client certificate and key."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              frozen=True)

    ca_file: ExistingFile | None = None
    cert_file: ExistingFile | None = None
    key_file: ExistingFile | None = None

    @model_validator(mode="after")
    def _cert_with_key(self) -> BrokerTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("certFile and keyFile go together")
        return self


class _ClosingContext(ssl.SSLContext):
    """paho-mqtt 2.1 leaves the TLS socket open when the handshake fails (an untrusted
    certificate): shake hands here, and close the socket if that fails. (asyncio
    clients such as aio-pika use ``wrap_bio``, which this leaves alone.)"""

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        wrapped = super().wrap_socket(*args, **kwargs)
        try:
            wrapped.do_handshake()
        except BaseException:
            wrapped.close()
            raise
        return wrapped


def verifying_context(ca_file: str | None) -> ssl.SSLContext:
    """Certificate and host name checked, against ``ca_file`` or the system's CAs."""
    context = _ClosingContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    else:
        context.load_default_certs()
    return context


def client_tls_context(tls: BrokerTls | None) -> ssl.SSLContext:
    """A client context verifying the broker (against ``caFile`` when given) and
    presenting the client certificate when one is configured."""
    context = verifying_context(
        str(tls.ca_file) if tls is not None and tls.ca_file is not None else None)
    if tls is not None and tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context


def read_secret_file(path: Path) -> str:
    """The file's one line, stripped; ValueError naming the file when it is larger
    than a password can be."""
    with path.open("rb") as file:
        data = file.read(MAX_SECRET_FILE_BYTES + 1)
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ValueError(f"passwordFile {path}: larger than {MAX_SECRET_FILE_BYTES} bytes")
    return data.decode().strip()
