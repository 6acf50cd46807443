"""What the operator and the runner write into ``status``: the models and their builders.

The DataFlow status and the DataFlowRun are pydantic models (:class:`DataFlowStatus`,
:class:`DataFlowRunSpec`, :class:`DataFlowRunStatus`); the CRDs are generated from them
(``operator/crdgen.py``) and every status write is built through them here, so what is
written is what the API server accepts. Conditions follow the Kubernetes convention
(``metav1.Condition``): ``lastTransitionTime`` changes only when ``status`` flips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from ..errors import redact
from ..store.base import BACKTRACE_LIMIT, ERROR_MESSAGE_LIMIT, RunRecord, Trigger, bound_backtrace
from .client import rfc3339

__all__ = [
    "ACTIVE_PHASES",
    "BACKTRACE_LIMIT",
    "PHASES",
    "Condition",
    "DataFlowRunSpec",
    "DataFlowRunStatus",
    "DataFlowStatus",
    "RunError",
    "condition",
    "dataflowrun_status",
    "phase_of",
    "set_condition",
]

# A time in a status: RFC 3339 in UTC to the second, as Kubernetes writes its own.
Time = Annotated[datetime, PlainSerializer(rfc3339, return_type=str, when_used="json")]

RunPhase = Literal["Pending", "Running", "Succeeded", "Failed"]


# --------------------------------------------------------------------------- status and DataFlowRun models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def body(self) -> dict[str, Any]:
        """The JSON a status patch sends: the fields set (an explicit None clears one), times in RFC 3339."""
        return self.model_dump(mode="json", exclude_unset=True)


class Condition(_Model):
    """A Kubernetes-style condition (as metav1.Condition)."""

    type: str = Field(min_length=1, max_length=316, description="for example Ready")
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(default="", max_length=1024, description="CamelCase reason, for example InvalidSpec")
    message: str = Field(default="", max_length=32768)
    lastTransitionTime: Time | None = None
    observedGeneration: int | None = Field(default=None, ge=0)


class DataFlowStatus(_Model):
    """Written by the operator and the runner, never by the user."""

    observedGeneration: int | None = Field(default=None, ge=0, description="the generation last reconciled")
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    lastRunName: str | None = Field(default=None, description="the DataFlowRun of the latest run")
    lastRunStatus: RunPhase | None = Field(default=None, description="phase of the latest run")
    lastRunAt: Time | None = Field(default=None, description="when the latest run started")
    lastSuccessfulRunAt: Time | None = None
    nextRunAt: Time | None = Field(default=None, description="when the flow is next due")
    activeRuns: int | None = Field(default=None, ge=0, description="runs in progress")
    succeeded: int | None = Field(default=None, ge=0, description="runs that succeeded")
    failed: int | None = Field(default=None, ge=0, description="runs that failed")
    cursor: Any = Field(default=None, description="incremental flows: the last committed cursor")
    lastHandledRunNow: str | None = Field(
        default=None, description="the activedataflow.io/run-now annotation value the operator last acted on"
    )
    lastHandledConfiguration: str | None = Field(
        default=None,
        description="the operator's bookkeeping: the DataFlow as it last handled it (kopf's diff base, JSON)",
    )


class DataFlowRunSpec(_Model):
    flow: str = Field(min_length=1, description="name of the DataFlow (same namespace)")
    scheduledFor: Time | None = Field(default=None, description="the schedule slot this run is for")
    trigger: Trigger = "schedule"


class RunError(_Model):
    message: str = ""
    backtrace: str | None = Field(default=None, max_length=BACKTRACE_LIMIT, description="bounded traceback")


class DataFlowRunStatus(_Model):
    phase: RunPhase = "Pending"
    startedAt: Time | None = None
    finishedAt: Time | None = None
    durationSeconds: float | None = Field(default=None, ge=0)
    recordsRead: int | None = Field(default=None, ge=0)
    recordsWritten: int | None = Field(default=None, ge=0)
    recordsFailed: int | None = Field(default=None, ge=0)
    attempt: int | None = Field(default=None, ge=1)
    trigger: Trigger | None = None
    error: RunError | None = None



READY = "Ready"
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
    previous = condition(current, new.type)
    entry = new.model_copy(
        update={"message": redact(new.message)[:ERROR_MESSAGE_LIMIT], "lastTransitionTime": now,
                "observedGeneration": generation}
    ).model_dump(mode="json", exclude_none=True)
    if previous is not None and previous.get("status") == new.status and previous.get("lastTransitionTime"):
        entry["lastTransitionTime"] = previous["lastTransitionTime"]
    others = [dict(c) for c in current or () if c.get("type") != new.type]
    return sorted([*others, entry], key=lambda c: c["type"])


def condition(conditions: Sequence[Mapping[str, Any]] | None, type: str = READY) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type), None)


def phase_of(run: RunRecord) -> str:
    return PHASES[run.status]


def dataflowrun_status(run: RunRecord) -> dict[str, Any]:
    """The DataFlowRun ``status`` of a run record (error message and bounded backtrace on failure)."""
    error = None
    if run.status == "failed":
        error = RunError(
            message=redact(run.error_message or "failed")[:ERROR_MESSAGE_LIMIT],
            backtrace=bound_backtrace(redact(run.error_backtrace)) if run.error_backtrace else None,
        )
    status = DataFlowRunStatus(
        phase=phase_of(run),  # type: ignore[arg-type]
        trigger=run.trigger,
        attempt=run.attempt,
        recordsRead=run.records_read,
        recordsWritten=run.records_written,
        recordsFailed=run.records_failed,
        startedAt=run.started_at,
        finishedAt=run.ended_at,
        durationSeconds=None if run.duration_seconds is None else round(run.duration_seconds, 3),
        error=error,
    )
    return status.model_dump(mode="json", exclude_none=True)


def dataflow_status(**fields: Any) -> dict[str, Any]:
    """A DataFlow status patch (the fields given; None clears one), checked against :class:`DataFlowStatus`."""
    return DataFlowStatus.model_validate(fields).body()
