"""The operator against the real control plane: `adf operator` as a subprocess, real kubectl, real PostgreSQL.

There is no kubelet here, so a Job's pod never starts; where a test needs a run
it does what the kubelet would: it runs the Job's container command locally with
the same argv and env (secretKeyRef values read from the Secrets), pointed at the
same API server (a kubeconfig standing in for the service-account token).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from activedataflow.kube.names import STORE_SECRET
from activedataflow.store import open_store

from tests.k8s.cluster import Cluster
from tests.services import free_port

pytestmark = [pytest.mark.k8s, pytest.mark.postgres]

ADF = [sys.executable, "-m", "activedataflow.cli"]
BIN = Path(sys.executable).parent


class Operator:
    """`adf operator` watching one namespace, as a child process with a log file."""

    def __init__(self, kube: Cluster, namespace: str, store_url: str, log: Path) -> None:
        self.env = {k: v for k, v in kube.env.items() if not k.startswith("ADF_")}
        self.env.update(
            ADF_STORE_URL=store_url,
            ADF_RUNNER_IMAGE="registry.example/activedataflow:test",
            ADF_WATCH_NAMESPACES=namespace,
        )
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([*ADF, "operator"], env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def operator(kube_crds: Cluster, namespace: str, pg_url: str, tmp_path: Path) -> Iterator[Operator]:
    op = Operator(kube_crds, namespace, pg_url, tmp_path / "operator.log")
    op.start()
    yield op
    op.stop()
    print(op.output())  # shown by pytest when the test failed


@pytest.fixture
def secrets(kube_crds: Cluster, namespace: str, pg_url: str) -> str:
    """Secrets shop-db and warehouse-db (key url) holding the PostgreSQL URL, password included."""
    for name in ("shop-db", "warehouse-db"):
        kube_crds.kubectl("create", "secret", "generic", name, "-n", namespace, f"--from-literal=url={pg_url}")
    return pg_url


def orders_table(url: str, rows: int = 5) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount INTEGER)"))
        c.execute(sa.text("CREATE TABLE fact_orders (id INTEGER PRIMARY KEY, amount INTEGER)"))
        values = [{"id": i, "amount": i * 10} for i in range(rows)]
        c.execute(sa.text("INSERT INTO orders VALUES (:id, :amount)"), values)
    engine.dispose()


def dataflow(name: str, namespace: str, *, source_table: str = "orders", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "activedataflow.io/v1alpha1",
        "kind": "DataFlow",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "schedule": "*/15 * * * *",
            "timeZone": "Europe/Berlin",
            "source": {
                "type": "sql",
                "connection": {"secretRef": {"name": "shop-db", "key": "url"}},
                "table": source_table,
            },
            "sink": {
                "type": "sql",
                "connection": {"secretRef": {"name": "warehouse-db", "key": "url"}},
                "table": "fact_orders",
                "mode": "upsert",
                "uniqueBy": ["id"],
            },
        },
    }
    body["spec"].update(spec)
    return body


def ready(kube: Cluster, namespace: str, name: str, status: str = "True", timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = kube.get("dataflow", name, "-n", namespace)
        cond = next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), None)
        return obj if cond and cond["status"] == status else None

    return kube.wait_for(check, timeout=timeout, what=f"DataFlow {name} Ready={status}")


def apply_with_orders(kube: Cluster, namespace: str, db_url: str, name: str, **kw: Any) -> dict[str, Any]:
    """Tables orders (5 rows) and fact_orders in the database, then the DataFlow applied and Ready."""
    orders_table(db_url)
    kube.apply(dataflow(name, namespace, **kw))
    return ready(kube, namespace, name)


def ready_condition(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def cronjobs(kube: Cluster, namespace: str) -> list[dict[str, Any]]:
    return kube.get("cronjobs", "-n", namespace)["items"]


def run_job_as_kubelet(
    kube: Cluster, job: dict[str, Any], *, kubeconfig: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the Job's container command here with the env the kubelet would give it; talking to the API
    server with ``kubeconfig`` (the Pod's ServiceAccount), by default the admin's."""
    namespace = job["metadata"]["namespace"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "KUBECONFIG": kubeconfig or kube.kubeconfig}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "fieldRef" in var["valueFrom"]:  # the downward API: the Job controller labels its Pods with the Job's name
            assert var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['batch.kubernetes.io/job-name']"
            env[var["name"]] = job["metadata"]["name"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            secret = kube.get("secret", ref["name"], "-n", namespace)
            env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    argv = container["command"]
    assert argv[0] == "adf"
    return subprocess.run(
        [str(BIN / "adf"), *argv[1:]], env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


def trigger_and_get_job(kube: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = subprocess.run(
        [*ADF, "trigger", name, "-n", namespace], env=kube.env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    value = out.stdout.strip().rsplit("=", 1)[-1].rstrip(")")

    def job() -> dict[str, Any] | None:
        for item in kube.get("jobs", "-n", namespace)["items"]:
            if item["metadata"].get("annotations", {}).get("activedataflow.io/run-now") == value:
                return item
        return None

    found = kube.wait_for(job, timeout=60, what=f"the run-now Job of {name}")
    kube.wait_for(
        lambda: kube.get("dataflow", name, "-n", namespace)["status"].get("lastHandledRunNow") == value,
        timeout=30,
        what="the run-now acknowledgement",
    )
    return found


# --------------------------------------------------------------------------- the tests


def test_a_dataflow_gets_its_cronjob_with_env_from_secrets_and_becomes_ready(
    kube_crds: Cluster, namespace: str, operator: Operator, secrets: str
) -> None:
    kube = kube_crds
    kube.apply(dataflow("paid-orders", namespace))
    obj = ready(kube, namespace, "paid-orders")
    assert ready_condition(obj)["reason"] == "Reconciled"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["nextRunAt"].endswith(("00:00Z", "15:00Z", "30:00Z", "45:00Z"))

    (cj,) = cronjobs(kube, namespace)
    assert cj["metadata"]["name"] == "df-paid-orders"
    assert (cj["spec"]["schedule"], cj["spec"]["timeZone"]) == ("*/15 * * * *", "Europe/Berlin")
    (owner,) = cj["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("DataFlow", obj["metadata"]["uid"], True)
    env = {e["name"]: e for e in cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ADF_SECRET_SHOP_DB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "shop-db", "key": "url"}
    store_ref = env["ADF_STORE_URL"]["valueFrom"]["secretKeyRef"]
    assert store_ref == {"name": STORE_SECRET, "key": "url"}  # the namespace's one store Secret
    store_secret = kube.get("secret", store_ref["name"], "-n", namespace)
    assert base64.b64decode(store_secret["data"][store_ref["key"]]).decode() == secrets
    assert secrets not in str(cj)  # the store URL is never inlined

    store = open_store(secrets)
    try:
        assert store.get_flow("paid-orders", namespace).schedule == "*/15 * * * *"
    finally:
        store.close()

    header = kube.kubectl("get", "dataflows", "-n", namespace).stdout.splitlines()[0].split()
    for column in ("SCHEDULE", "SUSPENDED", "READY", "LAST-RUN", "LAST-RUN-AT", "NEXT-RUN", "AGE"):
        assert column in header
    events = kube.get("events", "-n", namespace, "--field-selector", "involvedObject.name=paid-orders")["items"]
    assert "Created" in {e["reason"] for e in events}


def test_an_invalid_spec_past_the_schema_is_ready_false_naming_the_field(
    kube_crds: Cluster, namespace: str, operator: Operator, secrets: str
) -> None:
    kube = kube_crds
    kube.apply(dataflow("odd", namespace, timeZone="Mars/Olympus"))  # a schema cannot know the IANA zones
    obj = ready(kube, namespace, "odd", status="False")
    cond = ready_condition(obj)
    assert cond["reason"] == "InvalidSpec"
    assert cond["message"] == "spec.timeZone: unknown IANA time zone 'Mars/Olympus'"
    assert cronjobs(kube, namespace) == []
    events = kube.get("events", "-n", namespace, "--field-selector", "involvedObject.name=odd")["items"]
    assert any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in events)


def test_an_expression_with_a_syntax_error_is_ready_false_invalid_spec_at_apply(
    kube_crds: Cluster, namespace: str, operator: Operator, secrets: str
) -> None:
    kube = kube_crds
    kube.apply(dataflow("bad-filter", namespace, transform=[{"filter": "row.amount > >"}]))
    cond = ready_condition(ready(kube, namespace, "bad-filter", status="False"))
    assert cond["reason"] == "InvalidSpec"
    assert cond["message"].startswith("spec.transform.0.filter: invalid expression at position 14: invalid syntax")
    assert cronjobs(kube, namespace) == []


def test_run_now_makes_a_job_whose_command_runs_the_flow_and_is_reflected(
    kube_crds: Cluster, namespace: str, operator: Operator, secrets: str
) -> None:
    kube = kube_crds
    apply_with_orders(kube, namespace, secrets, "paid-orders")

    job = trigger_and_get_job(kube, namespace, "paid-orders")
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("DataFlow", "paid-orders")  # not the CronJob: it would adopt it
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"

    done = run_job_as_kubelet(kube, job)
    assert done.returncode == 0, done.stderr
    runs = kube.get("dataflowruns", "-n", namespace, "-l", "activedataflow.io/flow=paid-orders")["items"]
    (run,) = runs
    assert run["status"]["phase"] == "Succeeded"
    assert (run["status"]["recordsRead"], run["status"]["recordsWritten"]) == (5, 5)
    assert run["status"]["trigger"] == "manual"
    assert run["metadata"]["ownerReferences"][0]["kind"] == "DataFlow"

    status = kube.get("dataflow", "paid-orders", "-n", namespace)["status"]
    assert status["lastRunName"] == run["metadata"]["name"]
    assert (status["lastRunStatus"], status["succeeded"], status["activeRuns"]) == ("Succeeded", 1, 0)
    assert status["lastSuccessfulRunAt"]
    listed = kube.kubectl("get", "dataflowruns", "-n", namespace).stdout
    assert "Succeeded" in listed and "paid-orders" in listed


def reconcile_retries(kube: Cluster, namespace: str, name: str) -> int:
    """How many times kopf has retried the DataFlow's reconcile handler (its progress annotation)."""
    annotations = kube.get("dataflow", name, "-n", namespace)["metadata"].get("annotations") or {}
    progress = [json.loads(v) for k, v in annotations.items()
                if k.startswith("kopf.activedataflow.io/reconcile") and v.startswith("{")]
    return max((int(p.get("retries") or 0) for p in progress), default=0)


def test_an_unreachable_store_is_ready_false_and_retried_without_crashing(
    kube_crds: Cluster, namespace: str, tmp_path: Path
) -> None:
    kube = kube_crds
    address = f"127.0.0.1:{free_port()}"
    op = Operator(kube, namespace, f"postgresql+psycopg://adf:hunter2@{address}/adf", tmp_path / "operator.log")
    op.start()
    try:
        kube.apply(dataflow("paid-orders", namespace))
        cond = ready_condition(ready(kube, namespace, "paid-orders", status="False"))
        assert cond["reason"] == "StorageUnavailable"
        assert address in cond["message"] and "hunter2" not in cond["message"]
        kube.wait_for(lambda: reconcile_retries(kube, namespace, "paid-orders") >= 2, timeout=90,
                      what="a second failed attempt of the reconcile (it was retried)")
        assert op.proc is not None and op.proc.poll() is None, op.output()
        assert cronjobs(kube, namespace) == []
    finally:
        op.stop()
    assert "hunter2" not in op.output()


def test_trigger_of_an_unknown_flow_names_it(kube_crds: Cluster, namespace: str) -> None:
    out = subprocess.run(
        [*ADF, "trigger", "nope", "-n", namespace], env=kube_crds.env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert f"DataFlow {namespace}/nope not found" in out.stderr


def test_a_failing_flow_is_reflected_as_failed_with_the_error(
    kube_crds: Cluster, namespace: str, operator: Operator, secrets: str
) -> None:
    kube = kube_crds
    apply_with_orders(kube, namespace, secrets, "broken", source_table="no_such_table")

    done = run_job_as_kubelet(kube, trigger_and_get_job(kube, namespace, "broken"))
    assert done.returncode == 1
    (run,) = kube.get("dataflowruns", "-n", namespace, "-l", "activedataflow.io/flow=broken")["items"]
    assert run["status"]["phase"] == "Failed"
    assert "no_such_table" in run["status"]["error"]["message"]
    assert "adf-test-pw" not in str(run)  # the password in the connection URL is never shown
    status = kube.get("dataflow", "broken", "-n", namespace)["status"]
    assert (status["lastRunStatus"], status["failed"]) == ("Failed", 1)


def flow_enabled(store_url: str, namespace: str, name: str) -> bool:
    store = open_store(store_url)
    try:
        record = store.get_flow(name, namespace)
        assert record is not None
        return record.enabled
    finally:
        store.close()


def test_delete_collects_the_cronjob_disables_the_record_and_keeps_history(
    kube_crds: Cluster, namespace: str, operator: Operator, secrets: str
) -> None:
    kube = kube_crds
    apply_with_orders(kube, namespace, secrets, "paid-orders")
    assert run_job_as_kubelet(kube, trigger_and_get_job(kube, namespace, "paid-orders")).returncode == 0

    kube.kubectl("delete", "dataflow", "paid-orders", "-n", namespace, "--timeout=60s")
    kube.wait_for(lambda: cronjobs(kube, namespace) == [], timeout=60, what="the CronJob to be garbage-collected")
    kube.wait_for(lambda: not flow_enabled(secrets, namespace, "paid-orders"), timeout=60,
                  what="the flow record disabled")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADF_")} | {"ADF_STORE_URL": secrets}
    runs = subprocess.run([*ADF, "runs", "paid-orders", "-o", "json"], env=env, capture_output=True, text=True)
    assert runs.returncode == 0, runs.stderr
    assert '"success"' in runs.stdout


def test_a_new_dataflow_is_written_by_the_operator_in_its_status_alone(
    kube_crds: Cluster, namespace: str, operator: Operator, secrets: str
) -> None:
    kube = kube_crds
    kube.apply(dataflow("paid-orders", namespace))
    obj = ready(kube, namespace, "paid-orders")
    assert not obj["metadata"].get("finalizers")  # nothing holds a deletion up
    assert not [k for k in obj["metadata"].get("annotations") or {} if k.startswith("kopf.")]
    # managedFields: one entry per manager and subresource written; the object itself only by kubectl
    fields = kube.get("dataflow", "paid-orders", "-n", namespace, "--show-managed-fields")["metadata"]["managedFields"]
    writers = [m.get("subresource", "") for m in fields if not m["manager"].startswith("kubectl")]
    assert writers == ["status"]


def test_a_dataflow_deleted_while_no_operator_runs_has_its_record_disabled_at_the_next_start(
    kube_crds: Cluster, namespace: str, operator: Operator, secrets: str
) -> None:
    kube = kube_crds
    kube.apply([dataflow("kept", namespace), dataflow("deleted", namespace)])
    ready(kube, namespace, "kept")
    ready(kube, namespace, "deleted")
    operator.stop()
    kube.kubectl("delete", "dataflow", "deleted", "-n", namespace, "--timeout=60s")  # no finalizer waits
    assert flow_enabled(secrets, namespace, "deleted")
    operator.start()
    kube.wait_for(lambda: not flow_enabled(secrets, namespace, "deleted"), timeout=60,
                  what="the deleted flow's record disabled by the operator's start")
    assert flow_enabled(secrets, namespace, "kept")


def test_heartbeat_flows_share_one_cronjob_per_namespace(
    kube_crds: Cluster, namespace: str, operator: Operator, secrets: str
) -> None:
    kube = kube_crds
    one = dataflow("one", namespace, runtime={"type": "heartbeat"})
    two = dataflow("two", namespace, runtime={"type": "heartbeat"}, interval="7m", schedule=None)
    two["spec"]["source"]["connection"] = {"secretRef": {"name": "crm-db", "key": "url"}}
    kube.apply([one, two])
    ready(kube, namespace, "one")
    ready(kube, namespace, "two")

    def heartbeat_env() -> list[str] | None:
        items = cronjobs(kube, namespace)
        if [c["metadata"]["name"] for c in items] != ["adf-heartbeat"]:
            return None
        env = items[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
        names = sorted(e["name"] for e in env if e["name"].startswith("ADF_SECRET_"))
        return names if len(names) == 3 else None

    assert kube.wait_for(heartbeat_env, timeout=30, what="the shared heartbeat CronJob") == [
        "ADF_SECRET_CRM_DB_URL",
        "ADF_SECRET_SHOP_DB_URL",
        "ADF_SECRET_WAREHOUSE_DB_URL",
    ]


def test_operator_killed_mid_reconcile_converges_with_one_cronjob(
    kube_crds: Cluster, namespace: str, operator: Operator, secrets: str
) -> None:
    kube = kube_crds
    kube.apply(dataflow("paid-orders", namespace))
    kube.wait_for(lambda: cronjobs(kube, namespace), timeout=60, interval=0.05, what="the CronJob")
    operator.kill()  # right after the create, before the status (and the secret, maybe) are written
    operator.start()
    obj = ready(kube, namespace, "paid-orders")
    time.sleep(2)  # let a second pass (if any) settle
    assert [c["metadata"]["name"] for c in cronjobs(kube, namespace)] == ["df-paid-orders"]
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert json.loads(obj["status"]["lastHandledConfiguration"])["spec"] == obj["spec"]  # kopf's diff base
    secret_names = [s["metadata"]["name"] for s in kube.get("secrets", "-n", namespace)["items"]]
    assert secret_names.count(STORE_SECRET) == 1 and "df-paid-orders" not in secret_names


# --------------------------------------------------------------------------- twins of the MemoryKube handler tests


def patch_spec(kube: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    kube.kubectl("patch", "dataflow", name, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": spec}))


def reconciled(kube: Cluster, namespace: str, name: str, generation: int, timeout: float = 60) -> dict[str, Any]:
    """The DataFlow once the operator has reconciled ``generation`` of its spec."""
    def check() -> dict[str, Any] | None:
        obj = kube.get("dataflow", name, "-n", namespace)
        status = obj.get("status") or {}
        return obj if obj["metadata"]["generation"] == generation == status.get("observedGeneration") else None

    return kube.wait_for(check, timeout=timeout, what=f"DataFlow {name} generation {generation} reconciled")


def cronjob_names(kube: Cluster, namespace: str) -> list[str]:
    return sorted(c["metadata"]["name"] for c in cronjobs(kube, namespace))


def events_of(kube: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    return kube.get("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]


def annotate_run_now(kube: Cluster, namespace: str, name: str, value: str) -> None:
    kube.kubectl("annotate", "--overwrite", "dataflow", name, "-n", namespace, f"activedataflow.io/run-now={value}")


def acknowledged(kube: Cluster, namespace: str, name: str, value: str) -> None:
    kube.wait_for(
        lambda: (kube.get("dataflow", name, "-n", namespace).get("status") or {}).get("lastHandledRunNow") == value,
        timeout=60, what=f"run-now {value} acknowledged",
    )


def test_a_spec_update_patches_the_cronjob_and_suspend_suspends_it(
    kube_crds: Cluster, namespace: str, operator: Operator, secrets: str
) -> None:
    kube = kube_crds
    kube.apply(dataflow("paid-orders", namespace))
    ready(kube, namespace, "paid-orders")
    uid = cronjobs(kube, namespace)[0]["metadata"]["uid"]

    patch_spec(kube, namespace, "paid-orders", {"schedule": "0 3 * * *", "suspend": True})
    obj = reconciled(kube, namespace, "paid-orders", 2)
    (cj,) = cronjobs(kube, namespace)
    assert (cj["metadata"]["name"], cj["metadata"]["uid"]) == ("df-paid-orders", uid)  # patched, not recreated
    assert (cj["spec"]["schedule"], cj["spec"]["suspend"]) == ("0 3 * * *", True)
    assert ready_condition(obj)["reason"] == "Suspended"
    assert obj["status"].get("nextRunAt") is None
    assert "Updated" in {e["reason"] for e in events_of(kube, namespace, "paid-orders")}
    store = open_store(secrets)
    try:
        flow = store.get_flow("paid-orders", namespace)
        assert flow is not None and (flow.enabled, flow.schedule) == (False, "0 3 * * *")
    finally:
        store.close()


def test_switching_runtime_to_heartbeat_and_back_moves_the_flow_between_cronjobs(
    kube_crds: Cluster, namespace: str, operator: Operator, secrets: str
) -> None:
    kube = kube_crds
    kube.apply(dataflow("paid-orders", namespace))
    ready(kube, namespace, "paid-orders")
    assert cronjob_names(kube, namespace) == ["df-paid-orders"]

    patch_spec(kube, namespace, "paid-orders", {"runtime": {"type": "heartbeat"}})
    reconciled(kube, namespace, "paid-orders", 2)
    kube.wait_for(lambda: cronjob_names(kube, namespace) == ["adf-heartbeat"], timeout=60,
                  what="the flow's own CronJob replaced by the heartbeat")
    (hb,) = cronjobs(kube, namespace)
    assert [o["name"] for o in hb["metadata"]["ownerReferences"]] == ["paid-orders"]

    patch_spec(kube, namespace, "paid-orders", {"runtime": {"type": "cronjob"}})
    reconciled(kube, namespace, "paid-orders", 3)
    kube.wait_for(lambda: cronjob_names(kube, namespace) == ["df-paid-orders"], timeout=60,
                  what="the heartbeat (no flow left on it) replaced by the flow's own CronJob")


def test_deleting_the_last_heartbeat_flow_removes_the_shared_cronjob(
    kube_crds: Cluster, namespace: str, operator: Operator, secrets: str
) -> None:
    kube = kube_crds
    kube.apply([dataflow(n, namespace, runtime={"type": "heartbeat"}) for n in ("one", "two")])
    ready(kube, namespace, "one")
    ready(kube, namespace, "two")

    def owners() -> list[str] | None:
        items = cronjobs(kube, namespace)
        return sorted(o["name"] for o in items[0]["metadata"]["ownerReferences"]) if items else None

    kube.wait_for(lambda: owners() == ["one", "two"], timeout=60, what="the heartbeat owned by both flows")
    kube.kubectl("delete", "dataflow", "one", "-n", namespace, "--timeout=60s")
    kube.wait_for(lambda: owners() == ["two"], timeout=60, what="the heartbeat re-synced without the deleted flow")
    kube.kubectl("delete", "dataflow", "two", "-n", namespace, "--timeout=60s")
    kube.wait_for(lambda: cronjobs(kube, namespace) == [], timeout=60, what="the heartbeat CronJob gone")


def test_one_run_now_value_makes_one_job_even_across_an_operator_restart(
    kube_crds: Cluster, namespace: str, operator: Operator, secrets: str
) -> None:
    kube = kube_crds
    kube.apply(dataflow("paid-orders", namespace))
    ready(kube, namespace, "paid-orders")
    annotate_run_now(kube, namespace, "paid-orders", "1700000000")
    acknowledged(kube, namespace, "paid-orders", "1700000000")
    assert len(kube.get("jobs", "-n", namespace)["items"]) == 1

    operator.stop()
    operator.start()  # resumes every DataFlow: the run-now handler sees the annotation again
    patch_spec(kube, namespace, "paid-orders", {"schedule": "*/20 * * * *"})
    reconciled(kube, namespace, "paid-orders", 2)  # the new operator has handled the flow
    assert len(kube.get("jobs", "-n", namespace)["items"]) == 1

    annotate_run_now(kube, namespace, "paid-orders", "1700000100")
    acknowledged(kube, namespace, "paid-orders", "1700000100")
    values = sorted(j["metadata"]["annotations"]["activedataflow.io/run-now"]
                    for j in kube.get("jobs", "-n", namespace)["items"])
    assert values == ["1700000000", "1700000100"]


def test_run_now_of_a_suspended_flow_is_refused_with_an_event_and_no_job(
    kube_crds: Cluster, namespace: str, operator: Operator, secrets: str
) -> None:
    kube = kube_crds
    kube.apply(dataflow("paid-orders", namespace, suspend=True))
    reconciled(kube, namespace, "paid-orders", 1)
    annotate_run_now(kube, namespace, "paid-orders", "1")
    acknowledged(kube, namespace, "paid-orders", "1")
    assert kube.get("jobs", "-n", namespace)["items"] == []
    refused = [e for e in events_of(kube, namespace, "paid-orders") if e["reason"] == "RunNowRefused"]
    assert [(e["type"], e["message"]) for e in refused] == [("Warning", "the flow is suspended")]


def test_dataflowruns_beyond_the_history_limit_are_pruned_and_every_run_is_counted(
    kube_crds: Cluster, namespace: str, operator: Operator, secrets: str
) -> None:
    kube = kube_crds
    apply_with_orders(kube, namespace, secrets, "paid-orders", successfulRunsHistoryLimit=1)
    names = []
    for value in ("1700000000", "1700000100"):
        annotate_run_now(kube, namespace, "paid-orders", value)
        job = kube.wait_for(lambda v=value: next(  # type: ignore[misc]
            (j for j in kube.get("jobs", "-n", namespace)["items"]
             if j["metadata"]["annotations"].get("activedataflow.io/run-now") == v), None),
            timeout=60, what=f"the Job of run-now {value}")
        done = run_job_as_kubelet(kube, job)
        assert done.returncode == 0, done.stderr
        names.append(kube.get("dataflow", "paid-orders", "-n", namespace)["status"]["lastRunName"])
    assert names[0] != names[1]
    runs = kube.get("dataflowruns", "-n", namespace, "-l", "activedataflow.io/flow=paid-orders")["items"]
    assert [r["metadata"]["name"] for r in runs] == [names[1]]  # the newest kept, the older pruned
    status = kube.get("dataflow", "paid-orders", "-n", namespace)["status"]
    assert (status["succeeded"], status.get("failed", 0), status["lastRunStatus"]) == (2, 0, "Succeeded")


def test_resync_recreates_a_cronjob_deleted_by_hand_and_its_store_secret(
    kube_crds: Cluster, namespace: str, secrets: str
) -> None:
    """The resync pass (the operator's thread runs it every 600 s; called here directly) on the real API server:
    the CronJob and the Secret are back, and the status it wrote under the listed resourceVersion is there."""
    from activedataflow.kube.client import DATAFLOW, ApiClientTransport, RestKube
    from activedataflow.operator.config import Context, OperatorConfig
    from activedataflow.operator.cronjob import RunnerSettings
    from activedataflow.operator.handlers.handle_reconcile import reconcile_flow
    from activedataflow.operator.handlers.handle_resync import resync_all

    kube = kube_crds
    api = RestKube(ApiClientTransport(kube.api_client()))
    ctx = Context(OperatorConfig(store_url=secrets, runner=RunnerSettings(image="registry.example/adf:test")), api)
    try:
        kube.apply(dataflow("paid-orders", namespace))
        reconcile_flow(api.get(DATAFLOW, namespace, "paid-orders") or {}, status={}, ctx=ctx)
        (old,) = cronjobs(kube, namespace)
        kube.kubectl("delete", "cronjob", "df-paid-orders", "-n", namespace, "--timeout=60s")
        kube.kubectl("delete", "secret", STORE_SECRET, "-n", namespace, "--timeout=60s")

        assert resync_all(ctx, [namespace]) == 1  # the first pass's status was never written: this one is
    finally:
        ctx.close()
        api.close()
    (new,) = cronjobs(kube, namespace)
    assert new["metadata"]["name"] == "df-paid-orders" and new["metadata"]["uid"] != old["metadata"]["uid"]
    secret = kube.get("secret", STORE_SECRET, "-n", namespace)
    assert base64.b64decode(secret["data"]["url"]).decode() == secrets
    conditions = kube.get("dataflow", "paid-orders", "-n", namespace)["status"]["conditions"]
    assert [(c["type"], c["status"]) for c in conditions] == [("Ready", "True")]
