"""`adf trigger` without a reachable cluster: a one-line reason naming the address."""

from __future__ import annotations

from pathlib import Path

import pytest
from activedataflow.cli.trigger import trigger_run
from activedataflow.errors import UserError

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


def test_the_value_set_names_the_run_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """`adf trigger` sets unix seconds: usable in the run name unhashed, `<flow>-manual-<value>`."""
    import activedataflow.cli.trigger as trigger
    from activedataflow.kube.names import manual_run_name

    patches: list[tuple[str, str, dict]] = []

    class FakeKube:
        server = "https://fake"

        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def patch(self, kind: object, namespace: str, name: str, body: dict) -> dict:
            patches.append((namespace, name, body))
            return {"metadata": {"name": name, "namespace": namespace}}

    monkeypatch.setattr(trigger, "RestKube", FakeKube)
    monkeypatch.setattr(trigger, "load_transport", lambda **kw: None)
    monkeypatch.setattr(trigger.time, "time", lambda: 1767225600.75)
    value = trigger_run("paid-orders", "shop")
    assert value == "1767225600"
    assert patches == [("shop", "paid-orders", {"metadata": {"annotations": {"activedataflow.io/run-now": value}}})]
    assert manual_run_name("paid-orders", value) == "paid-orders-manual-1767225600"
