"""The storage interface: flow records and run records, one interface for every backend.

A backend is chosen by URL (:func:`activedataflow.store.open_store`):
``sqlite:///adf.db`` (default), ``postgresql+psycopg://``, ``mysql+pymysql://``
(SQL through SQLAlchemy, schema by Alembic), ``redis://`` and ``memory://``
(fakeredis emulator).

Run lifecycle (the Rails FlowExecutor's): ``pending -> in_progress -> success | failed``;
``pending -> failed`` (never started) is also legal. Anything else raises
:class:`~activedataflow.errors.IllegalTransition`.

Concurrency: :meth:`Store.claim` is the only way a run record is created. It is
atomic on every backend: under ``Forbid`` (and ``Replace``, which the runner
turns into a cancel-then-claim) at most one *active* run (pending or in_progress
with an unexpired lease) exists per flow. A runner renews its lease while it
works; a run whose lease expired (its runner died) is failed by
:meth:`Store.reap_expired` and the flow becomes due again.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

RunStatus = Literal["pending", "in_progress", "success", "failed"]
Trigger = Literal["schedule", "manual", "heartbeat"]

ACTIVE_STATUSES: frozenset[str] = frozenset({"pending", "in_progress"})
FINAL_STATUSES: frozenset[str] = frozenset({"success", "failed"})
TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"in_progress", "failed"}),
    "in_progress": frozenset({"success", "failed"}),
    "success": frozenset(),
    "failed": frozenset(),
}
BACKTRACE_LIMIT = 8192  # characters of error_backtrace kept (the tail, where the error is)
ERROR_MESSAGE_LIMIT = 2048


class UnknownRun(LookupError):
    """No run record with that id exists in the store (a programming error, not a user's)."""


def check_transition(current: str, new: str) -> None:
    from ..errors import IllegalTransition

    if new not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"run cannot go from {current} to {new}")


def bound_backtrace(text: str | None) -> str | None:
    if text is None or len(text) <= BACKTRACE_LIMIT:
        return text
    return "...\n" + text[-(BACKTRACE_LIMIT - 4) :]


@dataclass(frozen=True)
class FlowRecord:
    """A stored flow. ``spec`` is the DataFlow spec as JSON (secrets are only references)."""

    name: str
    namespace: str
    spec: dict[str, Any]
    description: str = ""
    enabled: bool = True
    schedule: str | None = None
    interval_seconds: int | None = None
    time_zone: str | None = None
    concurrency_policy: str = "Forbid"
    last_run_at: datetime | None = None
    last_run_status: str | None = None
    next_run_at: datetime | None = None  # None: never run -> due now
    cursor: Any = None  # JSON value; committed only after the sink committed the rows
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class FlowKey:
    """A stored flow's address and whether it is enabled: what :meth:`Store.flow_keys` reads instead of
    whole records (no spec decoded: the operator's start-up sweep over thousands of flows)."""

    namespace: str
    name: str
    enabled: bool

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class RunRecord:
    id: str  # opaque, unique across the store
    flow_name: str
    namespace: str
    status: RunStatus
    trigger: Trigger = "schedule"
    attempt: int = 1
    run_name: str | None = None  # the DataFlowRun resource name (<flow>-<unix minutes>)
    scheduled_for: datetime | None = None  # the slot this run is for
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: float | None = None
    error_message: str | None = None
    error_backtrace: str | None = None
    records_read: int = 0
    records_written: int = 0
    records_failed: int = 0
    runner_id: str | None = None
    lease_expires_at: datetime | None = None
    created_at: datetime | None = None

    def replace(self, **changes: Any) -> RunRecord:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Counts:
    records_read: int = 0
    records_written: int = 0
    records_failed: int = 0


@dataclass
class FlowUpsert:
    """What :meth:`Store.upsert_flow` writes; built from a DataFlow by ``FlowUpsert.from_dataflow``."""

    name: str
    namespace: str
    spec: dict[str, Any]
    description: str = ""
    enabled: bool = True
    schedule: str | None = None
    interval_seconds: int | None = None
    time_zone: str | None = None
    concurrency_policy: str = "Forbid"
    next_run_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dataflow(cls, flow: Any, *, next_run_at: datetime | None = None) -> FlowUpsert:
        spec = flow.spec
        return cls(
            name=flow.name,
            namespace=flow.namespace,
            spec=flow.spec_dict(),
            description=spec.description,
            enabled=not spec.suspend,
            schedule=spec.schedule,
            interval_seconds=spec.interval_seconds,
            time_zone=spec.timeZone,
            concurrency_policy=spec.concurrencyPolicy,
            next_run_at=next_run_at,
        )


