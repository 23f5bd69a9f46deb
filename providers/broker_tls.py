"""What a broker client (MQTT, AMQP) reads from files: its TLS material (the CA,
a client certificate and key, each checked to exist when the config is read) and a
password file (read at each connect, so a rotated password is picked up)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated

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


def client_tls_context(tls: BrokerTls | None) -> ssl.SSLContext:
    """A client context verifying the broker (against ``caFile`` when given) and
    presenting the client certificate when one is configured."""
    context = ssl.create_default_context(
        cafile=str(tls.ca_file) if tls is not None and tls.ca_file else None)
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
