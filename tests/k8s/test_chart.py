"""The Helm chart: lint, render, install on the real API server (its RBAC: test_chart_rbac.py)."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.cluster import Cluster, tool

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "activedataflow"
KUBE_VERSION = "1.36.0"


def _helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """helm without a cluster (lint, template)."""
    proc = subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def render(*sets: str, namespace: str = "adf", release: str = "adf") -> list[dict[str, Any]]:
    """The chart's manifests with ``--set`` values."""
    flags = [arg for s in sets for arg in ("--set", s)]
    out = _helm("template", release, str(CHART), "-n", namespace, "--kube-version", KUBE_VERSION, *flags).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def operator_env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = find(docs, "Deployment", "adf-activedataflow-operator")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --------------------------------------------------------------------------- without a cluster


def test_helm_lint_passes() -> None:
    result = _helm("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_the_chart_crds_are_the_generated_crds() -> None:
    chart_crds = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert chart_crds == ["dataflowruns.activedataflow.io.yaml", "dataflows.activedataflow.io.yaml"]
    for name in chart_crds:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes()


def test_the_default_install_runs_the_operator_with_a_bundled_redis_store() -> None:
    docs = render()
    [deployment] = find(docs, "Deployment", "adf-activedataflow-operator")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/activedataflow/activedataflow:0.1.0"
    assert container["command"][:2] == ["adf", "operator"]
    env = operator_env(docs)
    assert env["ADF_STORE_URL"] == {"secretKeyRef": {"name": "adf-activedataflow-store", "key": "url"}}
    assert env["ADF_RUNNER_IMAGE"] == container["image"]
    assert env["ADF_RUNNER_SERVICE_ACCOUNT"] == "adf-activedataflow-runner"
    assert env["ADF_HEARTBEAT_SCHEDULE"] == "* * * * *"
    assert env["ADF_WATCH_NAMESPACES"] == ""
    assert json.loads(env["ADF_RUNNER_RESOURCES"]) == {"limits": {"memory": "1Gi"},
                                                       "requests": {"cpu": "100m", "memory": "256Mi"}}
    [secret] = find(docs, "Secret", "adf-activedataflow-store")
    password = secret["stringData"]["redis-password"]
    assert len(password) == 32
    assert secret["stringData"]["url"] == f"redis://:{password}@adf-activedataflow-redis.adf.svc:6379/0"
    [redis] = find(docs, "Deployment", "adf-activedataflow-redis")
    assert redis["spec"]["replicas"] == 1
    [redis_container] = redis["spec"]["template"]["spec"]["containers"]
    assert redis_container["args"][:2] == ["--requirepass", "$(REDIS_PASSWORD)"]
    assert redis_container["env"] == [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "adf-activedataflow-store", "key": "redis-password"}}}]
    [service] = find(docs, "Service", "adf-activedataflow-redis")
    assert service["spec"]["ports"][0]["port"] == 6379
    [pvc] = find(docs, "PersistentVolumeClaim", "adf-activedataflow-redis")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"


def test_values_reach_the_operator_and_runner_settings() -> None:
    docs = render("image.repository=registry.example/adf", "image.tag=9.9.9", "heartbeat.schedule=*/5 * * * *",
                  "runner.resources.limits.cpu=2", "operator.resources.limits.cpu=500m")
    env = operator_env(docs)
    assert env["ADF_RUNNER_IMAGE"] == "registry.example/adf:9.9.9"
    assert env["ADF_HEARTBEAT_SCHEDULE"] == "*/5 * * * *"
    assert json.loads(env["ADF_RUNNER_RESOURCES"])["limits"] == {"cpu": 2, "memory": "1Gi"}
    [deployment] = find(docs, "Deployment", "adf-activedataflow-operator")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/adf:9.9.9"
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "512Mi"}


def test_a_given_store_url_lands_in_a_secret_and_no_redis_is_bundled() -> None:
    url = "postgresql+psycopg://adf:s3cret@db.example:5432/adf"
    docs = render(f"storage.url={url}")
    [secret] = find(docs, "Secret")
    assert secret["stringData"] == {"url": url}
    assert find(docs, "Deployment", "adf-activedataflow-redis") == []
    assert find(docs, "PersistentVolumeClaim") == []
    rendered_workloads = yaml.safe_dump_all(find(docs, "Deployment"))
    assert "s3cret" not in rendered_workloads and "postgresql" not in rendered_workloads


def test_an_existing_secret_is_used_as_is() -> None:
    docs = render("storage.existingSecret=warehouse-store", "storage.existingSecretKey=dsn")
    assert find(docs, "Secret") == []
    assert find(docs, "Deployment", "adf-activedataflow-redis") == []
    env = operator_env(docs)
    assert env["ADF_STORE_URL"] == {"secretKeyRef": {"name": "warehouse-store", "key": "dsn"}}


def test_watch_namespaces_scope_the_operator_and_runner_rbac_to_them() -> None:
    docs = render("watchNamespaces={team-a,team-b}")
    assert operator_env(docs)["ADF_WATCH_NAMESPACES"] == "team-a,team-b"
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in find(docs, "RoleBinding")}
    assert bindings == {(ns, f"adf-activedataflow-{who}") for ns in ("team-a", "team-b")
                        for who in ("operator", "runner")}
    cluster_bindings = [b["roleRef"]["name"] for b in find(docs, "ClusterRoleBinding")]
    assert cluster_bindings == ["adf-activedataflow-operator-discovery"]
    runner_accounts = {a["metadata"]["namespace"] for a in find(docs, "ServiceAccount", "adf-activedataflow-runner")}
    assert runner_accounts == {"team-a", "team-b"}


