"""Ready conditions and the DataFlowRun status of a run record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from activedataflow.kube.status import BACKTRACE_LIMIT, Condition, dataflowrun_status, set_condition
from activedataflow.store.base import RunRecord

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def cond(type: str, status: str, reason: str, message: str) -> Condition:
    return Condition(type=type, status=status, reason=reason, message=message)  # type: ignore[arg-type]


def test_new_condition_gets_a_transition_time_and_generation() -> None:
    (ready,) = set_condition(None, cond("Ready", "True", "Reconciled", "ok"), generation=3, now=T0)
    assert ready == {
        "type": "Ready",
        "status": "True",
        "reason": "Reconciled",
        "message": "ok",
        "lastTransitionTime": "2025-01-01T12:00:00Z",
        "observedGeneration": 3,
    }


def test_transition_time_is_kept_while_status_does_not_flip() -> None:
    first = set_condition(None, cond("Ready", "False", "StorageUnavailable", "down"), generation=1, now=T0)
    again = set_condition(first, cond("Ready", "False", "InvalidSpec", "spec.x: bad"), generation=2, now=T1)
    assert again[0]["lastTransitionTime"] == "2025-01-01T12:00:00Z"
    assert (again[0]["reason"], again[0]["observedGeneration"]) == ("InvalidSpec", 2)


def test_transition_time_changes_when_status_flips() -> None:
    first = set_condition(None, cond("Ready", "False", "StorageUnavailable", "down"), generation=1, now=T0)
    flipped = set_condition(first, cond("Ready", "True", "Reconciled", "ok"), generation=1, now=T1)
    assert flipped[0]["lastTransitionTime"] == "2025-01-01T12:05:00Z"


def test_other_conditions_are_kept() -> None:
    other = [{"type": "Stalled", "status": "False", "reason": "x", "message": "", "lastTransitionTime": "t"}]
    out = set_condition(other, cond("Ready", "True", "Reconciled", "ok"), generation=1, now=T0)
    assert [c["type"] for c in out] == ["Ready", "Stalled"]
    assert out[1] == other[0]


def test_condition_messages_are_redacted() -> None:
    msg = "cannot reach the store at postgresql://adf:hunter2@db:5432/adf"
    (ready,) = set_condition(None, cond("Ready", "False", "StorageUnavailable", msg), generation=1, now=T0)
    assert "hunter2" not in ready["message"]
    assert "postgresql://adf:***@db:5432/adf" in ready["message"]


def run(**kw) -> RunRecord:
    base = dict(id="r1", flow_name="f", namespace="ns", status="success", run_name="f-100", attempt=1)
    return RunRecord(**(base | kw))


def test_succeeded_run_status() -> None:
    status = dataflowrun_status(
        run(started_at=T0, ended_at=T1, duration_seconds=300.0, records_read=10, records_written=9, records_failed=1)
    )
    assert status == {
        "phase": "Succeeded",
        "trigger": "schedule",
        "attempt": 1,
        "recordsRead": 10,
        "recordsWritten": 9,
        "recordsFailed": 1,
        "startedAt": "2025-01-01T12:00:00Z",
        "finishedAt": "2025-01-01T12:05:00Z",
        "durationSeconds": 300.0,
    }


def test_phases_follow_the_run_lifecycle() -> None:
    assert dataflowrun_status(run(status="pending"))["phase"] == "Pending"
    assert dataflowrun_status(run(status="in_progress", started_at=T0))["phase"] == "Running"
    assert "error" not in dataflowrun_status(run(status="in_progress"))


def test_failed_run_carries_a_redacted_message_and_a_bounded_backtrace() -> None:
    trace = "Traceback\n" + "x" * 10_000 + "\nOperationalError: postgresql://u:pw@h/db refused"
    failed = run(status="failed", error_message="connect postgresql://u:pw@h/db", error_backtrace=trace)
    status = dataflowrun_status(failed)
    assert status["phase"] == "Failed"
    assert status["error"]["message"] == "connect postgresql://u:***@h/db"
    assert len(status["error"]["backtrace"]) <= BACKTRACE_LIMIT
    assert status["error"]["backtrace"].endswith("OperationalError: postgresql://u:***@h/db refused")
