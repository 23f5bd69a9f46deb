"""Deployments of the stream consumers: scripts/render-k8s (and deploy/k8s), the chart.

The same tools as tests/test_deploy.py (Helm's engine through helm-python-sdk, the
Kubernetes schemas through kubernetes-validate), and the same end-to-end check: the
rendered consumer container's command and env run for real against a private Redis.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from framework.testing import RedisServer
from tests.conftest import REPO_ROOT
from tests.deploy.test_deploy import (
    BASE,
    BIN,
    CHART,
    OVERLAY,
    RENDER_K8S,
    _free_port,
    _get,
    _import,
    _yaml,
    console_scripts,
    container,
    env_of,
    of_kind,
    render_chart,
    render_generator,
    secret_refs,
    settings_variables,
    validate_manifests,
)

RULES = REPO_ROOT / "rules.json"
# The repository's rules.json: its ${VAR:-default}s are optional, its secretEnv required.
RULES_SECRETS = {"WEATHER_WEBHOOK_URL": False, "WEATHER_WEBHOOK_SECRET": True,
                 "DIAGNOSIS_URL": False, "TICKETS_URL": False, "LES_COMMUNS_URL": False}
KEYS_SECRET = OVERLAY / "secret-catalog-trusted-keys.yaml"
# Read by framework.trust.catalog.signing.trust_store_from_env, not a Settings field.
CATALOG_VARIABLES = {"CATALOG_TRUSTED_KEYS"}


def consumer_deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    found = [d for d in of_kind(objects, "Deployment")
             if d["spec"]["template"]["metadata"]["labels"].get("app") == "consumer"]
    assert len(found) == 1
    return found[0]


def rules_configmap(objects: list[dict[str, Any]]) -> dict[str, Any]:
    found = [m for m in of_kind(objects, "ConfigMap") if "rules.json" in m["data"]]
    assert len(found) == 1
    return found[0]


def check_consumer_pod(deployment: dict[str, Any], objects: list[dict[str, Any]],
                       *, keys_secret: str) -> None:
    """What every consumer pod must get right, whoever rendered it."""
    spec = deployment["spec"]["template"]["spec"]
    main = container(deployment)
    env = env_of(deployment)
    assert main["command"] == ["connector-fleet", "consume"]
    assert main["command"][0] in console_scripts()
    assert (BIN / main["command"][0]).exists()
    # Probes on the port METRICS_PORT makes the process serve, the paths it serves.
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = main[probe]["httpGet"]
        port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
        assert (get["path"], str(port)) == (path, env["METRICS_PORT"]["value"])
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    # RULES_PATH is the rules ConfigMap's file, mounted as a directory (no subPath, so
    # the kubelet's updates reach the file the consumer watches).
    rules_path = Path(env["RULES_PATH"]["value"])
    rules_volume = volumes[mounts[str(rules_path.parent)]]
    assert rules_volume["configMap"]["name"] == rules_configmap(objects)["metadata"]["name"]
    assert rules_path.name in rules_configmap(objects)["data"]
    assert all("subPath" not in m for m in main["volumeMounts"])
    # The trusted keys: an optional Secret mounted as the directory CATALOG_TRUSTED_KEYS.
    keys_volume = volumes[mounts[env["CATALOG_TRUSTED_KEYS"]["value"]]]
    assert keys_volume["secret"] == {"secretName": keys_secret, "optional": True}
    assert "valueFrom" in env["REDIS_URL"]
    assert spec["terminationGracePeriodSeconds"] > float(env["FLEET_DRAIN_TIMEOUT_S"]["value"])
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert "/tmp" in mounts
    plain = {name for name, e in env.items() if "value" in e or "configMapKeyRef" in
             e.get("valueFrom", {})}
    assert plain <= settings_variables() | CATALOG_VARIABLES, plain - settings_variables()
    assert main["resources"]["requests"] and main["resources"]["limits"]
    # The PodDisruptionBudget covers exactly these pods.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    budgets = [b for b in of_kind(objects, "PodDisruptionBudget")
               if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
    assert len(budgets) == 1 and budgets[0]["spec"]["maxUnavailable"] == 1
    assert budgets[0]["spec"]["selector"] == deployment["spec"]["selector"]


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    """A connectors.json with the repository's rules.json beside it."""
    directory = tmp_path / "fleet"
    directory.mkdir()
    shutil.copy(REPO_ROOT / "connectors.json", directory / "connectors.json")
    shutil.copy(RULES, directory / "rules.json")
    return directory


# -- scripts/render-k8s --------------------------------------------------------------------

