"""Day one on a real node: ``helm install`` -> operator Pod -> CronJob -> runner Pod -> DataFlowRun.

Everything runs in Pods from the image ``scripts/build-image`` built from the repository's
Dockerfile: the operator (the chart's Deployment, its liveness probe), the bundled Redis
store on a real volume, and the runner Pods the CronJobs start, as the chart's runner
ServiceAccount (never admin credentials). The flows move rows between two databases of a
real PostgreSQL that listens on the node's address, with the connection URLs in Secrets.

The tests share one release (module scope) and run in file order; each uses its own
flow and databases, so each asserts one behaviour.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import yaml

from tests import services
from tests.k8s.cluster import REPO
from tests.k8s.node import POD_CIDR, Node

pytestmark = [pytest.mark.node, pytest.mark.k8s, pytest.mark.postgres]

CHART = REPO / "charts" / "activedataflow"
RELEASE = "adf"
RELEASE_NS = "adf-system"
FULLNAME = f"{RELEASE}-activedataflow"
OPERATOR = f"{FULLNAME}-operator"
RUNNER_SA = f"{FULLNAME}-runner"
ADF = [sys.executable, "-m", "activedataflow.cli"]


# --------------------------------------------------------------------------- fixtures


@dataclass
class Release:
    node: Node
    namespace: str
    image: str
    values: Path
    started: float  # time.monotonic() when `helm install` began

    def helm(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return self.node.helm(*args, timeout=timeout)


def _split_ref(ref: str) -> tuple[str, str]:
    repository, _, tag = ref.rpartition(":")
    return repository, tag


def _test_values(node: Node, tmp: Path) -> Path:
    """Only what this machine needs differently from a real cluster: the Redis image (no registry here)."""
    redis_repo, redis_tag = _split_ref(node.image_ref("redis"))
    values = {"storage": {"redis": {"image": {"repository": redis_repo, "tag": redis_tag,
                                              "pullPolicy": "Never"}}}}
    path = tmp / "test-values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _store_volume(node: Node, tmp: Path) -> None:
    """A pre-made PersistentVolume for the bundled Redis's claim (this test cluster has no provisioner)."""
    data = tmp / "redis-pv"
    data.mkdir()
    data.chmod(0o777)  # hostPath volumes get no fsGroup: the Redis user (999) must be able to write
    node.apply({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"adf-store-{uuid.uuid4().hex[:6]}"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                 "hostPath": {"path": str(data), "type": "Directory"}},
    })


