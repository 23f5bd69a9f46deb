"""Ed25519 signatures, key files and the trusted-key store (framework.trust.catalog.signing)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from framework.core.errors import (
    ExpiredKeyError,
    SignatureError,
    SignatureMismatchError,
    SigningKeyError,
    UnsignedCapabilityError,
    UntrustedKeyError,
)
from framework.trust.catalog.signing import (
    PrivateKey,
    TrustedKey,
    TrustStore,
    canonical_encoding,
    load_trust_store,
    trust_store_from_env,
)

NOW_S = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()
PAYLOAD = canonical_encoding(
    {"id": "valve_control", "version": "1.1.0", "params": {"b": 1, "a": 2}}
)


def test_canonical_encoding_sorts_keys_at_every_level_and_drops_the_signature() -> None:
    one = canonical_encoding({"b": {"y": 1, "x": [3, {"d": 1, "c": 2}]}, "a": "é",
                              "signature": "ed25519:x:y"})
    other = canonical_encoding({"a": "é", "b": {"x": [3, {"c": 2, "d": 1}], "y": 1}})
    assert one == other == '{"a":"é","b":{"x":[3,{"c":2,"d":1}],"y":1}}'.encode()


def test_a_signature_verifies_and_names_its_key() -> None:
    key = PrivateKey.generate()
    signature = key.sign(PAYLOAD)
    assert signature.startswith(f"ed25519:{key.key_id}:")
    check = TrustStore([key.public(name="ops")]).verify(
        PAYLOAD, signature, capability="valve_control@1.1.0", now_s=NOW_S)
    assert (check.key_id, check.key_name) == (key.key_id, "ops")


def test_changing_any_byte_of_the_signed_bytes_is_refused() -> None:
    key = PrivateKey.generate()
    signature = key.sign(PAYLOAD)
    trust = TrustStore([key.public()])
    for index in range(len(PAYLOAD)):
        changed = bytearray(PAYLOAD)
        changed[index] ^= 0x01
        with pytest.raises(SignatureMismatchError, match="does not match the definition"):
            trust.verify(bytes(changed), signature, capability="valve_control@1.1.0",
                         now_s=NOW_S)


def test_changing_any_byte_of_the_signature_is_refused() -> None:
    key = PrivateKey.generate()
    scheme, key_id, encoded = key.sign(PAYLOAD).split(":")
    raw = base64.b64decode(encoded)
    trust = TrustStore([key.public()])
    for index in range(len(raw)):
        changed = bytearray(raw)
        changed[index] ^= 0x80
        signature = f"{scheme}:{key_id}:{base64.b64encode(bytes(changed)).decode()}"
        with pytest.raises(SignatureMismatchError):
            trust.verify(PAYLOAD, signature, capability="c@1.0.0", now_s=NOW_S)


@pytest.mark.parametrize("signature", [None, ""])
def test_an_unsigned_definition_is_refused_naming_it(signature: str | None) -> None:
    trust = TrustStore([PrivateKey.generate().public()])
    with pytest.raises(UnsignedCapabilityError,
                       match=r"capability valve_control@1\.1\.0: refused: .* not signed"):
        trust.verify(PAYLOAD, signature, capability="valve_control@1.1.0", now_s=NOW_S)


def test_a_key_that_is_not_trusted_is_refused_naming_the_key() -> None:
    stranger = PrivateKey.generate()
    trusted = PrivateKey.generate()
    with pytest.raises(UntrustedKeyError) as caught:
        TrustStore([trusted.public()]).verify(
            PAYLOAD, stranger.sign(PAYLOAD), capability="valve_control@1.1.0", now_s=NOW_S)
    message = str(caught.value)
    assert stranger.key_id in message and "not a trusted key" in message
    assert "valve_control@1.1.0" in message


def test_with_no_trusted_keys_everything_is_refused() -> None:
    key = PrivateKey.generate()
    with pytest.raises(UntrustedKeyError, match=r"trusted: none: set CATALOG_TRUSTED_KEYS"):
        TrustStore().verify(PAYLOAD, key.sign(PAYLOAD), capability="c@1.0.0", now_s=NOW_S)


def test_an_expired_key_is_refused_saying_it_expired() -> None:
    key = PrivateKey.generate()
    expiry = datetime.fromtimestamp(NOW_S, tz=UTC) - timedelta(seconds=1)
    trust = TrustStore([key.public(expires_at=expiry)])
    expected = rf"signing key {key.key_id} expired at 2026-12-01T11:59:59Z"
    with pytest.raises(ExpiredKeyError, match=expected):
        trust.verify(PAYLOAD, key.sign(PAYLOAD), capability="c@1.0.0", now_s=NOW_S)


def test_a_key_before_its_expiry_is_accepted() -> None:
    key = PrivateKey.generate()
    expiry = datetime.fromtimestamp(NOW_S, tz=UTC) + timedelta(days=1)
    check = TrustStore([key.public(expires_at=expiry)]).verify(
        PAYLOAD, key.sign(PAYLOAD), capability="c@1.0.0", now_s=NOW_S)
    assert check.key_id == key.key_id


@pytest.mark.parametrize(
    "signature", ["rsa:abc:AAAA", "ed25519::" + "A" * 88, "ed25519:abc:not base64!", "garbage"]
)
def test_a_malformed_signature_is_refused(signature: str) -> None:
    with pytest.raises(SignatureMismatchError, match="malformed signature"):
        TrustStore([PrivateKey.generate().public()]).verify(
            PAYLOAD, signature, capability="c@1.0.0", now_s=NOW_S)


def test_signature_errors_share_a_base() -> None:
    for error in (UnsignedCapabilityError, SignatureMismatchError, UntrustedKeyError,
                  ExpiredKeyError):
        assert issubclass(error, SignatureError)


def test_a_private_key_survives_a_pem_round_trip(tmp_path: Path) -> None:
    key = PrivateKey.generate()
    path = tmp_path / "signing.pem"
    path.write_text(key.to_pem())
    loaded = PrivateKey.load(path)
    assert loaded.key_id == key.key_id
    assert loaded.sign(PAYLOAD) == key.sign(PAYLOAD)  # Ed25519 is deterministic
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")


@pytest.mark.parametrize(
    ("content", "problem"),
    [("hello", "not a PEM private key"),
     ("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n", "not valid base64"),
     ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not an Ed25519")],
)
def test_a_bad_private_key_file_is_refused_naming_the_file(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "bad.pem"
    path.write_text(content)
    with pytest.raises(SigningKeyError, match=problem) as caught:
        PrivateKey.load(path)
    assert str(path) in str(caught.value)


def test_a_missing_private_key_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="cannot read signing key .*missing.pem"):
        PrivateKey.load(tmp_path / "missing.pem")


def test_a_trusted_key_survives_a_json_round_trip() -> None:
    key = PrivateKey.generate().public(expires_at=datetime(2027, 1, 1, tzinfo=UTC), name="ops")
    entry = key.to_json()
    assert entry["expiresAt"] == "2027-01-01T00:00:00Z"
    again = TrustedKey.from_json(entry, source="test")
    assert (again.key_id, again.expires_at, again.name) == (key.key_id, key.expires_at, "ops")


def _entry(**extra: object) -> dict[str, object]:
    return {**PrivateKey.generate().public().to_json(), **extra}


@pytest.mark.parametrize(
    ("entry", "problem"),
    [({"publicKey": "AAAA"}, "publicKey must be the base64 of a 32-byte"),
     ({"publicKey": "%%%"}, "publicKey must be"),
     ({}, "publicKey must be"),
     (_entry(expiresAt="tomorrow"), "expiresAt 'tomorrow' is not an ISO 8601"),
     (_entry(expiresAt="2027-01-01T00:00:00"), "needs a time zone"),
     (_entry(keyId="0000000000000000"), "keyId '0000000000000000' is not the id"),
     (_entry(owner="me"), "unknown field.*owner"),
     (["not", "an", "object"], "must be a JSON object")],
)
def test_a_bad_trusted_key_entry_is_refused_naming_the_source(
    tmp_path: Path, entry: object, problem: str
) -> None:
    path = tmp_path / "trusted.json"
    path.write_bytes(orjson.dumps({"keys": [entry]}))
    with pytest.raises(SigningKeyError, match=problem) as caught:
        load_trust_store(path)
    assert f"{path}[0]" in str(caught.value)


def test_trusted_keys_load_from_a_file_in_every_documented_shape(tmp_path: Path) -> None:
    one, two = PrivateKey.generate(), PrivateKey.generate()
    shapes = [
        {"keys": [one.public().to_json(), two.public().to_json()]},
        [one.public().to_json(), two.public().to_json()],
    ]
    for index, shape in enumerate(shapes):
        path = tmp_path / f"trusted{index}.json"
        path.write_bytes(orjson.dumps(shape))
        assert {k.key_id for k in load_trust_store(path).keys} == {one.key_id, two.key_id}
    single = tmp_path / "single.json"
    single.write_bytes(orjson.dumps(one.public().to_json()))
    assert [k.key_id for k in load_trust_store(single).keys] == [one.key_id]


def test_trusted_keys_load_from_every_json_file_of_a_directory(tmp_path: Path) -> None:
    one, two = PrivateKey.generate(), PrivateKey.generate()
    (tmp_path / "one.json").write_bytes(orjson.dumps(one.public().to_json()))
    (tmp_path / "two.json").write_bytes(orjson.dumps(two.public().to_json()))
    (tmp_path / "README").write_text("not a key")
    assert {k.key_id for k in load_trust_store(tmp_path).keys} == {one.key_id, two.key_id}


def test_trusted_keys_come_from_the_environment(tmp_path: Path) -> None:
    from_file, inline = PrivateKey.generate(), PrivateKey.generate()
    path = tmp_path / "trusted.json"
    path.write_bytes(orjson.dumps(from_file.public().to_json()))
    trust = trust_store_from_env({
        "CATALOG_TRUSTED_KEYS": str(path),
        "CATALOG_TRUSTED_KEYS_JSON": orjson.dumps([inline.public().to_json()]).decode(),
    })
    assert {k.key_id for k in trust.keys} == {from_file.key_id, inline.key_id}
    assert trust_store_from_env({}).keys == []


def test_invalid_json_in_the_environment_is_refused_naming_the_variable() -> None:
    with pytest.raises(SigningKeyError, match="CATALOG_TRUSTED_KEYS_JSON: not valid JSON"):
        trust_store_from_env({"CATALOG_TRUSTED_KEYS_JSON": "{oops"})


def test_a_missing_trusted_keys_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="cannot read trusted keys .*nowhere.json"):
        load_trust_store(tmp_path / "nowhere.json")
