"""The in-cluster transport (service-account token + CA, urllib3 only) against the real API server.

A pod is simulated: a directory holding ``ca.crt`` and ``token`` as the kubelet
mounts them (the test cluster's CA and its admin token), and
``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` pointing at the test
API server.
"""

from __future__ import annotations

import base64
import datetime
import os
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import urllib3
import yaml
from activedataflow.kube.client import (
    ApiClientTransport,
    Kind,
    KubeError,
    RestKube,
    ServiceAccountTransport,
)
from activedataflow.runner.reflect import KubeReflector, NullReflector, reflector_from_env

from tests.cli_helpers import EXPECTED_FACT, ORDERS, adf, heartbeat_in_a_process, manifest, sqlite_fact, sqlite_orders
from tests.k8s.cluster import Cluster
from tests.services import unavailable

pytestmark = pytest.mark.k8s

CONFIGMAP = Kind("v1", "ConfigMap", "configmaps")


def credentials(kube: Cluster) -> tuple[bytes, str]:
    """(CA certificate PEM, bearer token) of the test cluster's kubeconfig."""
    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    if "token" not in user:
        unavailable("the cluster's kubeconfig has no bearer token")
    if "certificate-authority-data" in cluster:
        return base64.b64decode(cluster["certificate-authority-data"]), user["token"]
    return Path(cluster["certificate-authority"]).read_bytes(), user["token"]


def service_account_dir(kube: Cluster, path: Path, *, token: str | None = None, ca: bytes | None = None) -> Path:
    """A directory as the kubelet mounts a service account: ``ca.crt`` and ``token``."""
    real_ca, real_token = credentials(kube)
    path.mkdir(parents=True, exist_ok=True)
    (path / "ca.crt").write_bytes(ca if ca is not None else real_ca)
    (path / "token").write_text(token if token is not None else real_token)
    return path


def pod_env(kube: Cluster, root: Path) -> dict[str, str]:
    url = urlsplit(kube.server)
    return {
        "KUBERNETES_SERVICE_HOST": str(url.hostname),
        "KUBERNETES_SERVICE_PORT": str(url.port or 443),
        "ADF_SERVICEACCOUNT_DIR": str(root),
    }


def transport(kube: Cluster, root: Path, **kw) -> ServiceAccountTransport:
    url = urlsplit(kube.server)
    return ServiceAccountTransport(str(url.hostname), url.port or 443, root=root, **kw)


def test_the_service_account_transport_reads_and_writes_as_the_kubeconfig_one_does(
    kube: Cluster, namespace: str, tmp_path: Path
) -> None:
    incluster = RestKube(transport(kube, service_account_dir(kube, tmp_path / "sa")))
    official = RestKube(ApiClientTransport(kube.api_client()))
    labels = {"app.kubernetes.io/name": "adf", "activedataflow.io/flow": "paid-orders"}
    body = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}}

    created = incluster.create(CONFIGMAP, namespace, {**body, "metadata": {"name": "one", "labels": labels}})
    official.create(CONFIGMAP, namespace, {**body, "metadata": {"name": "two", "labels": {"other": "x"}}})
    assert created["metadata"]["uid"] == official.get(CONFIGMAP, namespace, "one")["metadata"]["uid"]

    assert [o["metadata"]["name"] for o in incluster.list(CONFIGMAP, namespace, labels=labels)] == ["one"]
    patched = incluster.patch(CONFIGMAP, namespace, "one", {"data": {"b": "2 & ?=,"}})
    assert patched is not None and patched["data"] == {"a": "1", "b": "2 & ?=,"}
    applied = incluster.apply(CONFIGMAP, namespace, {**body, "metadata": {"name": "three"}, "data": {"c": "3"}})
    assert applied["metadata"]["managedFields"][0]["manager"] == "activedataflow"
    assert incluster.get(CONFIGMAP, namespace, "one") == official.get(CONFIGMAP, namespace, "one")

    assert incluster.get(CONFIGMAP, namespace, "nope") is None
    assert incluster.patch(CONFIGMAP, namespace, "nope", {"data": {}}) is None
    assert incluster.delete(CONFIGMAP, namespace, "one") is True
    assert incluster.delete(CONFIGMAP, namespace, "one") is False
    assert sorted(o["metadata"]["name"] for o in official.list(CONFIGMAP, namespace)) == ["three", "two"]
    official.close()
    incluster.close()


