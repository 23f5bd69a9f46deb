"""The example Kubernetes Secret of trusted catalog keys is valid and loadable."""

from __future__ import annotations

from pathlib import Path

from framework.trust.catalog.signing import load_trust_store
from tests.conftest import REPO_ROOT
from tests.deploy.test_deploy import KUBERNETES_VERSIONS, _import, _yaml

OVERLAY = REPO_ROOT / "deploy" / "k8s" / "overlays" / "example"
SECRET = OVERLAY / "secret-catalog-trusted-keys.yaml"


def test_the_trusted_keys_secret_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate = _import("kubernetes_validate", "kubernetes-validate")
    secret = _yaml().safe_load(SECRET.read_text())
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(secret, version, strict=True)
    overlay = _yaml().safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert SECRET.name in overlay["resources"]


def test_the_secret_mounted_as_a_directory_is_a_trust_store(tmp_path: Path) -> None:
    # A Secret volume holds one file per key of the Secret.
    secret = _yaml().safe_load(SECRET.read_text())
    for name, content in secret["stringData"].items():
        (tmp_path / name).write_text(content)
    keys = load_trust_store(tmp_path).keys
    assert [key.name for key in keys] == ["example-catalog-signing"]
    assert keys[0].expires_at is not None
