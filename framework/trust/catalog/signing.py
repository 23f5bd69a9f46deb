"""Ed25519 signatures over capability definitions, and the keys this process trusts.

The signed bytes are the *canonical encoding* of a definition: every field but
``signature``, as the JSON object of its camelCase field names with defaults
filled in, keys sorted at every level, no whitespace, UTF-8 (orjson with
``OPT_SORT_KEYS``). The signature is the string
``ed25519:<key-id>:<base64 of the 64-byte signature>``, where the key id is
the first 16 hex digits of the SHA-256 of the 32-byte public key, so a
signature names the key that made it and no two keys share an id.

Private keys are PKCS#8 PEM files (what ``openssl genpkey -algorithm ed25519``
writes, and what ``connector-fleet catalog keygen`` writes, mode 0600). Trusted
public keys are JSON entries ``{"keyId", "publicKey" (base64), "expiresAt"
(ISO 8601 or null), "name"}``, read from a file or a directory of files
(``CATALOG_TRUSTED_KEYS``) and from ``CATALOG_TRUSTED_KEYS_JSON``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from framework.core.errors import (
    ExpiredKeyError,
    SignatureMismatchError,
    SigningKeyError,
    UnsignedCapabilityError,
    UntrustedKeyError,
)

SIGNATURE_SCHEME = "ed25519"
# DER prefix of a PKCS#8 Ed25519 private key (RFC 8410): the 32-byte seed follows.
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM_LABEL = "PRIVATE KEY"


def canonical_encoding(fields: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: ``fields`` without ``signature``, sorted compact JSON."""
    unsigned = {key: value for key, value in fields.items() if key != "signature"}
    return orjson.dumps(unsigned, option=orjson.OPT_SORT_KEYS)


def key_id_of(verify_key: VerifyKey) -> str:
    return hashlib.sha256(bytes(verify_key)).hexdigest()[:16]


@dataclass(frozen=True)
class PrivateKey:
    """An Ed25519 signing key; never logged, never put in an error."""

    signing_key: SigningKey

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(SigningKey.generate())

    @classmethod
    def load(cls, path: Path) -> PrivateKey:
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise SigningKeyError(f"cannot read signing key {path}: {exc}") from None
        return cls(SigningKey(_seed_from_pem(text, source=str(path))))

    @property
    def key_id(self) -> str:
        return key_id_of(self.signing_key.verify_key)

    def to_pem(self) -> str:
        der = _PKCS8_PREFIX + bytes(self.signing_key)
        body = base64.encodebytes(der).decode("ascii")
        return f"-----BEGIN {_PEM_LABEL}-----\n{body}-----END {_PEM_LABEL}-----\n"

    def public(self, *, expires_at: datetime | None = None, name: str = "") -> TrustedKey:
        return TrustedKey(self.signing_key.verify_key, expires_at=expires_at, name=name)

    def sign(self, payload: bytes) -> str:
        """The signature string of ``payload``: ``ed25519:<key-id>:<base64>``."""
        signature = self.signing_key.sign(payload).signature
        return f"{SIGNATURE_SCHEME}:{self.key_id}:{base64.b64encode(signature).decode('ascii')}"


def _seed_from_pem(text: str, *, source: str) -> bytes:
    begin, end = f"-----BEGIN {_PEM_LABEL}-----", f"-----END {_PEM_LABEL}-----"
    if begin not in text or end not in text:
        raise SigningKeyError(f"{source}: not a PEM private key (expected {begin})")
    body = text.split(begin, 1)[1].split(end, 1)[0]
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except binascii.Error:
        raise SigningKeyError(f"{source}: the PEM body is not valid base64") from None
    if len(der) != len(_PKCS8_PREFIX) + 32 or not der.startswith(_PKCS8_PREFIX):
        raise SigningKeyError(f"{source}: not an Ed25519 private key (PKCS#8)")
    return der[len(_PKCS8_PREFIX):]