@pytest.fixture(scope="module")
def release(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """``helm install`` of the chart with default values (the chart's image is the one built here)."""
    tmp = tmp_path_factory.mktemp("release")
    _store_volume(node, tmp)
    values = _test_values(node, tmp)
    started = time.monotonic()
    node.helm("install", RELEASE, str(CHART), "-n", RELEASE_NS, "--create-namespace", "-f", str(values),
              "--wait", "--timeout", "180s", timeout=240)
    print(f"helm install --wait took {time.monotonic() - started:.1f}s")
    rel = Release(node, RELEASE_NS, node.image_ref("adf"), values, started)
    try:
        yield rel
    finally:
        print(node.kubectl("logs", "-n", RELEASE_NS, f"deployment/{OPERATOR}", "--tail", "60",
                           check=False).stdout)
        node.helm("uninstall", RELEASE, "-n", RELEASE_NS, "--wait", check=False)


@pytest.fixture(scope="module")
def node_pg(node: Node) -> Iterator[str]:
    """A real PostgreSQL on the node's address, which Pods on the bridge log in to with the password."""
    with services.postgres_server(host=node.node_ip, allow=POD_CIDR) as url:
        yield url


@dataclass
class Databases:
    source: str
    sink: str


@pytest.fixture
def dbs(node_pg: str) -> Iterator[Databases]:
    """Two fresh databases (source and sink) on the node's PostgreSQL, dropped afterwards."""
    names = [f"t_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    admin = sa.create_engine(node_pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        for name in names:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    urls = [sa.make_url(node_pg).set(database=n).render_as_string(hide_password=False) for n in names]
    try:
        yield Databases(*urls)
    finally:
        with admin.connect() as c:
            for name in names:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --------------------------------------------------------------------------- helpers


def orders(dbs: Databases, rows: int) -> None:
    src = sa.create_engine(dbs.source)
    with src.begin() as c:
        c.execute(sa.text("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount NUMERIC(12,2), status TEXT)"))
        c.execute(sa.text("INSERT INTO orders SELECT i, i * 1.5, CASE WHEN i % 4 = 0 THEN 'void' ELSE 'paid' END "
                          "FROM generate_series(1, :n) AS i"), {"n": rows})
    src.dispose()
    sink = sa.create_engine(dbs.sink)
    with sink.begin() as c:
        c.execute(sa.text("CREATE TABLE fact_orders (id INTEGER PRIMARY KEY, amount_cents BIGINT, status TEXT)"))
    sink.dispose()


def expected_rows(rows: int) -> list[tuple[int, int, str]]:
    return [(i, int(i * 150), "paid") for i in range(1, rows + 1) if i % 4 != 0]


@contextlib.contextmanager
def sink_locked(dbs: Databases) -> Iterator[None]:
    """fact_orders locked (ACCESS EXCLUSIVE) in an open transaction: a run writing into it waits."""
    engine = sa.create_engine(dbs.sink)
    try:
        with engine.connect() as conn, conn.begin():  # the lock goes with the transaction's end
            conn.execute(sa.text("LOCK TABLE fact_orders IN ACCESS EXCLUSIVE MODE"))
            yield
    finally:
        engine.dispose()


def sink_rows(dbs: Databases) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(dbs.sink)
    with engine.connect() as c:
        found = [tuple(r) for r in c.execute(sa.text("SELECT id, amount_cents, status FROM fact_orders ORDER BY id"))]
    engine.dispose()
    return found


def connection_secrets(node: Node, namespace: str, dbs: Databases, prefix: str) -> None:
    for name, url in ((f"{prefix}-shop-db", dbs.source), (f"{prefix}-warehouse-db", dbs.sink)):
        node.kubectl("create", "secret", "generic", name, "-n", namespace, f"--from-literal=url={url}")


def dataflow(name: str, namespace: str, prefix: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "activedataflow.io/v1alpha1",
        "kind": "DataFlow",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "schedule": "* * * * *",
            "source": {"type": "sql", "connection": {"secretRef": {"name": f"{prefix}-shop-db", "key": "url"}},
                       "table": "orders", "where": [{"column": "status", "op": "=", "value": "paid"}]},
            "transform": [{"set": {"amount_cents": "int(row.amount * 100)"}}, {"drop": ["amount"]}],
            "sink": {"type": "sql", "connection": {"secretRef": {"name": f"{prefix}-warehouse-db", "key": "url"}},
                     "table": "fact_orders", "mode": "upsert", "uniqueBy": ["id"]},
        },
    }
    body["spec"].update(spec)
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    return body


def runs_of(node: Node, namespace: str, flow: str) -> list[dict[str, Any]]:
    items = node.get("dataflowruns", "-n", namespace, "-l", f"activedataflow.io/flow={flow}")["items"]
    return sorted(items, key=lambda r: r["metadata"]["creationTimestamp"])


def wait_run(node: Node, namespace: str, flow: str, phase: str = "Succeeded", *, timeout: float = 180,
             where: Any = None) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        for run in runs_of(node, namespace, flow):
            if (run.get("status") or {}).get("phase") == phase and (where is None or where(run)):
                return run
        return None

    try:
        return node.wait_for(check, timeout=timeout, interval=1, what=f"a {phase} DataFlowRun of {flow}")
    except TimeoutError as err:
        pods = node.kubectl("get", "pods,jobs,dataflowruns", "-n", namespace, "-o", "wide", check=False).stdout
        raise AssertionError(f"{err}\n{pods}\n{describe_flow(node, namespace, flow)}") from err


def describe_flow(node: Node, namespace: str, flow: str) -> str:
    out = node.kubectl("get", "dataflow", flow, "-n", namespace, "-o", "yaml", check=False).stdout
    logs = node.kubectl("logs", "-n", RELEASE_NS, f"deployment/{OPERATOR}", "--tail", "30", check=False).stdout
    return f"{out}\n--- operator:\n{logs}"


def container_pid(node: Node, pod: dict[str, Any]) -> int:
    """The host PID of a Pod's (only) container, from containerd."""
    (status,) = pod["status"]["containerStatuses"]
    container_id = status["containerID"].split("://", 1)[1]
    info = json.loads(node.ctr("containers", "info", container_id).stdout)
    tasks = node.ctr("tasks", "ls").stdout.splitlines()
    for line in tasks[1:]:
        parts = line.split()
        if parts and parts[0] == container_id:
            return int(parts[1])
    raise AssertionError(f"no running task for container {container_id} ({info.get('ID')})")


# --------------------------------------------------------------------------- install


def test_helm_install_runs_the_operator_pod_from_the_built_image(release: Release) -> None:
    node = release.node
    node.kubectl("rollout", "status", f"deployment/{OPERATOR}", "-n", RELEASE_NS, "--timeout=120s")
    (pod,) = node.pods(RELEASE_NS, "app.kubernetes.io/component=operator")
    (container,) = pod["spec"]["containers"]
    assert container["image"] == release.image
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] is True and status["restartCount"] == 0  # ready: its readiness probe passed
    assert container["readinessProbe"]["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"]
    # What the kubelet's probes ask, asked the same way (the Pod's address on the bridge).
    port = container["livenessProbe"]["httpGet"]["port"]
    port_number = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:{port_number}/healthz", timeout=10) as resp:
        assert resp.status == 200


