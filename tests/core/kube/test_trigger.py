"""`adf trigger` and the patches it shares with the page (kube/actions.py); without a reachable cluster, a
one-line reason naming the address."""

from __future__ import annotations

from pathlib import Path

import pytest
from activedataflow.cli.trigger import trigger_run
from activedataflow.errors import UserError

from tests.memkube import MemoryKube
from tests.runner.test_reflect import unreachable_kubeconfig


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


def test_the_value_set_names_the_run_as_is() -> None:
    """`adf trigger` (and the page) set unix seconds: usable in the run name unhashed, `<flow>-manual-<value>`."""
    from activedataflow.kube.actions import request_run_now
    from activedataflow.kube.client import DATAFLOW
    from activedataflow.kube.names import manual_run_name

    kube = MemoryKube()
    kube.add(DATAFLOW, {"metadata": {"name": "paid-orders", "namespace": "shop"}, "spec": {}})
    found = request_run_now(kube, "shop", "paid-orders", clock=lambda: 1767225600.75)
    assert found is not None and found[0] == "1767225600"
    stored = kube.get(DATAFLOW, "shop", "paid-orders")
    assert stored is not None and stored["metadata"]["annotations"] == {"activedataflow.io/run-now": "1767225600"}
    assert manual_run_name("paid-orders", found[0]) == "paid-orders-manual-1767225600"
    assert request_run_now(kube, "shop", "missing") is None


def test_suspend_and_resume_patch_the_spec() -> None:
    from activedataflow.kube.actions import set_suspend
    from activedataflow.kube.client import DATAFLOW

    kube = MemoryKube()
    kube.add(DATAFLOW, {"metadata": {"name": "paid-orders", "namespace": "shop"}, "spec": {"interval": "1h"}})
    assert set_suspend(kube, "shop", "paid-orders", True)["spec"] == {"interval": "1h", "suspend": True}  # type: ignore[index]
    assert set_suspend(kube, "shop", "paid-orders", False)["spec"]["suspend"] is False  # type: ignore[index]
    assert set_suspend(kube, "shop", "missing", True) is None