@dataclass(frozen=True)
class TrustedKey:
    """A public key this process accepts signatures from, until ``expires_at``."""

    verify_key: VerifyKey
    expires_at: datetime | None = None
    name: str = ""

    @property
    def key_id(self) -> str:
        return key_id_of(self.verify_key)

    def to_json(self) -> dict[str, Any]:
        return {
            "keyId": self.key_id,
            "publicKey": base64.b64encode(bytes(self.verify_key)).decode("ascii"),
            "expiresAt": _iso(self.expires_at) if self.expires_at else None,
            "name": self.name,
        }

    @classmethod
    def from_json(cls, entry: object, *, source: str) -> TrustedKey:
        if not isinstance(entry, dict):
            raise SigningKeyError(f"{source}: a trusted key must be a JSON object")
        unknown = set(entry) - {"keyId", "publicKey", "expiresAt", "name"}
        if unknown:
            raise SigningKeyError(f"{source}: unknown field(s) {', '.join(sorted(unknown))}")
        try:
            raw = base64.b64decode(str(entry.get("publicKey", "")), validate=True)
            verify_key = VerifyKey(raw)
        except (binascii.Error, ValueError, TypeError):
            raise SigningKeyError(
                f"{source}: publicKey must be the base64 of a 32-byte Ed25519 key"
            ) from None
        key = cls(verify_key, expires_at=_parse_expiry(entry.get("expiresAt"), source),
                  name=str(entry.get("name") or ""))
        if entry.get("keyId") not in (None, key.key_id):
            raise SigningKeyError(
                f"{source}: keyId {entry['keyId']!r} is not the id of publicKey ({key.key_id})"
            )
        return key


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_expiry(value: object, source: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise SigningKeyError(f"{source}: expiresAt {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise SigningKeyError(f"{source}: expiresAt {value!r} needs a time zone (e.g. Z)")
    return moment


@dataclass(frozen=True)
class SignatureCheck:
    """What a valid signature tells: which key made it."""

    key_id: str
    key_name: str


class TrustStore:
    """The public keys this process trusts, by key id."""

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        self._keys = {key.key_id: key for key in keys}

    @property
    def keys(self) -> list[TrustedKey]:
        return list(self._keys.values())

    def check_key(self, key_id: str, *, capability: str, now_s: float) -> TrustedKey:
        """The trusted key ``key_id``; raises if it is unknown or has expired."""
        key = self._keys.get(key_id)
        if key is None:
            trusted = ", ".join(sorted(self._keys)) or (
                "none: set CATALOG_TRUSTED_KEYS or CATALOG_TRUSTED_KEYS_JSON")
            raise UntrustedKeyError(
                f"refused: signed by key {key_id}, which is not a trusted key "
                f"(trusted: {trusted})",
                capability=capability,
            )
        if key.expires_at is not None and key.expires_at.timestamp() <= now_s:
            raise ExpiredKeyError(
                f"refused: signing key {key_id} expired at {_iso(key.expires_at)}",
                capability=capability,
            )
        return key

    def verify(self, payload: bytes, signature: str | None, *, capability: str,
               now_s: float) -> SignatureCheck:
        """Check ``signature`` over ``payload``; raises the error that says what is wrong."""
        if not signature:
            raise UnsignedCapabilityError("refused: the definition is not signed",
                                          capability=capability)
        key_id, raw = _split_signature(signature, capability)
        key = self.check_key(key_id, capability=capability, now_s=now_s)
        try:
            key.verify_key.verify(payload, raw)
        except BadSignatureError:
            raise SignatureMismatchError(
                f"refused: the signature by key {key_id} does not match the definition "
                "(changed after signing)",
                capability=capability,
            ) from None
        return SignatureCheck(key_id=key_id, key_name=key.name)


def _split_signature(signature: str, capability: str) -> tuple[str, bytes]:
    scheme, _, rest = signature.partition(":")
    key_id, _, encoded = rest.partition(":")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raw = b""
    if scheme != SIGNATURE_SCHEME or not key_id or len(raw) != 64:
        raise SignatureMismatchError(
            "refused: malformed signature (expected ed25519:<key-id>:<base64 signature>)",
            capability=capability,
        )
    return key_id, raw


def signature_key_id(signature: str | None) -> str | None:
    """The key id a signature names, or None if it is missing or not of our scheme
    (:meth:`TrustStore.verify` says what is wrong with it)."""
    scheme, _, rest = (signature or "").partition(":")
    key_id, _, _ = rest.partition(":")
    return key_id if scheme == SIGNATURE_SCHEME and key_id else None


def _entries(document: object) -> list[object]:
    if isinstance(document, dict) and "keys" in document:
        keys = document["keys"]
        return list(keys) if isinstance(keys, list) else [keys]
    return list(document) if isinstance(document, list) else [document]


def _keys_from_text(text: str | bytes, source: str) -> list[TrustedKey]:
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SigningKeyError(f"{source}: not valid JSON: {exc}") from None
    return [TrustedKey.from_json(entry, source=f"{source}[{index}]")
            for index, entry in enumerate(_entries(document))]


def _keys_from_path(path: Path) -> list[TrustedKey]:
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    keys: list[TrustedKey] = []
    for file in files:
        try:
            text = file.read_bytes()
        except OSError as exc:
            raise SigningKeyError(f"cannot read trusted keys {file}: {exc}") from None
        keys.extend(_keys_from_text(text, str(file)))
    return keys


def load_trust_store(path: Path | None = None, inline_json: str | None = None) -> TrustStore:
    """The keys from a file or directory and from inline JSON (either may be None)."""
    keys: list[TrustedKey] = []
    if path is not None:
        keys.extend(_keys_from_path(path))
    if inline_json:
        keys.extend(_keys_from_text(inline_json, "CATALOG_TRUSTED_KEYS_JSON"))
    return TrustStore(keys)


def trust_store_from_env(environ: Mapping[str, str] = os.environ) -> TrustStore:
    """``CATALOG_TRUSTED_KEYS`` (file or directory) and ``CATALOG_TRUSTED_KEYS_JSON``."""
    path = environ.get("CATALOG_TRUSTED_KEYS")
    return load_trust_store(Path(path) if path else None, environ.get("CATALOG_TRUSTED_KEYS_JSON"))
