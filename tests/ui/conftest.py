"""The monitoring page's tests run on real stores: SQLite (a file) and memory:// (the emulator); in a
cluster, on the real API server (``flow_ns``, ``tokens``, ``flow_store``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from activedataflow.store import Store, open_store
from activedataflow.store.redis_store import RedisStore

from tests.k8s.cluster import Cluster
from tests.k8s.test_incluster import credentials
from tests.ui.helpers import DATAFLOW, FLOW, Tokens, add_flow


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'adf.db'}")
    else:
        s = open_store("memory://")
        assert isinstance(s, RedisStore)
        s.r.flushall()
    try:
        yield s
    finally:
        if isinstance(s, RedisStore):
            s.r.flushall()
        s.close()


@pytest.fixture
def flow_ns(kube_crds: Cluster, namespace: str) -> str:
    """A namespace with the DataFlow FLOW, ServiceAccounts ``editor`` and ``viewer``, and a Role that lets
    the editor (and nobody else) patch DataFlows there."""
    kube_crds.apply([
        {**DATAFLOW, "metadata": {"name": FLOW, "namespace": namespace}},
        *({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": namespace}}
          for sa in ("editor", "viewer")),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "dataflow-editor", "namespace": namespace},
         "rules": [{"apiGroups": ["activedataflow.io"], "resources": ["dataflows"], "verbs": ["patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "editor", "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "dataflow-editor"},
         "subjects": [{"kind": "ServiceAccount", "name": "editor", "namespace": namespace}]},
    ])
    return namespace


@pytest.fixture
def tokens(kube_crds: Cluster, flow_ns: str) -> Tokens:
    """The ServiceAccounts' tokens from the TokenRequest API (``kubectl create token``), and the admin's."""
    def token(sa: str) -> str:
        return kube_crds.kubectl("create", "token", sa, "-n", flow_ns, "--duration", "10m").stdout.strip()

    return Tokens(editor=token("editor"), viewer=token("viewer"), admin=credentials(kube_crds)[1])


@pytest.fixture
def flow_store(tmp_path: Path, flow_ns: str) -> Iterator[Store]:
    """A SQLite store holding the flow record of FLOW in ``flow_ns`` (as the operator would have stored it)."""
    s = open_store(f"sqlite:///{tmp_path / 'adf.db'}")
    add_flow(s, FLOW, flow_ns)
    try:
        yield s
    finally:
        s.close()
