"""`adf trigger` without a reachable cluster: a one-line reason naming the address."""

from __future__ import annotations

from pathlib import Path

import pytest
from activedataflow.errors import UserError
from activedataflow.operator.trigger import trigger_run

from tests.operator.test_reflect import unreachable_kubeconfig


def test_unreachable_cluster_names_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = unreachable_kubeconfig(tmp_path / "config")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(UserError, match=f"cannot reach the Kubernetes API server at {server}"):
        trigger_run("paid-orders", "shop")


def test_no_kubeconfig_at_all_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(UserError, match="no Kubernetes configuration"):
        trigger_run("paid-orders", "shop")