@pytest.mark.slow
def test_generator_renders_the_consumers_from_the_rules_beside_the_connectors(
    fleet_dir: Path
) -> None:
    objects = render_generator(fleet_dir / "connectors.json")
    validate_manifests(objects)
    deployment = consumer_deployment(objects)
    check_consumer_pod(deployment, objects, keys_secret="catalog-trusted-keys")
    assert deployment["spec"]["replicas"] == 2
    assert rules_configmap(objects)["data"]["rules.json"] == RULES.read_text(encoding="utf-8")
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        "checksum/rules": hashlib.sha256(RULES.read_bytes()).hexdigest()}
    assert secret_refs(deployment) == RULES_SECRETS
    assert env_of(deployment)["REDIS_URL"]["valueFrom"]["configMapKeyRef"] == {
        "name": "redis-config", "key": "url"}
    services = [s for s in of_kind(objects, "Service") if s["spec"]["selector"] == {
        "app": "consumer"}]
    assert [p["targetPort"] for p in services[0]["spec"]["ports"]] == ["metrics"]


@pytest.mark.slow
def test_generator_consumer_options_and_a_rules_change(fleet_dir: Path, tmp_path: Path) -> None:
    rules = json.loads(RULES.read_text(encoding="utf-8"))
    rules["rules"] = rules["rules"][:1]
    rules["rules"][0]["steps"][0]["params"]["url"] = "${HOOK_URL}"
    other = tmp_path / "other-rules.json"
    other.write_text(json.dumps(rules), encoding="utf-8")
    objects = render_generator(fleet_dir / "connectors.json", "--rules", str(other),
                               "--consumer-replicas", "5", "--catalog-keys-secret", "my-keys")
    validate_manifests(objects)
    deployment = consumer_deployment(objects)
    check_consumer_pod(deployment, objects, keys_secret="my-keys")
    assert deployment["spec"]["replicas"] == 5
    assert rules_configmap(objects)["data"]["rules.json"] == other.read_text(encoding="utf-8")
    # A ${VAR} without default is required: the rules loader refuses the file without it.
    assert secret_refs(deployment) == {"HOOK_URL": True, "WEATHER_WEBHOOK_SECRET": True}
    before = render_generator(fleet_dir / "connectors.json")
    annotation = "checksum/rules"
    assert (consumer_deployment(before)["spec"]["template"]["metadata"]["annotations"][annotation]
            != deployment["spec"]["template"]["metadata"]["annotations"][annotation])


@pytest.mark.slow
def test_generator_without_rules_renders_no_consumer(tmp_path: Path) -> None:
    config = tmp_path / "connectors.json"
    shutil.copy(REPO_ROOT / "connectors.json", config)
    objects = render_generator(config)
    assert [d for d in of_kind(objects, "Deployment")
            if d["metadata"]["labels"].get("app") == "consumer"] == []
    assert [m for m in of_kind(objects, "ConfigMap") if "rules.json" in m["data"]] == []


@pytest.mark.slow
def test_generator_rejects_bad_rules_naming_the_problem(fleet_dir: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(RENDER_K8S), "--config", str(fleet_dir / "connectors.json"),
                               "--image", "i", *args],
                              capture_output=True, text=True, timeout=60, check=False)

    result = run("--rules", str(fleet_dir / "missing.json"))
    assert result.returncode == 78 and "missing.json" in result.stderr
    rules = json.loads(RULES.read_text(encoding="utf-8"))
    rules["rules"][0]["steps"][0]["onOpen"] = "sometimes"
    (fleet_dir / "rules.json").write_text(json.dumps(rules), encoding="utf-8")
    result = run()
    assert result.returncode == 78
    assert "severe-weather-webhook" in result.stderr and "onOpen" in result.stderr


