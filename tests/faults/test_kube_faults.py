"""The fault matrix, the API server unreachable while the runner reflects a run.

The runner reflects through a proxy in front of the real kube-apiserver; the fault hits one of its
requests (hypothesis picks which, and how). Reflection never fails a run: the run is recorded in
the store all the same. Once the API server is reachable again, the next runner catches up before
its own run: every DataFlowRun ends in the phase the store has, the DataFlow status shows the newest
run, and the ``succeeded`` counter counts each run once.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from activedataflow.kube.client import DATAFLOW, DATAFLOWRUN, RestKube, load_transport
from activedataflow.runner.executor import FlowExecutor
from activedataflow.runner.reflect import KubeReflector, run_resource_name
from activedataflow.store import open_store
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.faults.inject import MODES, Injector
from tests.faults.invariants import Cell, create_tables, manifest, source_rows
from tests.faults.toxiproxy import Proxy, Toxiproxy
from tests.flows import manifest_of_flow
from tests.k8s.cluster import Cluster

pytestmark = [pytest.mark.k8s, pytest.mark.postgres]
_examples = itertools.count()


def kube_via(kube: Cluster, proxy: Proxy, tmp_path: Path) -> RestKube:
    """The reflector's client, as reflector_from_env makes it, through ``proxy``."""
    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    path = tmp_path / "kubeconfig-via-proxy"
    path.write_text(yaml.safe_dump(config))
    return RestKube(load_transport(retries=0, env={"KUBECONFIG": str(path)}), timeout=10)


@pytest.fixture
def api_proxy(kube_crds: Cluster, toxiproxy: Toxiproxy) -> Any:
    proxy = toxiproxy.proxy(f"kube-{next(_examples)}", kube_crds.server.removeprefix("https://"))
    yield proxy
    proxy.delete()


@given(at=st.integers(0, 14), mode=st.sampled_from(MODES))
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api_server_unreachable_while_the_runner_reflects(
    kube_crds: Cluster, namespace: str, api_proxy: Proxy, pg_url: str, tmp_path: Path, at: int, mode: Any,
) -> None:
    n = next(_examples)
    rows = source_rows()
    sink = f"sqlite:///{tmp_path / f'sink{n}.db'}"
    create_tables(pg_url, sink, rows)
    flow = manifest(f"f{n}", pg_url, sink, namespace=namespace)
    body = manifest_of_flow(flow)
    kube_crds.apply(body)
    store = open_store(f"sqlite:///{tmp_path / f'store{n}.db'}")
    try:
        kube = kube_via(kube_crds, api_proxy, tmp_path)
        injector = Injector(api_proxy, at, mode)
        send = kube.request
        armed = [True]  # the faulted run only

        def request(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            if not armed[0]:
                return send(method, path, *args, **kwargs)
            return injector.request(api_proxy.port, None, f"{method} {path}",
                                    lambda: send(method, path, *args, **kwargs))

        kube.request = request  # type: ignore[method-assign]
        executor = FlowExecutor(store, reflector=KubeReflector(kube))
        cell = Cell(flow, store, pg_url, sink, f"127.0.0.1:{api_proxy.port}", rows)
        try:
            first = cell.run(executor)
        finally:
            armed[0] = False
            api_proxy.restore()
        event(f"{mode} {'met' if injector.fired.is_set() else 'not reached'}")
        assert first.run is not None and first.run.status == "success", "a reflection fault failed the run"
        cell.check(converged=True)
        second = cell.run(executor)
        assert second.run is not None and second.run.status == "success"
        kube = RestKube(load_transport(retries=0, env={"KUBECONFIG": kube_crds.kubeconfig}))  # the checker's own
        for run in (first.run, second.run):
            name = run_resource_name(store.get_flow(flow.name, namespace), run)  # type: ignore[arg-type]
            dfr = kube.get(DATAFLOWRUN, namespace, name)
            assert dfr is not None and dfr["status"]["phase"] == "Succeeded", (name, dfr, injector.seen)
        status = kube.get(DATAFLOW, namespace, flow.name)["status"]  # type: ignore[index]
        assert (status["lastRunName"], status["lastRunStatus"]) == (second.run.run_name, "Succeeded")
        assert status["succeeded"] == 2, (status, injector.seen)
        assert status.get("activeRuns") == 0
    finally:
        store.close()