def test_store_url_and_existing_secret_together_are_refused() -> None:
    result = _helm("template", "adf", str(CHART), "--kube-version", KUBE_VERSION,
                   "--set", "storage.url=redis://r:6379/0", "--set", "storage.existingSecret=s", check=False)
    assert result.returncode != 0
    assert "set storage.url or storage.existingSecret, not both" in result.stderr


@pytest.mark.parametrize("url", ["sqlite:///adf.db", "memory://"])
def test_a_store_private_to_one_pod_is_refused(url: str) -> None:
    result = _helm("template", "adf", str(CHART), "--kube-version", KUBE_VERSION, "--set", f"storage.url={url}",
                   check=False)
    assert result.returncode != 0
    assert "storage.url: a sqlite:// or memory:// store lives inside one pod" in result.stderr


def test_a_malformed_value_is_refused_by_the_values_schema() -> None:
    result = _helm("template", "adf", str(CHART), "--kube-version", KUBE_VERSION,
                   "--set", "watchNamespaces={Not_A_Namespace}", check=False)
    assert result.returncode != 0
    assert "/watchNamespaces/0" in result.stderr


def test_the_dockerfile_copies_every_package_folder_and_runs_adf() -> None:
    text = (REPO / "Dockerfile").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    folders = {d.split("/")[0] for d in project["tool"]["setuptools"]["package-dir"].values()}
    copied = {m.group(1) for m in re.finditer(r"^COPY (\w+)/ \1/$", text, re.M)}
    assert folders <= copied
    assert re.search(r"^COPY pyproject.toml ./$", text, re.M) and re.search(r"^COPY README.md ./$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["adf"\]$', text, re.M)
    # Users build FROM the registry's python:3.11-slim; scripts/build-image passes a local base instead.
    assert re.search(r"^ARG BASE=python:3.11-slim$", text, re.M)
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages[0] == stages[-1] == "${BASE}"  # the first stage and the image itself
    assert "adf" in project["project"]["scripts"]
    assert re.search(r"^USER 10001:10001$", text, re.M)  # the chart's runAsUser


# --------------------------------------------------------------------------- on the real API server


def _release() -> str:
    return f"adf{uuid.uuid4().hex[:6]}"


@pytest.fixture
def installed(kube: Cluster, namespace: str) -> Iterator[tuple[str, str]]:
    """``helm install RELEASE charts/activedataflow`` (defaults) into a fresh namespace: (release, namespace)."""
    release = _release()
    kube.helm("install", release, str(CHART), "-n", namespace)
    yield release, namespace
    kube.helm("uninstall", release, "-n", namespace, "--wait=false", check=False)


@pytest.mark.k8s
def test_helm_install_creates_the_crds_operator_store_and_rbac(kube: Cluster, installed: tuple[str, str]) -> None:
    release, namespace = installed
    for crd in ("dataflows.activedataflow.io", "dataflowruns.activedataflow.io"):
        kube.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=30s")
    deployment = kube.get("deployment", f"{release}-activedataflow-operator", "-n", namespace)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == f"{release}-activedataflow-operator"
    secret = kube.get("secret", f"{release}-activedataflow-store", "-n", namespace)
    assert "url" in secret["data"]
    assert kube.get("pvc", f"{release}-activedataflow-redis", "-n", namespace)["spec"]["accessModes"] == [
        "ReadWriteOnce"]
    assert kube.get("service", f"{release}-activedataflow-redis", "-n", namespace)["spec"]["clusterIP"]
    kube.get("serviceaccount", f"{release}-activedataflow-runner", "-n", namespace)
    status = kube.helm("status", release, "-n", namespace).stdout
    assert "STATUS: deployed" in status
    assert f"kubectl -n {namespace} get dataflows" in status  # NOTES.txt


@pytest.mark.k8s
def test_an_upgrade_keeps_the_bundled_redis_password(kube: Cluster, installed: tuple[str, str]) -> None:
    release, namespace = installed
    before = kube.get("secret", f"{release}-activedataflow-store", "-n", namespace)["data"]
    kube.helm("upgrade", release, str(CHART), "-n", namespace, "--reuse-values", "--set", "heartbeat.schedule=@hourly")
    after = kube.get("secret", f"{release}-activedataflow-store", "-n", namespace)["data"]
    assert after == before
    env = kube.get("deployment", f"{release}-activedataflow-operator", "-n", namespace)["spec"]["template"]["spec"][
        "containers"][0]["env"]
    assert {"name": "ADF_HEARTBEAT_SCHEDULE", "value": "@hourly"} in env


@pytest.mark.k8s
def test_the_rendered_manifests_with_crds_apply_to_the_api_server(kube: Cluster, namespace: str) -> None:
    out = _helm("template", "adf", str(CHART), "-n", namespace, "--kube-version", KUBE_VERSION, "--include-crds",
                "--set", "storage.existingSecret=mine", "--set", "fullnameOverride=t-" + namespace).stdout
    crds = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "CustomResourceDefinition"]
    assert [c["metadata"]["name"] for c in crds] == ["dataflowruns.activedataflow.io", "dataflows.activedataflow.io"]
    result = kube.kubectl("apply", "--server-side", "--force-conflicts", "-n", namespace, "-f", "-", input=out)
    assert "deployment.apps/t-" in result.stdout
    try:
        kube.kubectl("get", "deployment", f"t-{namespace}-operator", "-n", namespace)
    finally:
        cluster_scoped = [d for d in yaml.safe_load_all(out)
                          if d and d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
        kube.kubectl("delete", "--wait=false", "-f", "-", input=yaml.safe_dump_all(cluster_scoped))