def test_the_bundled_redis_store_runs_on_its_volume(release: Release) -> None:
    node = release.node
    node.kubectl("rollout", "status", f"deployment/{FULLNAME}-redis", "-n", RELEASE_NS, "--timeout=120s")
    (pvc,) = node.get("pvc", "-n", RELEASE_NS)["items"]
    assert pvc["status"]["phase"] == "Bound"
    (pod,) = node.pods(RELEASE_NS, "app.kubernetes.io/component=store")
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])  # its readiness probe: redis-cli ping
    out = node.kubectl("exec", "-n", RELEASE_NS, pod["metadata"]["name"], "--", "sh", "-c",
                       'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli CONFIG GET dir').stdout
    assert "/data" in out


def test_adf_version_answers_inside_the_image(release: Release) -> None:
    node = release.node
    (pod,) = node.pods(RELEASE_NS, "app.kubernetes.io/component=operator")
    out = node.kubectl("exec", "-n", RELEASE_NS, pod["metadata"]["name"], "--", "adf", "--version").stdout
    assert out.startswith("adf, version ")
    uid = node.kubectl("exec", "-n", RELEASE_NS, pod["metadata"]["name"], "--", "id", "-u").stdout.strip()
    assert uid == "10001"


# --------------------------------------------------------------------------- scheduled runs


def test_a_scheduled_flow_runs_in_a_runner_pod_and_records_a_succeeded_run(release: Release, dbs: Databases) -> None:
    node, ns = release.node, RELEASE_NS
    orders(dbs, 200)
    connection_secrets(node, ns, dbs, "sched")
    node.apply(dataflow("paid-orders", ns, "sched"))
    run = wait_run(node, ns, "paid-orders", timeout=200)
    print(f"helm install -> first Succeeded DataFlowRun: {time.monotonic() - release.started:.1f}s")
    status = run["status"]
    assert status["trigger"] == "schedule"
    assert status["recordsRead"] == 150 and status["recordsWritten"] == 150 and status["recordsFailed"] == 0
    assert sink_rows(dbs) == expected_rows(200)
    # Named after its slot, as CronJob names its Jobs: <flow>-<unix minutes>.
    slot_minutes = int(run["metadata"]["name"].rsplit("-", 1)[1])
    assert abs(slot_minutes * 60 - time.time()) < 600

    # The runner reflects the run before it exits: the Pod ends a moment later.
    pod = node.wait_for(lambda: next((p for p in node.pods(ns, "activedataflow.io/flow=paid-orders")
                                      if p["status"].get("phase") == "Succeeded"), None),
                        timeout=60, what="the runner Pod to succeed")
    spec = pod["spec"]
    assert spec["serviceAccountName"] == RUNNER_SA
    (container,) = spec["containers"]
    assert container["image"] == release.image
    security = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
    assert security.get("runAsNonRoot") is True
    assert security.get("runAsUser", 10001) == 10001
    logs = node.kubectl("logs", "-n", ns, pod["metadata"]["name"]).stdout
    assert "paid-orders" in logs and "150" in logs, logs

    table = node.kubectl("get", "df", "-n", ns).stdout
    line = next(ln for ln in table.splitlines() if ln.startswith("paid-orders"))
    assert "Succeeded" in line, table
    runs = node.kubectl("get", "dfr", "-n", ns).stdout
    assert run["metadata"]["name"] in runs and "Succeeded" in runs
    node.kubectl("delete", "dataflow", "paid-orders", "-n", ns, "--wait=true")