def test_a_rewritten_token_file_is_picked_up(kube: Cluster, tmp_path: Path) -> None:
    _, token = credentials(kube)
    root = service_account_dir(kube, tmp_path / "sa", token="not-the-token")
    now = [0.0]
    kube_api = RestKube(transport(kube, root, clock=lambda: now[0]))

    with pytest.raises(KubeError) as refused:
        kube_api.request("GET", "/api/v1/namespaces/default")
    assert refused.value.status == 401

    (root / "token").write_text(token)
    with pytest.raises(KubeError):  # within the minute the token read is still used
        kube_api.request("GET", "/api/v1/namespaces/default")
    now[0] += 60
    assert kube_api.request("GET", "/api/v1/namespaces/default")["metadata"]["name"] == "default"
    assert token not in repr(kube_api)


def test_a_wrong_ca_fails_verification(kube: Cluster, tmp_path: Path) -> None:
    root = service_account_dir(kube, tmp_path / "sa", ca=self_signed_ca())
    kube_api = RestKube(transport(kube, root, retries=0))
    with pytest.raises(urllib3.exceptions.MaxRetryError) as failed:
        kube_api.request("GET", "/version")
    assert isinstance(failed.value.reason, urllib3.exceptions.SSLError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(failed.value.reason)


def self_signed_ca() -> bytes:
    """A CA certificate that did not sign the API server's certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-the-cluster-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_in_a_simulated_pod_runs_are_reflected_through_the_service_account(
    kube: Cluster, tmp_path: Path
) -> None:
    env = pod_env(kube, service_account_dir(kube, tmp_path / "sa"))
    reflector = reflector_from_env(env)
    assert isinstance(reflector, KubeReflector)
    assert isinstance(reflector.kube, RestKube) and isinstance(reflector.kube.transport, ServiceAccountTransport)

    (tmp_path / "sa" / "token").unlink()  # no service account and no kubeconfig: nothing to reflect into
    assert isinstance(reflector_from_env({**env, "KUBECONFIG": str(tmp_path / "none")}), NullReflector)


def test_a_heartbeat_in_a_pod_reflects_its_run_without_importing_kubernetes(
    kube_crds: Cluster, namespace: str, tmp_path: Path
) -> None:
    sqlite_orders(tmp_path / "shop.db", ORDERS)
    sqlite_fact(tmp_path / "wh.db")
    store = f"sqlite:///{tmp_path / 'adf.db'}"
    source, sink = f"sqlite:///{tmp_path / 'shop.db'}", f"sqlite:///{tmp_path / 'wh.db'}"
    path = manifest(tmp_path, source_url=source, sink_url=sink)
    path.write_text(path.read_text().replace("namespace: shop", f"namespace: {namespace}"))
    kube_crds.kubectl("apply", "-f", str(path))
    assert adf("--store", store, "apply", str(path)).returncode == 0

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADF_", "KUBE"))}
    env.update(pod_env(kube_crds, service_account_dir(kube_crds, tmp_path / "sa")))
    env["HOME"] = str(tmp_path)  # no ~/.kube/config to fall back to
    result, loaded = heartbeat_in_a_process(store, env)
    assert result.returncode == 0, result.stderr
    assert "urllib3" in loaded and "kubernetes" not in loaded

    with sqlite3.connect(tmp_path / "wh.db") as db:
        assert {r[0] for r in db.execute("SELECT id FROM fact_orders")} == set(EXPECTED_FACT)
    (run,) = kube_crds.get("dataflowruns", "-n", namespace, "-l", "activedataflow.io/flow=paid-orders")["items"]
    assert (run["status"]["phase"], run["status"]["recordsWritten"]) == ("Succeeded", len(EXPECTED_FACT))
    status = kube_crds.get("dataflow", "paid-orders", "-n", namespace)["status"]
    assert (status["lastRunName"], status["lastRunStatus"], status["succeeded"]) == (
        run["metadata"]["name"], "Succeeded", 1)