class Store(abc.ABC):
    """One storage backend. Thread-safe; one instance per process is enough.

    All datetimes in and out are timezone-aware UTC.
    """

    url_for_display: str  # the URL with the password masked

    # ----------------------------------------------------------------- lifecycle
    @abc.abstractmethod
    def migrate(self) -> None:
        """Create or upgrade the schema (Alembic for SQL). Idempotent."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable (naming the address) if the backend cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # ----------------------------------------------------------------- flows
    @abc.abstractmethod
    def upsert_flow(self, flow: FlowUpsert) -> FlowRecord:
        """Create or update by (namespace, name). Keeps last_run_*, cursor and history.

        ``next_run_at``: if given it replaces the stored value; if None the stored
        value is kept (None for a new flow: never run, so due now).
        """

    @abc.abstractmethod
    def get_flow(self, name: str, namespace: str = "default") -> FlowRecord | None: ...

    @abc.abstractmethod
    def list_flows(self, namespace: str | None = None) -> list[FlowRecord]:
        """Ordered by namespace, name. ``None``: all namespaces."""

    @abc.abstractmethod
    def flow_keys(self, namespace: str | None = None) -> list[FlowKey]:
        """What :meth:`list_flows` lists, as addresses and enabled flags only, in the same order."""

    @abc.abstractmethod
    def set_enabled(self, name: str, namespace: str, enabled: bool) -> None:
        """Disable (e.g. on DataFlow deletion, history kept) or re-enable. UnknownFlow if missing."""

    @abc.abstractmethod
    def delete_flow(self, name: str, namespace: str = "default") -> bool:
        """Remove the flow and its runs. True if it existed."""

    @abc.abstractmethod
    def due_flows(self, now: datetime, namespace: str | None = None) -> list[FlowRecord]:
        """Enabled flows with next_run_at NULL or <= now, oldest first."""

    @abc.abstractmethod
    def set_next_run(self, name: str, namespace: str, next_run_at: datetime | None) -> None: ...

    @abc.abstractmethod
    def commit_cursor(self, name: str, namespace: str, cursor: Any) -> None:
        """Persist the incremental cursor (JSON value). Call only after the sink committed."""

    # ----------------------------------------------------------------- runs
    @abc.abstractmethod
    def claim(
        self,
        name: str,
        namespace: str,
        *,
        now: datetime,
        runner_id: str,
        lease_seconds: float,
        trigger: Trigger = "schedule",
        run_name: str | None = None,
        scheduled_for: datetime | None = None,
        next_run_at: datetime | None = None,
        require_due: bool = True,
        attempt: int = 1,
    ) -> RunRecord | None:
        """Atomically create a ``pending`` run for the flow, or return None.

        None when: the flow is disabled or unknown; ``require_due`` and the flow
        is not due at ``now``; or the flow's concurrency policy is not ``Allow``
        and another run is active with an unexpired lease; or ``run_name`` is
        given and a run of that name already exists (a second runner for the
        same slot). On success the flow's ``next_run_at`` becomes ``next_run_at``
        (if given; None keeps the stored value) in the same transaction, so other
        claimers no longer see it due. ``created_at`` of the run is ``now``.

        Active runs of the flow whose lease already expired are failed first (as
        :meth:`reap_expired` would), so a dead runner never blocks a new claim.
        A due claim (``require_due``) on PostgreSQL/MySQL skips a flow row that
        another runner is claiming at this instant (``SKIP LOCKED``) and returns None.
        """

    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunRecord | None: ...

    @abc.abstractmethod
    def start_run(self, run_id: str, *, now: datetime, lease_seconds: float) -> RunRecord:
        """pending -> in_progress; sets started_at and renews the lease.

        Like every run method: UnknownRun if no such run, IllegalTransition if the
        lifecycle forbids the change (e.g. the run was already failed by a reaper)."""

    @abc.abstractmethod
    def renew_lease(self, run_id: str, *, now: datetime, lease_seconds: float) -> bool:
        """Extend an active run's lease. False if the run is no longer active."""

    @abc.abstractmethod
    def finish_run(
        self,
        run_id: str,
        *,
        status: Literal["success", "failed"],
        now: datetime,
        counts: Counts,
        error_message: str | None = None,
        error_backtrace: str | None = None,
        cursor: Any = None,
        commit_cursor: bool = False,
    ) -> RunRecord:
        """in_progress|pending -> success|failed. Sets ended_at, duration (since started_at;
        None if never started), counts, clears the lease, and sets the flow's
        last_run_at (the run's started_at, else ``now``) and last_run_status; with
        ``commit_cursor`` also the flow cursor, in the same transaction. Backtrace is
        bounded (:func:`bound_backtrace`), error_message to ERROR_MESSAGE_LIMIT."""

    @abc.abstractmethod
    def update_counts(self, run_id: str, counts: Counts) -> None:
        """Progress of an in_progress run (for status reflection). IllegalTransition otherwise."""

    @abc.abstractmethod
    def active_runs(self, name: str, namespace: str) -> list[RunRecord]:
        """Pending and in_progress runs of the flow, oldest first (whether or not their lease expired)."""

    @abc.abstractmethod
    def list_runs(
        self, name: str | None = None, namespace: str | None = None, *, limit: int = 50
    ) -> list[RunRecord]:
        """Newest first (by created_at, then by claim order), at most ``limit`` (below 1: none). ``None``
        filters nothing."""

    @abc.abstractmethod
    def reap_expired(self, now: datetime) -> list[RunRecord]:
        """Fail every active run whose lease expired (its runner died) with a clear error
        message; make its flow due again (next_run_at = now). Returns the failed runs."""

    @abc.abstractmethod
    def prune_runs(self, name: str, namespace: str, *, keep_success: int, keep_failed: int) -> int:
        """Delete final runs beyond the newest ``keep_*`` of each status. Returns the count."""

    @abc.abstractmethod
    def mark_notified(self, run_id: str, *, now: datetime) -> bool:
        """Claim the sending of run ``run_id``'s notifications (``spec.notify``): atomically record
        that it was notified, at ``now``, unless it already was. True only for the one caller that
        set the mark (SQL: ``UPDATE ... WHERE notified_at IS NULL``; Redis: ``HSETNX``), so a
        restarted or second runner finding the same finished run sends nothing again. UnknownRun
        if no such run."""
