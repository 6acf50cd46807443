"""What the operator and the runner write into ``status``: conditions and run reflections.

Pure functions over plain dicts. Conditions follow the Kubernetes convention
(``metav1.Condition``): ``lastTransitionTime`` changes only when ``status`` flips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ..errors import redact
from ..store.base import ERROR_MESSAGE_LIMIT, RunRecord
from .kube import rfc3339

__all__ = [
    "BACKTRACE_LIMIT",
    "PHASES",
    "Condition",
    "dataflowrun_status",
    "phase_of",
    "set_condition",
]

READY = "Ready"
BACKTRACE_LIMIT = 4096  # characters of a backtrace kept on a DataFlowRun (the tail)
PHASES: dict[str, str] = {
    "pending": "Pending",
    "in_progress": "Running",
    "success": "Succeeded",
    "failed": "Failed",
}
ACTIVE_PHASES = frozenset({"Pending", "Running"})

# Ready=False reasons a user sees
INVALID_SPEC = "InvalidSpec"
STORAGE_UNAVAILABLE = "StorageUnavailable"
KUBERNETES_ERROR = "KubernetesError"
RECONCILED = "Reconciled"
SUSPENDED = "Suspended"


@dataclass(frozen=True)
class Condition:
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str


def set_condition(
    current: Sequence[Mapping[str, Any]] | None,
    new: Condition,
    *,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """``current`` with ``new`` put in place of the condition of its type.

    ``lastTransitionTime`` is kept when the status did not change; other
    condition types are kept as they are. Messages are redacted.
    """
    previous = next((c for c in current or () if c.get("type") == new.type), None)
    changed = previous is None or previous.get("status") != new.status
    entry: dict[str, Any] = {
        "type": new.type,
        "status": new.status,
        "reason": new.reason,
        "message": redact(new.message)[:ERROR_MESSAGE_LIMIT],
        "lastTransitionTime": rfc3339(now) if changed else previous.get("lastTransitionTime") or rfc3339(now),
    }
    if generation is not None:
        entry["observedGeneration"] = generation
    others = [dict(c) for c in current or () if c.get("type") != new.type]
    return sorted([*others, entry], key=lambda c: c["type"])


def condition(conditions: Sequence[Mapping[str, Any]] | None, type: str = READY) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type), None)


def phase_of(run: RunRecord) -> str:
    return PHASES[run.status]


def dataflowrun_status(run: RunRecord) -> dict[str, Any]:
    """The DataFlowRun ``status`` of a run record (error message and bounded backtrace on failure)."""
    status: dict[str, Any] = {
        "phase": phase_of(run),
        "trigger": run.trigger,
        "attempt": run.attempt,
        "recordsRead": run.records_read,
        "recordsWritten": run.records_written,
        "recordsFailed": run.records_failed,
    }
    if run.started_at is not None:
        status["startedAt"] = rfc3339(run.started_at)
    if run.ended_at is not None:
        status["finishedAt"] = rfc3339(run.ended_at)
    if run.duration_seconds is not None:
        status["durationSeconds"] = round(run.duration_seconds, 3)
    if run.status == "failed":
        error: dict[str, Any] = {"message": redact(run.error_message or "failed")[:ERROR_MESSAGE_LIMIT]}
        if run.error_backtrace:
            trace = redact(run.error_backtrace)
            error["backtrace"] = trace if len(trace) <= BACKTRACE_LIMIT else "...\n" + trace[-(BACKTRACE_LIMIT - 4) :]
        status["error"] = error
    return status
