"""The Conflict (409) retry loops against the real API server: another client writes the object between
the loop's read and its write, so the write's resourceVersion precondition is refused for real, and the
loop must read again and write on top of the other client's change.

The interleaving is made, not waited for: the stale read is taken before the other client writes (the
reflector, the store Secret the operator remembers), or the other client writes from inside the loop's
own read (the heartbeat CronJob)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from activedataflow.kube.client import CRONJOB, DATAFLOW, SECRET, ApiClientTransport, Conflict, RestKube
from activedataflow.kube.names import STORE_SECRET
from activedataflow.operator.config import Context, OperatorConfig
from activedataflow.operator.cronjob import RunnerSettings
from activedataflow.operator.store_secret import drop_store_secret, ensure_store_secret
from activedataflow.runner.reflect import KubeReflector

from tests.k8s.cluster import Cluster
from tests.k8s.test_operator_e2e import dataflow

pytestmark = pytest.mark.k8s


@pytest.fixture
def api(kube_crds: Cluster) -> Iterator[RestKube]:
    kube = RestKube(ApiClientTransport(kube_crds.api_client()))
    yield kube
    kube.close()


def _flow(kube: Cluster, api: RestKube, namespace: str) -> dict[str, Any]:
    kube.apply(dataflow("paid-orders", namespace))
    body = api.get(DATAFLOW, namespace, "paid-orders")
    assert body is not None
    return body


def test_the_reflector_rereads_a_dataflow_changed_since_its_read_and_counts_the_run_once(
    kube_crds: Cluster, namespace: str, api: RestKube
) -> None:
    kube = kube_crds
    stale = _flow(kube, api, namespace)
    kube.kubectl("label", "dataflow", "paid-orders", "-n", namespace, "team=payments")  # another client writes
    rv = stale["metadata"]["resourceVersion"]
    with pytest.raises(Conflict):  # the API server refuses a write on the stale read
        api.patch(DATAFLOW, namespace, "paid-orders", {"metadata": {"resourceVersion": rv}, "status": {}}, status=True)

    KubeReflector(api)._patch_flow_status(
        stale, "paid-orders-29453760", {"lastRunName": "paid-orders-29453760", "lastRunStatus": "Succeeded"},
        count="success",
    )
    live = kube.get("dataflow", "paid-orders", "-n", namespace)
    assert live["status"]["lastRunName"] == "paid-orders-29453760"
    assert (live["status"]["lastRunStatus"], live["status"]["succeeded"]) == ("Succeeded", 1)
    assert live["metadata"]["labels"]["team"] == "payments"  # the other client's write is kept


def test_a_run_another_runner_counted_between_the_read_and_the_write_is_not_counted_again(
    kube_crds: Cluster, namespace: str, api: RestKube
) -> None:
    kube = kube_crds
    stale = _flow(kube, api, namespace)
    counted = {"lastRunName": "paid-orders-29453760", "lastRunStatus": "Succeeded", "succeeded": 1}
    assert api.patch(DATAFLOW, namespace, "paid-orders", {"status": counted}, status=True) is not None

    KubeReflector(api)._patch_flow_status(
        stale, "paid-orders-29453760", {"lastRunName": "paid-orders-29453760", "lastRunStatus": "Succeeded"},
        count="success",
    )
    assert kube.get("dataflow", "paid-orders", "-n", namespace)["status"]["succeeded"] == 1


def _context(api: RestKube, tmp_path: Path) -> Context:
    return Context(OperatorConfig(store_url=f"sqlite:///{tmp_path / 'store.db'}",
                                  runner=RunnerSettings(image="registry.example/adf:test")), api)


def test_the_store_secret_is_reread_when_another_writer_changed_it_since_the_operator_wrote_it(
    kube_crds: Cluster, namespace: str, api: RestKube, tmp_path: Path
) -> None:
    kube = kube_crds
    ctx = _context(api, tmp_path)
    ensure_store_secret(ctx, namespace)  # the operator now remembers the Secret it wrote
    remembered = kube.get("secret", STORE_SECRET, "-n", namespace)["metadata"]["resourceVersion"]
    kube.kubectl("label", "secret", STORE_SECRET, "-n", namespace, "touched-by=another-writer")
    ctx.config = OperatorConfig(store_url="postgresql+psycopg://adf@db.example/adf", runner=ctx.config.runner)

    real_get, real_patch, reads, patches = api.get, api.patch, [], []

    def recorded_get(kind: Any, ns: str, name: str) -> Any:
        found = real_get(kind, ns, name)
        if kind == SECRET:
            reads.append(found["metadata"]["resourceVersion"] if found else None)
        return found

    def recorded_patch(kind: Any, ns: str, name: str, body: Any, *args: Any, **kwargs: Any) -> Any:
        if kind == SECRET:
            patches.append(body["metadata"]["resourceVersion"])
        return real_patch(kind, ns, name, body, *args, **kwargs)

    api.get, api.patch = recorded_get, recorded_patch  # type: ignore[method-assign]
    try:
        ensure_store_secret(ctx, namespace)  # the changed URL: a write against the remembered version
    finally:
        api.get, api.patch = real_get, real_patch  # type: ignore[method-assign]
        ctx.close()
    # The write against the remembered version was refused (409); the Secret was read again and written.
    assert patches[0] == remembered and len(patches) == 2 and len(reads) == 1
    assert reads[0] != remembered and patches[1] == reads[0]
    secret = kube.get("secret", STORE_SECRET, "-n", namespace)
    assert base64.b64decode(secret["data"]["url"]).decode() == "postgresql+psycopg://adf@db.example/adf"
    assert secret["metadata"]["labels"]["touched-by"] == "another-writer"


def test_the_store_secret_is_deleted_when_the_api_server_lists_no_dataflow_of_its_namespace(
    kube_crds: Cluster, namespace: str, api: RestKube, tmp_path: Path
) -> None:
    kube = kube_crds
    ctx = _context(api, tmp_path)
    try:
        ensure_store_secret(ctx, namespace)
        for name in ("one", "two"):
            kube.apply(dataflow(name, namespace))
        assert len(api.list(DATAFLOW, namespace, limit=1)) == 1  # the first page of one, as drop_store_secret asks
        assert drop_store_secret(ctx, namespace) is False
        kube.kubectl("delete", "dataflow", "one", "two", "-n", namespace, "--timeout=60s")
        assert drop_store_secret(ctx, namespace) is True
    finally:
        ctx.close()
    assert STORE_SECRET not in {s["metadata"]["name"] for s in kube.get("secrets", "-n", namespace)["items"]}


def test_the_heartbeat_cronjob_is_recomputed_when_another_writer_changed_it_between_read_and_write(
    kube_crds: Cluster, namespace: str, api: RestKube, tmp_path: Path
) -> None:
    from activedataflow.operator.workloads import sync_heartbeat

    kube = kube_crds
    ctx = _context(api, tmp_path)
    kube.apply(dataflow("one", namespace, runtime={"type": "heartbeat"}))
    live, change = sync_heartbeat(ctx, namespace)
    assert live is not None and change == "created"
    kube.apply(dataflow("two", namespace, runtime={"type": "heartbeat"}))

    real_get, reads = api.get, []

    def get_then_another_writer(kind: Any, ns: str, name: str) -> Any:
        found = real_get(kind, ns, name)
        if kind == CRONJOB and not reads:  # after the loop's first read, before its write
            kube.kubectl("label", "cronjob", "adf-heartbeat", "-n", namespace, "touched-by=another-writer")
        if kind == CRONJOB:
            reads.append(found["metadata"]["resourceVersion"] if found else None)
        return found

    api.get = get_then_another_writer  # type: ignore[method-assign]
    try:
        live, change = sync_heartbeat(ctx, namespace)
    finally:
        api.get = real_get  # type: ignore[method-assign]
        ctx.close()
    assert change == "updated"
    cj = kube.get("cronjob", "adf-heartbeat", "-n", namespace)
    assert sorted(o["name"] for o in cj["metadata"]["ownerReferences"]) == ["one", "two"]
    assert cj["metadata"]["labels"]["touched-by"] == "another-writer"
