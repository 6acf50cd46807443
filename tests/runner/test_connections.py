"""Connection resolution: url as is, secretRef through the Job's environment or the real Kubernetes API."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import yaml
from activedataflow.errors import ConfigError
from activedataflow.kube.names import secret_env_name
from activedataflow.model import Connection
from activedataflow.runner.connections import resolve_url
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.secrets_scan import register_secret

# the real control plane (etcd + kube-apiserver), shared with tests/k8s

FIELD = "spec.source.connection"
PW = "pa55-w0rd"
register_secret(PW)


def secret_ref(name: str = "shop-db", key: str = "url") -> Connection:
    return Connection.model_validate({"secretRef": {"name": name, "key": key}})


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Secret in the environment, no in-cluster service account, no kubeconfig."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(secret_env_name("shop-db", "url"), raising=False)


def test_a_url_is_used_as_is() -> None:
    conn = Connection.model_validate({"url": "sqlite:///shop.db"})
    assert resolve_url(conn, namespace="shop", field=FIELD) == "sqlite:///shop.db"


def test_secret_env_name() -> None:
    assert secret_env_name("shop-db", "url") == "ADF_SECRET_SHOP_DB_URL"
    assert secret_env_name("warehouse.db", "dsn-ro") == "ADF_SECRET_WAREHOUSE_DB_DSN_RO"


@settings(max_examples=50, deadline=None)
@given(st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?", fullmatch=True),
       st.from_regex(r"[-._a-zA-Z0-9]{1,20}", fullmatch=True))
def test_secret_env_names_are_valid_environment_variable_names(name: str, key: str) -> None:
    # what a Pod's env[].name accepts and a shell can export
    assert re.fullmatch(r"ADF_SECRET_[A-Z0-9_]+", secret_env_name(name, key))


def test_secret_ref_from_the_environment(monkeypatch: pytest.MonkeyPatch, no_cluster: None) -> None:
    monkeypatch.setenv("ADF_SECRET_SHOP_DB_URL", f"postgresql+psycopg://app:{PW}@db:5432/shop")
    assert resolve_url(secret_ref(), namespace="shop", field=FIELD).endswith(f"{PW}@db:5432/shop")


def test_secret_ref_without_environment_or_cluster_says_what_to_set(no_cluster: None) -> None:
    with pytest.raises(ConfigError, match=(
        r"^spec\.source\.connection\.secretRef: secret shop-db key url not found \(set ADF_SECRET_SHOP_DB_URL, "
        r"or run where a Kubernetes configuration can read Secrets in namespace shop\)$"
    )):
        resolve_url(secret_ref(), namespace="shop", field=FIELD)


# --------------------------------------------------------------------------- the real API server


def create_secret(kube, ns: str, name: str, data: dict[str, str]) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})


@pytest.mark.k8s
def test_secret_ref_read_from_the_cluster(kube, namespace: str, monkeypatch: pytest.MonkeyPatch,
                                          no_cluster: None) -> None:
    create_secret(kube, namespace, "shop-db", {"url": f"postgresql+psycopg://app:{PW}@db/shop", "user": "app"})
    monkeypatch.setenv("KUBECONFIG", kube.kubeconfig)
    assert resolve_url(secret_ref(), namespace=namespace, field=FIELD) == f"postgresql+psycopg://app:{PW}@db/shop"


@pytest.mark.k8s
def test_the_environment_wins_over_the_cluster(kube, namespace: str, monkeypatch: pytest.MonkeyPatch,
                                               no_cluster: None) -> None:
    create_secret(kube, namespace, "shop-db", {"url": "sqlite:///from-cluster.db"})
    monkeypatch.setenv("KUBECONFIG", kube.kubeconfig)
    monkeypatch.setenv("ADF_SECRET_SHOP_DB_URL", "sqlite:///from-env.db")
    assert resolve_url(secret_ref(), namespace=namespace, field=FIELD) == "sqlite:///from-env.db"


@pytest.mark.k8s
def test_a_missing_key_lists_the_keys_without_values(kube, namespace: str,
                                                     monkeypatch: pytest.MonkeyPatch, no_cluster: None) -> None:
    create_secret(kube, namespace, "shop-db", {"dsn": f"postgresql://app:{PW}@db/shop", "user": "app"})
    monkeypatch.setenv("KUBECONFIG", kube.kubeconfig)
    with pytest.raises(ConfigError) as err:
        resolve_url(secret_ref(), namespace=namespace, field=FIELD)
    assert str(err.value) == (f"spec.source.connection.secretRef: secret shop-db in namespace {namespace} "
                              "has no key url; keys: dsn, user")
    assert PW not in str(err.value)


@pytest.mark.k8s
def test_a_missing_secret_names_it_and_the_namespace(kube, namespace: str,
                                                     monkeypatch: pytest.MonkeyPatch, no_cluster: None) -> None:
    monkeypatch.setenv("KUBECONFIG", kube.kubeconfig)
    with pytest.raises(ConfigError, match=(
        rf"^spec\.source\.connection\.secretRef: secret shop-db not found in namespace {namespace} "
        r"\(or set ADF_SECRET_SHOP_DB_URL\)$"
    )):
        resolve_url(secret_ref(), namespace=namespace, field=FIELD)


@pytest.mark.k8s
def test_a_service_account_without_rbac_is_told_what_to_grant(kube, namespace: str,
                                                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              no_cluster: None) -> None:
    create_secret(kube, namespace, "shop-db", {"url": f"postgresql://app:{PW}@db/shop"})
    kube.kubectl("create", "serviceaccount", "runner", "-n", namespace)
    token = kube.kubectl("create", "token", "runner", "-n", namespace).stdout.strip()
    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    config["users"] = [{"name": "runner", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "runner"
    (tmp_path / "runner.kubeconfig").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "runner.kubeconfig"))
    with pytest.raises(ConfigError, match=(
        rf"^spec\.source\.connection\.secretRef: not allowed to read secret shop-db in namespace {namespace} "
        r"\(HTTP 403; grant 'get' on secrets, or set ADF_SECRET_SHOP_DB_URL\)$"
    )):
        resolve_url(secret_ref(), namespace=namespace, field=FIELD)