def test_run_now_with_adf_trigger_and_with_the_annotation_runs_a_job(release: Release, dbs: Databases) -> None:
    node, ns = release.node, RELEASE_NS
    orders(dbs, 40)
    connection_secrets(node, ns, dbs, "now")
    node.apply(dataflow("on-demand", ns, "now", schedule="0 0 1 1 *"))
    node.wait_for(lambda: (node.get("dataflow", "on-demand", "-n", ns).get("status") or {}).get("conditions"),
                  timeout=60, what="the operator to reconcile on-demand")

    out = subprocess.run([*ADF, "trigger", "on-demand", "-n", ns], env=node.env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    first = wait_run(node, ns, "on-demand", timeout=120, where=lambda r: r["status"].get("trigger") == "manual")
    assert first["status"]["recordsWritten"] == 30
    assert sink_rows(dbs) == expected_rows(40)

    node.kubectl("annotate", "dataflow", "on-demand", "-n", ns, "--overwrite",
                 f"activedataflow.io/run-now={int(time.time())}")
    second = wait_run(node, ns, "on-demand", timeout=120,
                      where=lambda r: r["metadata"]["name"] != first["metadata"]["name"])
    assert second["status"]["trigger"] == "manual"

    def manual_jobs() -> list[dict[str, Any]]:
        return [j for j in node.get("jobs", "-n", ns)["items"] if "manual" in j["metadata"]["name"]
                and j["metadata"]["labels"].get("activedataflow.io/flow") == "on-demand"]

    node.wait_for(lambda: all(j["status"].get("succeeded") == 1 for j in manual_jobs()), timeout=60,
                  what="both run-now Jobs to complete")
    assert len(manual_jobs()) == 2
    node.kubectl("delete", "dataflow", "on-demand", "-n", ns, "--wait=true")


def test_a_runner_pod_killed_mid_run_is_replaced_and_the_slot_runs_exactly_once(
    release: Release, dbs: Databases
) -> None:
    node, ns = release.node, RELEASE_NS
    orders(dbs, 500)
    connection_secrets(node, ns, dbs, "kill")
    with sink_locked(dbs):  # the runner blocks on its first write into fact_orders until the test lets go
        node.apply(dataflow("fragile", ns, "kill"))
        running = wait_run(node, ns, "fragile", "Running", timeout=200)
        slot = running["metadata"]["name"]
        (pod,) = [p for p in node.pods(ns, "activedataflow.io/flow=fragile") if p["status"].get("phase") == "Running"]
        os.kill(container_pid(node, pod), signal.SIGKILL)
    # The Job starts a new Pod for the same tick; it takes the slot over once the dead runner's lease is gone.
    done = wait_run(node, ns, "fragile", timeout=240, where=lambda r: r["metadata"]["name"].startswith(slot))
    assert done["status"]["recordsWritten"] == 375
    assert sink_rows(dbs) == expected_rows(500)
    slot_runs = [r for r in runs_of(node, ns, "fragile") if r["metadata"]["name"].startswith(slot)]
    assert [r["status"]["phase"] for r in slot_runs].count("Succeeded") == 1
    node.kubectl("patch", "dataflow", "fragile", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    node.kubectl("delete", "dataflow", "fragile", "-n", ns, "--wait=true")


def test_a_scheduled_tick_during_a_run_now_run_runs_nothing_for_a_forbid_flow(
    release: Release, dbs: Databases
) -> None:
    node, ns = release.node, RELEASE_NS
    orders(dbs, 60)
    connection_secrets(node, ns, dbs, "forbid")
    node.apply(dataflow("one-at-a-time", ns, "forbid", concurrencyPolicy="Forbid"))
    first = wait_run(node, ns, "one-at-a-time", timeout=200)  # its first tick: the flow is now not due
    with sink_locked(dbs):  # holds the run-now run
        node.kubectl("annotate", "dataflow", "one-at-a-time", "-n", ns, f"activedataflow.io/run-now={int(time.time())}")
        manual = wait_run(node, ns, "one-at-a-time", "Running", timeout=120,
                          where=lambda r: r["status"].get("trigger") == "manual")

        def scheduled_pod_done() -> dict[str, Any] | None:
            for pod in node.pods(ns, "activedataflow.io/flow=one-at-a-time"):
                job = pod["metadata"]["labels"].get("batch.kubernetes.io/job-name", "")
                created = pod["metadata"]["creationTimestamp"]
                if ("manual" not in job and created > manual["metadata"]["creationTimestamp"]
                        and pod["status"].get("phase") == "Succeeded"):
                    return pod
            return None

        # The CronJob starts the next tick's Job while the run-now run holds the flow: the store's claim refuses.
        pod = node.wait_for(scheduled_pod_done, timeout=150, interval=2, what="a scheduled tick's Pod to end")
        logs = node.kubectl("logs", "-n", ns, pod["metadata"]["name"]).stdout
        assert "another run of this flow is active" in logs, logs
        names = [r["metadata"]["name"] for r in runs_of(node, ns, "one-at-a-time")]
        assert names == [first["metadata"]["name"], manual["metadata"]["name"]]
    wait_run(node, ns, "one-at-a-time", timeout=120,
             where=lambda r: r["metadata"]["name"] == manual["metadata"]["name"])
    node.kubectl("patch", "dataflow", "one-at-a-time", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    events = node.get("events", "-n", ns, "--field-selector", "involvedObject.kind=CronJob")["items"]
    assert not [e for e in events if e["reason"] == "UnexpectedJob"], events  # run-now Jobs are the DataFlow's
    assert sink_rows(dbs) == expected_rows(60)
    node.kubectl("delete", "dataflow", "one-at-a-time", "-n", ns, "--wait=true")


def _job_for_tick(node: Node, namespace: str, cronjob: str, tick: datetime, zone: str) -> dict[str, Any]:
    """The Job the CronJob controller would start for ``tick``: ``<cronjob>-<tick in unix minutes>``
    from its jobTemplate, annotated with the tick (no owner: the controller leaves it alone)."""
    template = node.get("cronjob", cronjob, "-n", namespace)["spec"]["jobTemplate"]
    meta = template.get("metadata") or {}
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": f"{cronjob}-{int(tick.timestamp()) // 60}", "namespace": namespace,
            "labels": meta.get("labels") or {},
            "annotations": {"batch.kubernetes.io/cronjob-scheduled-timestamp":
                            tick.astimezone(ZoneInfo(zone)).isoformat()},
        },
        "spec": template["spec"],
    }


def test_a_job_for_a_tick_the_store_did_not_expect_runs_that_tick(release: Release, dbs: Databases) -> None:
    """The CronJob is the clock: a Job the controller starts runs its tick, whatever the store's slot
    (DST changes part them: issue 11's Berlin 02:30 and New York fall-back days)."""
    node, ns = release.node, RELEASE_NS
    orders(dbs, 20)
    connection_secrets(node, ns, dbs, "clock")
    zone = "Europe/Berlin"
    node.apply(dataflow("clock", ns, "clock", schedule="0 0 1 1 *", timeZone=zone, startingDeadlineSeconds=300))
    node.wait_for(lambda: node.get("cronjobs", "-n", ns, "-l", "activedataflow.io/flow=clock")["items"],
                  timeout=60, what="the operator to make clock's CronJob")
    # two of the yearly ticks, long past: Kubernetes would start no Job that late, but the runner must not
    # judge the tick by the store's slot (the first finds a never-run flow, the second the store's slot
    # moved on to next year)
    ticks = [datetime(2025, 1, 1, tzinfo=ZoneInfo(zone)), datetime(2026, 1, 1, tzinfo=ZoneInfo(zone))]
    names = []
    try:
        for tick in ticks:
            job = _job_for_tick(node, ns, "df-clock", tick, zone)
            node.apply(job)
            name = f"clock-{int(tick.timestamp()) // 60}"  # <flow>-<tick in unix minutes>
            run = wait_run(node, ns, "clock", timeout=180, where=lambda r, n=name: r["metadata"]["name"] == n)
            assert run["spec"]["scheduledFor"] == tick.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            assert run["status"]["trigger"] == "schedule"
            names.append(name)
        assert [r["metadata"]["name"] for r in runs_of(node, ns, "clock")] == names
        next_run = node.get("dataflow", "clock", "-n", ns)["status"]["nextRunAt"]
        now = datetime.now(UTC)
        assert next_run == datetime(now.year + 1, 1, 1, tzinfo=ZoneInfo(zone)).astimezone(UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
    finally:
        for tick in ticks:
            node.kubectl("delete", "job", f"df-clock-{int(tick.timestamp()) // 60}", "-n", ns, "--wait=false",
                         check=False)
        node.kubectl("delete", "dataflow", "clock", "-n", ns, "--wait=true", check=False)


def test_a_heartbeat_flow_runs_from_the_shared_heartbeat_cronjob(release: Release, dbs: Databases) -> None:
    node, ns = release.node, RELEASE_NS
    orders(dbs, 20)
    connection_secrets(node, ns, dbs, "hb")
    node.apply(dataflow("beat", ns, "hb", schedule=None, interval="1m", runtime={"type": "heartbeat"}))
    run = wait_run(node, ns, "beat", timeout=200)
    assert run["status"]["trigger"] == "heartbeat"
    assert run["status"]["recordsWritten"] == 15
    assert sink_rows(dbs) == expected_rows(20)
    cronjobs = {c["metadata"]["name"] for c in node.get("cronjobs", "-n", ns)["items"]}
    assert "adf-heartbeat" in cronjobs
    node.kubectl("delete", "dataflow", "beat", "-n", ns, "--wait=true")


def test_a_dataflow_in_a_second_namespace_runs_once_the_chart_lists_it(release: Release, dbs: Databases) -> None:
    node = release.node
    team = f"team-{uuid.uuid4().hex[:6]}"
    node.kubectl("create", "namespace", team)
    try:
        # As NOTES.txt says: a namespace outside the release's needs runner.namespaces (the runner ServiceAccount).
        release.helm("upgrade", RELEASE, str(CHART), "-n", RELEASE_NS, "--reuse-values",
                     "--set", f"runner.namespaces={{{team}}}", "--wait", "--timeout", "180s")
        node.get("serviceaccount", RUNNER_SA, "-n", team)
        orders(dbs, 12)
        connection_secrets(node, team, dbs, "team")
        node.apply(dataflow("team-flow", team, "team"))
        run = wait_run(node, team, "team-flow", timeout=200)
        assert run["status"]["recordsWritten"] == 9
        assert sink_rows(dbs) == expected_rows(12)
    finally:
        # The release no longer lists it (else every later --reuse-values upgrade would recreate its RBAC).
        release.helm("upgrade", RELEASE, str(CHART), "-n", RELEASE_NS, "--reuse-values",
                     "--set-json", "runner.namespaces=[]", "--wait", "--timeout", "180s")
        node.kubectl("delete", "namespace", team, "--wait=false", check=False)


def test_the_operator_pod_serves_metrics_and_with_ui_enabled_the_monitoring_page(
    release: Release, dbs: Databases
) -> None:
    node, ns = release.node, RELEASE_NS
    orders(dbs, 8)
    connection_secrets(node, ns, dbs, "watched")
    node.apply(dataflow("watched", ns, "watched"))
    wait_run(node, ns, "watched", timeout=200)
    release.helm("upgrade", RELEASE, str(CHART), "-n", RELEASE_NS, "--reuse-values", "--set", "ui.enabled=true",
                 "--wait", "--timeout", "180s")
    node.kubectl("rollout", "status", f"deployment/{OPERATOR}", "-n", RELEASE_NS, "--timeout=120s")
    (pod,) = [p for p in node.pods(RELEASE_NS, "app.kubernetes.io/component=operator")
              if p["metadata"].get("deletionTimestamp") is None]
    ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    ip = pod["status"]["podIP"]

    def scrape() -> str | None:
        with urllib.request.urlopen(f"http://{ip}:{ports['metrics']}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return text if 'flow="watched"' in text else None

    from prometheus_client.parser import text_string_to_metric_families

    text = node.wait_for(scrape, timeout=60, interval=2, what="the flow in the operator's metrics")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    key = (("flow", "watched"), ("namespace", ns), ("result", "succeeded"))
    assert samples[("adf_flow_runs_total", key)] >= 1
    assert samples[("adf_store_up", ())] == 1
    assert samples[("adf_operator_reconcile_total", (("result", "success"),))] >= 1
    services = {s["metadata"]["name"] for s in node.get("services", "-n", RELEASE_NS)["items"]}
    assert {f"{FULLNAME}-metrics", f"{FULLNAME}-ui"} <= services
    with urllib.request.urlopen(f"http://{ip}:{ports['ui']}/", timeout=10) as resp:
        page = resp.read().decode()
    assert "watched" in page and 'class="mode ro"' in page  # in a cluster: read-only
    node.kubectl("patch", "dataflow", "watched", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    node.kubectl("delete", "dataflow", "watched", "-n", ns, "--wait=true")


# --------------------------------------------------------------------------- upgrade and uninstall


def test_helm_upgrade_to_a_new_image_tag_rolls_the_operator(release: Release) -> None:
    node = release.node
    refs = node.image_refs("adf")
    other = next((r for r in refs if r != release.image), None)
    assert other is not None, f"scripts/build-image tags the image twice (got {refs})"
    repository, tag = _split_ref(other)
    (before,) = node.pods(RELEASE_NS, "app.kubernetes.io/component=operator")
    release.helm("upgrade", RELEASE, str(CHART), "-n", RELEASE_NS, "--reuse-values", "--set", f"image.tag={tag}",
                 "--wait", "--timeout", "180s")
    node.kubectl("rollout", "status", f"deployment/{OPERATOR}", "-n", RELEASE_NS, "--timeout=120s")
    (after,) = [p for p in node.pods(RELEASE_NS, "app.kubernetes.io/component=operator")
                if p["metadata"].get("deletionTimestamp") is None]
    assert after["metadata"]["name"] != before["metadata"]["name"]
    assert after["spec"]["containers"][0]["image"] == f"{repository}:{tag}"
    env = {e["name"]: e.get("value") for e in after["spec"]["containers"][0]["env"]}
    assert env["ADF_RUNNER_IMAGE"] == f"{repository}:{tag}"  # new runner Pods use the new image too


def test_helm_uninstall_keeps_the_crds_and_the_store_volume_as_notes_say(release: Release) -> None:
    node = release.node
    notes = release.helm("get", "notes", RELEASE, "-n", RELEASE_NS).stdout
    release.helm("uninstall", RELEASE, "-n", RELEASE_NS, "--wait", "--timeout", "120s")
    crds = node.kubectl("get", "crd", "-o", "name").stdout
    assert "dataflows.activedataflow.io" in crds and "dataflowruns.activedataflow.io" in crds
    (pvc,) = node.get("pvc", "-n", RELEASE_NS)["items"]  # helm.sh/resource-policy: keep
    assert pvc["status"]["phase"] == "Bound"
    assert node.get("deployments", "-n", RELEASE_NS)["items"] == []
    assert "kubectl delete crd" in notes and f"delete pvc {FULLNAME}-redis" in notes