@pytest.mark.slow
def test_generator_refuses_a_connector_named_like_the_consumer(fleet_dir: Path) -> None:
    config = fleet_dir / "connectors.json"
    config.write_text(json.dumps({"connectors": [
        {"name": "stream-consumer", "type": "NOAA_WEATHER",
         "providerConfig": {"baseUrl": "http://127.0.0.1:9", "area": "CA"}}]}),
        encoding="utf-8")
    result = subprocess.run([str(RENDER_K8S), "--config", str(config), "--image", "i"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 78
    assert "connector named stream-consumer" in result.stderr


def test_checked_in_base_runs_the_repository_rules() -> None:
    objects = [_yaml().safe_load(p.read_text()) for p in sorted(BASE.glob("*.yaml"))
               if p.name != "kustomization.yaml"]
    deployment = consumer_deployment(objects)
    secret = _yaml().safe_load(KEYS_SECRET.read_text())
    # The example overlay's Secret is the one the base's consumer pods mount.
    check_consumer_pod(deployment, objects, keys_secret=secret["metadata"]["name"])
    assert rules_configmap(objects)["data"]["rules.json"] == RULES.read_text(encoding="utf-8")
    kustomization = _yaml().safe_load((BASE / "kustomization.yaml").read_text())
    assert {"configmap-rules.yaml", "deployment-stream-consumer.yaml",
            "pdb-stream-consumer.yaml"} <= set(kustomization["resources"])


# -- the Helm chart --------------------------------------------------------------------------

@pytest.mark.slow
def test_chart_renders_the_consumers_when_enabled() -> None:
    values_file = CHART / "ci" / "consumers-values.yaml"
    objects = render_chart(values_file)
    validate_manifests(objects)
    values = _yaml().safe_load(values_file.read_text(encoding="utf-8"))
    deployment = consumer_deployment(objects)
    check_consumer_pod(deployment, objects, keys_secret="fleet-catalog-keys")
    assert deployment["spec"]["replicas"] == 3
    assert container(deployment)["args"] == ["--max-in-flight", "16", "--max-deliveries", "10"]
    mounted = json.loads(rules_configmap(objects)["data"]["rules.json"])
    assert mounted == values["consumers"]["rules"]
    assert secret_refs(deployment) == {"WEATHER_WEBHOOK_URL": False,
                                       "WEATHER_WEBHOOK_SECRET": True, "AUDIT_STREAM": True}
    # The metrics Service (and so the ServiceMonitor) selects the consumer pods too.
    (service,) = of_kind(objects, "Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    # `consume --help` parses the arguments the chart passes.
    result = subprocess.run([str(BIN / "connector-fleet"), "consume", "--help"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and "--max-deliveries" in result.stdout


def test_chart_rules_json_is_mounted_verbatim_and_a_change_rolls_the_pods() -> None:
    text = RULES.read_text(encoding="utf-8")
    objects = render_chart(consumers={"enabled": True, "rulesJson": text})
    validate_manifests(objects)
    assert rules_configmap(objects)["data"]["rules.json"] == text
    deployment = consumer_deployment(objects)
    assert secret_refs(deployment) == RULES_SECRETS

    def checksum(rules_json: str) -> str:
        rendered = consumer_deployment(render_chart(
            consumers={"enabled": True, "rulesJson": rules_json}))
        value: str = rendered["spec"]["template"]["metadata"]["annotations"]["checksum/rules"]
        return value

    assert checksum(text) == checksum(text)
    assert checksum(text) != checksum(text.replace("8.5", "9.5"))


def test_chart_default_values_render_no_consumer_and_bad_values_are_refused() -> None:
    objects = render_chart()
    assert [d for d in of_kind(objects, "Deployment")
            if d["spec"]["template"]["metadata"]["labels"].get("app") == "consumer"] == []
    helm = _import("helm_python", "helm-python-sdk")
    chart = helm.Chart.load(str(CHART))
    for bad in ({"consumers": {"enabled": True, "replica": 2}},
                {"consumers": {"maxInFlight": 0}},
                {"consumers": {"rules": {"rules": "severe-weather"}}},
                {"catalog": {"trustedKeysSecret": "Not A Name"}}):
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(bad)
    connectors = [{"name": "consumer", "type": "NOAA_WEATHER"}]
    with pytest.raises(Exception, match="rename it"):
        render_chart(connectors=connectors, consumers={"enabled": True})


def test_chart_autoscales_the_consumers_by_cpu_or_by_the_given_metrics() -> None:
    objects = render_chart(consumers={"enabled": True, "autoscaling": {
        "enabled": True, "minReplicas": 2, "maxReplicas": 6}})
    validate_manifests(objects)
    deployment = consumer_deployment(objects)
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    (autoscaler,) = of_kind(objects, "HorizontalPodAutoscaler")
    spec = autoscaler["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": deployment["metadata"]["name"]}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 6)
    assert spec["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300

    lag = [{"type": "External", "external": {
        "metric": {"name": "consumer_group_lag", "selector": {"matchLabels": {"group": "rules"}}},
        "target": {"type": "AverageValue", "averageValue": "1000"}}}]
    objects = render_chart(consumers={"enabled": True,
                                      "autoscaling": {"enabled": True, "metrics": lag}})
    validate_manifests(objects)
    (autoscaler,) = of_kind(objects, "HorizontalPodAutoscaler")
    assert autoscaler["spec"]["metrics"] == lag

    fixed = render_chart(consumers={"enabled": True, "replicas": 4})
    assert of_kind(fixed, "HorizontalPodAutoscaler") == []
    assert consumer_deployment(fixed)["spec"]["replicas"] == 4


def test_chart_autoscaling_refuses_what_could_not_work() -> None:
    with pytest.raises(Exception, match="minReplicas 5 is above maxReplicas 3"):
        render_chart(consumers={"enabled": True, "autoscaling": {
            "enabled": True, "minReplicas": 5, "maxReplicas": 3}})
    with pytest.raises(Exception, match="scaling by CPU needs a cpu request"):
        render_chart(consumers={"enabled": True, "resources": {"requests": {"memory": "1Gi"}},
                                "autoscaling": {"enabled": True}})


# -- a consumer pod's command and env, run for real -------------------------------------------

class VolumeDir:
    """A ConfigMap or Secret volume laid out as the kubelet writes one: the files in a
    timestamped directory, ``..data`` a symlink to it, each key a symlink through
    ``..data``; an update writes a new directory and swaps ``..data`` atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        self._generation = 0

    def write(self, files: dict[str, str]) -> None:
        self._generation += 1
        payload = self.path / f"..{self._generation:04d}"
        payload.mkdir()
        for name, text in files.items():
            (payload / name).write_text(text, encoding="utf-8")
        link = self.path / "..data_tmp"
        link.symlink_to(payload.name)
        old = (self.path / "..data").resolve() if (self.path / "..data").exists() else None
        os.replace(link, self.path / "..data")
        for name in files:
            if not (self.path / name).is_symlink():
                (self.path / name).symlink_to(f"..data/{name}")
        if old is not None:
            shutil.rmtree(old)


def _consumer_environment(deployment: dict[str, Any], redis_url: str, rules: Path,
                          keys_dir: Path) -> dict[str, str]:
    """The container's env as the kubelet builds it: references resolved, required
    Secret keys given a value, optional ones left out; the mounts are temp dirs. The
    image sets PYTHONUNBUFFERED (Dockerfile), so the log is read while it runs."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(keys_dir.parent), "LANG": "C.UTF-8",
           "PYTHONUNBUFFERED": "1"}
    for name, entry in env_of(deployment).items():
        if "value" in entry:
            env[name] = entry["value"]
        elif name == "REDIS_URL":
            env[name] = redis_url
        elif not entry["valueFrom"]["secretKeyRef"].get("optional", False):
            env[name] = "secret-value"
    env["RULES_PATH"] = str(rules)
    env["CATALOG_TRUSTED_KEYS"] = str(keys_dir)
    return env


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes], log: Path,
              what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"{what}:\n{log.read_text()}"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["render-k8s", "helm"])
@pytest.mark.parametrize("with_keys", [False, True], ids=["no-keys-secret", "keys-secret"])
def test_a_rendered_consumer_pod_serves_its_probes_and_drains_on_sigterm(
    source: str, with_keys: bool, fleet_dir: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The consumer Deployment's command and env, run as the kubelet would: /readyz
    and /healthz answer on the probed port, the catalog is on exactly when the keys
    Secret is there, an update of the rules ConfigMap is reloaded in place, and SIGTERM
    ends the process with 0 within the grace period."""
    port = _free_port()
    if source == "render-k8s":
        objects = render_generator(fleet_dir / "connectors.json", "--metrics-port", str(port))
    else:
        objects = render_chart(metrics={"port": port}, consumers={
            "enabled": True, "rulesJson": RULES.read_text(encoding="utf-8")})
    deployment = consumer_deployment(objects)
    rules_volume = VolumeDir(tmp_path / "rules")
    rules_volume.write(rules_configmap(objects)["data"])
    keys_volume = VolumeDir(tmp_path / "catalog-keys")  # a missing optional Secret: empty
    if with_keys:
        keys_volume.write(_yaml().safe_load(KEYS_SECRET.read_text())["stringData"])
    main = container(deployment)
    script, *arguments = main["command"]
    log_path = tmp_path / "pod.log"
    env = _consumer_environment(deployment, redis_server.url, rules_volume.path / "rules.json",
                                keys_volume.path)
    with log_path.open("w") as log:
        process = subprocess.Popen([str(BIN / script), *arguments, *main.get("args", [])],
                                   env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        _wait_for(lambda: _get(port, "/readyz") == 200, process, log_path,
                  "the consumer pod never became ready")
        assert _get(port, "/healthz") == 200
        # The kubelet's update of the mounted ConfigMap: the consumer reloads the rules.
        rules = json.loads(RULES.read_text(encoding="utf-8"))
        rules["rules"] = rules["rules"][:1]
        rules_volume.write({"rules.json": json.dumps(rules)})
        _wait_for(lambda: '"rules_reloaded"' in log_path.read_text(), process, log_path,
                  "the updated rules were not reloaded")
        process.send_signal(signal.SIGTERM)
        grace_s = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert process.wait(timeout=grace_s) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log_path.read_text()
    assert '"rules_loaded"' in output
    reloaded = [json.loads(line) for line in output.splitlines() if '"rules_reloaded"' in line]
    assert reloaded[-1]["rules"] == 1
    if with_keys:
        assert '"catalog_enabled"' in output and '"catalog_disabled"' not in output
    else:
        assert '"catalog_disabled"' in output and '"catalog_enabled"' not in output
