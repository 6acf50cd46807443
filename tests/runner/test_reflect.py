"""Runs reflected into DataFlowRun resources and the DataFlow status (in-memory Kubernetes API)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from activedataflow.kube.client import DATAFLOW, DATAFLOWRUN
from activedataflow.runner.reflect import KubeReflector, NullReflector, reflector_from_env
from activedataflow.store.base import FlowRecord, RunRecord

from tests.memkube import MemoryKube
from tests.operator.conftest import dataflow_body
from tests.services import free_port

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
FLOW = FlowRecord(name="paid-orders", namespace="shop", spec=dataflow_body()["spec"])


@pytest.fixture
def kube() -> MemoryKube:
    k = MemoryKube()
    k.add(DATAFLOW, dataflow_body(successfulRunsHistoryLimit=2, failedRunsHistoryLimit=1))
    return k


def started(minute: int, **kw) -> RunRecord:
    at = T0 + timedelta(minutes=minute)
    base = dict(
        id=f"r{minute}", flow_name="paid-orders", namespace="shop", status="in_progress", trigger="schedule",
        run_name=f"paid-orders-{int(at.timestamp()) // 60}", scheduled_for=at, started_at=at,
    )
    return RunRecord(**(base | kw))


def finished(run: RunRecord, status: str = "success", **kw) -> RunRecord:
    end = run.started_at + timedelta(seconds=42)
    return run.replace(status=status, ended_at=end, duration_seconds=42.0, records_read=7, records_written=7, **kw)


def flow_status(kube: MemoryKube) -> dict:
    return kube.get(DATAFLOW, "shop", "paid-orders").get("status") or {}


def test_run_started_creates_a_running_dataflowrun_owned_by_the_flow(kube: MemoryKube) -> None:
    run = started(0)
    KubeReflector(kube).run_started(FLOW, run)
    obj = kube.get(DATAFLOWRUN, "shop", run.run_name)
    assert obj["spec"] == {"flow": "paid-orders", "trigger": "schedule", "scheduledFor": "2025-03-01T10:00:00Z"}
    assert obj["metadata"]["labels"]["activedataflow.io/flow"] == "paid-orders"
    owner = obj["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("DataFlow", "paid-orders", True)
    assert (obj["status"]["phase"], obj["status"]["startedAt"]) == ("Running", "2025-03-01T10:00:00Z")
    status = flow_status(kube)
    assert (status["lastRunName"], status["lastRunStatus"], status["activeRuns"]) == (run.run_name, "Running", 1)
    assert status["lastRunAt"] == "2025-03-01T10:00:00Z"


def test_run_finished_updates_the_run_and_the_flow_status(kube: MemoryKube) -> None:
    reflector, run = KubeReflector(kube, clock=lambda: T0), started(0)
    reflector.run_started(FLOW, run)
    done = finished(run)
    reflector.run_finished(FLOW, done, cursor="2025-03-01T09:59:00", next_run_at=T0 + timedelta(minutes=15))
    obj = kube.get(DATAFLOWRUN, "shop", run.run_name)["status"]
    assert (obj["phase"], obj["recordsRead"], obj["recordsWritten"], obj["durationSeconds"]) == ("Succeeded", 7, 7, 42)
    assert obj["finishedAt"] == "2025-03-01T10:00:42Z"
    status = flow_status(kube)
    assert (status["lastRunStatus"], status["succeeded"], status["activeRuns"]) == ("Succeeded", 1, 0)
    assert status["lastSuccessfulRunAt"] == "2025-03-01T10:00:42Z"
    assert status["cursor"] == "2025-03-01T09:59:00"
    assert status["nextRunAt"] == "2025-03-01T10:15:00Z"


def test_a_failed_run_carries_the_error_and_counts_as_failed(kube: MemoryKube) -> None:
    reflector, run = KubeReflector(kube), started(0)
    reflector.run_finished(FLOW, finished(run, "failed", error_message="orders: no such table"), cursor=None,
                           next_run_at=None)
    obj = kube.get(DATAFLOWRUN, "shop", run.run_name)["status"]
    assert (obj["phase"], obj["error"]["message"]) == ("Failed", "orders: no such table")
    status = flow_status(kube)
    assert (status["lastRunStatus"], status["failed"]) == ("Failed", 1)
    assert "succeeded" not in status and "lastSuccessfulRunAt" not in status


def test_reflecting_the_same_finish_twice_counts_once(kube: MemoryKube) -> None:
    reflector, run = KubeReflector(kube), started(0)
    reflector.run_finished(FLOW, finished(run), cursor=None, next_run_at=None)
    reflector.run_finished(FLOW, finished(run), cursor=None, next_run_at=None)
    assert flow_status(kube)["succeeded"] == 1
    assert kube.names(DATAFLOWRUN, "shop") == [run.run_name]


def test_counters_accumulate_over_runs(kube: MemoryKube) -> None:
    reflector = KubeReflector(kube)
    for minute, outcome in [(0, "success"), (15, "failed"), (30, "success")]:
        run = started(minute)
        reflector.run_started(FLOW, run)
        reflector.run_finished(FLOW, finished(run, outcome), cursor=None, next_run_at=None)
    status = flow_status(kube)
    assert (status["succeeded"], status["failed"]) == (2, 1)


def test_runs_beyond_the_history_limits_are_pruned_newest_kept(kube: MemoryKube) -> None:
    reflector = KubeReflector(kube)
    names = {}
    for minute, outcome in [(0, "success"), (1, "failed"), (2, "success"), (3, "failed"), (4, "success")]:
        run = started(minute)
        names[minute] = run.run_name
        reflector.run_finished(FLOW, finished(run, outcome), cursor=None, next_run_at=None)
    # successfulRunsHistoryLimit 2, failedRunsHistoryLimit 1
    assert kube.names(DATAFLOWRUN, "shop") == sorted([names[2], names[3], names[4]])


def test_a_flow_not_in_the_cluster_is_skipped(kube: MemoryKube) -> None:
    other = FlowRecord(name="elsewhere", namespace="shop", spec={})
    run = started(0, flow_name="elsewhere", run_name="elsewhere-1")
    KubeReflector(kube).run_started(other, run)
    KubeReflector(kube).run_finished(other, finished(run), cursor=None, next_run_at=None)
    assert kube.names(DATAFLOWRUN, "shop") == []


def test_reflection_errors_never_reach_the_run(kube: MemoryKube, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(MemoryKube):
        def get(self, *a, **kw):
            raise OSError("connection refused by https://u:pw@kube:6443")

    KubeReflector(Broken()).run_finished(FLOW, finished(started(0)), cursor=None, next_run_at=None)
    assert "could not reflect run" in caplog.text
    assert "pw@" not in caplog.text


def test_outside_a_cluster_reflection_is_off() -> None:
    assert isinstance(reflector_from_env({}), NullReflector)
    assert isinstance(reflector_from_env({"KUBECONFIG": "/x", "ADF_REFLECT": "0"}), NullReflector)


def unreachable_kubeconfig(path: Path) -> str:
    """A kubeconfig for an API server address where nothing listens; returns the address."""
    server = f"https://127.0.0.1:{free_port()}"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    return server


def test_an_unreachable_api_server_turns_reflection_off_quickly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable_kubeconfig(tmp_path / "config")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    began = time.monotonic()
    assert isinstance(reflector_from_env(), NullReflector)
    assert time.monotonic() - began < 5


def test_a_heartbeat_flows_next_run_is_the_heartbeat_tick_that_will_run_it(kube: MemoryKube) -> None:
    # due at 10:07 (interval 7m), run by the shared CronJob '*/5 * * * *': the operator says 10:10, and so
    # does the runner (it wrote the store's 10:07 before, and the status flipped between the two)
    spec = dataflow_body()["spec"] | {"interval": "7m", "runtime": {"type": "heartbeat"}}
    spec.pop("schedule")
    flow = FlowRecord(name="paid-orders", namespace="shop", spec=spec)
    reflector = KubeReflector(kube, clock=lambda: T0, heartbeat_schedule="*/5 * * * *")
    reflector.run_finished(flow, finished(started(0)), cursor=None, next_run_at=T0 + timedelta(minutes=7))
    assert flow_status(kube)["nextRunAt"] == "2025-03-01T10:10:00Z"


def test_a_suspended_flows_next_run_is_cleared(kube: MemoryKube) -> None:
    flow = FlowRecord(name="paid-orders", namespace="shop", spec=dataflow_body()["spec"] | {"suspend": True})
    KubeReflector(kube, clock=lambda: T0).run_finished(flow, finished(started(0)), cursor=None,
                                                       next_run_at=T0 + timedelta(minutes=15))
    assert "nextRunAt" not in flow_status(kube) or flow_status(kube)["nextRunAt"] is None


def test_catch_up_reflects_a_finished_run_kubernetes_never_saw_and_counts_it_once(kube: MemoryKube) -> None:
    run = finished(started(0))  # its runner could not reach the API server at all
    reflector = KubeReflector(kube)
    reflector.catch_up(FLOW, [run], cursor=None, next_run_at=None)
    reflector.catch_up(FLOW, [run], cursor=None, next_run_at=None)  # the runner after that one
    assert kube.get(DATAFLOWRUN, "shop", run.run_name)["status"]["phase"] == "Succeeded"
    status = flow_status(kube)
    assert (status["lastRunName"], status["lastRunStatus"], status["succeeded"]) == (run.run_name, "Succeeded", 1)


def test_catch_up_finishes_a_dataflowrun_left_running(kube: MemoryKube) -> None:
    reflector, run = KubeReflector(kube), started(0)
    reflector.run_started(FLOW, run)  # then the API server went away before run_finished
    reflector.catch_up(FLOW, [finished(run, "failed", error_message="sink: gone")], cursor=None, next_run_at=None)
    assert kube.get(DATAFLOWRUN, "shop", run.run_name)["status"]["phase"] == "Failed"
    status = flow_status(kube)
    assert (status["lastRunStatus"], status["failed"], status["activeRuns"]) == ("Failed", 1, 0)


def test_catch_up_does_not_bring_back_a_run_pruned_by_the_history_limits(kube: MemoryKube) -> None:
    reflector, old, new = KubeReflector(kube), finished(started(0)), finished(started(5))
    reflector.run_started(FLOW, started(5))
    reflector.run_finished(FLOW, new, cursor=None, next_run_at=None)
    reflector.catch_up(FLOW, [new, old], cursor=None, next_run_at=None)  # old: absent, older than the status
    assert kube.get(DATAFLOWRUN, "shop", old.run_name) is None
    assert flow_status(kube)["succeeded"] == 1
