"""The operator's kopf login: the Pod's service account without the ``kubernetes`` package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from activedataflow.operator.login import service_account_login


def _service_account(root: Path, *, token: str = "sa-token", namespace: str | None = "adf-system") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "token").write_text(token + "\n")
    (root / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    if namespace is not None:
        (root / "namespace").write_text(namespace)
    return root


def _pod_env(root: Path, host: str = "10.96.0.1") -> dict[str, str]:
    return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": "443", "ADF_SERVICEACCOUNT_DIR": str(root)}


def test_in_a_pod_kopf_logs_in_at_the_service_address_with_the_service_account(tmp_path: Path) -> None:
    root = _service_account(tmp_path / "sa")
    info = service_account_login(_pod_env(root))
    assert info is not None
    assert info.server == "https://10.96.0.1:443"
    assert info.token == "sa-token"
    assert info.ca_path == str(root / "ca.crt")
    assert info.default_namespace == "adf-system"


def test_an_ipv6_service_address_is_bracketed(tmp_path: Path) -> None:
    info = service_account_login(_pod_env(_service_account(tmp_path / "sa"), host="fd00::1"))
    assert info is not None and info.server == "https://[fd00::1]:443"


def test_outside_a_pod_there_is_no_service_account_login(tmp_path: Path) -> None:
    assert service_account_login({"ADF_SERVICEACCOUNT_DIR": str(_service_account(tmp_path / "sa"))}) is None


def test_a_pod_without_a_token_falls_through_to_the_kubeconfig(tmp_path: Path) -> None:
    assert service_account_login(_pod_env(tmp_path / "missing")) is None
    assert service_account_login(_pod_env(_service_account(tmp_path / "empty", token=""))) is None


def test_in_a_pod_the_operator_loads_without_the_kubernetes_package(tmp_path: Path) -> None:
    env = {**os.environ, **_pod_env(_service_account(tmp_path / "sa"))}
    code = ("import sys, activedataflow.operator.main; "
            "print(sys.modules.get('kubernetes') is None, 'kubernetes.client' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False"]


def test_outside_a_pod_kopf_still_sees_the_kubernetes_package() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE_")}
    code = "import sys, activedataflow.operator.main; print(sys.modules.get('kubernetes') is not None)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True"]
