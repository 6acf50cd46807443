"""The heartbeat: run every flow that is due (what the CronJobs and `adf serve` call).

A flow never run before is due. Runs whose runner died (lease expired) are
failed first, which makes their flows due again. With ``flow`` (what a flow's
Job runs) a run of it whose runner died is taken over as its slot's next attempt,
so the Job's replacement for a Pod that died runs the slot instead of finding the
flow not due.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..errors import UnknownFlow, redact
from ..store.base import FlowRecord, RunRecord, Store, Trigger
from ..store.common import is_lease_lapsed
from ..store.probe import nothing_due

if TYPE_CHECKING:  # the executor (so the model, SQLAlchemy...) is imported only when a flow runs
    from .executor import FlowExecutor, RunOutcome

log = logging.getLogger("activedataflow.heartbeat")

__all__ = ["HeartbeatResult", "heartbeat", "idle_heartbeat"]


@dataclass
class HeartbeatResult:
    timestamp: datetime
    flows_due: int = 0
    outcomes: list[RunOutcome] = field(default_factory=list)
    reaped: int = 0

    @property
    def flows_triggered(self) -> int:
        return sum(1 for o in self.outcomes if o.run is not None)

    @property
    def failed(self) -> bool:
        return any(o.failed for o in self.outcomes)

    def as_json(self) -> dict[str, object]:
        return {
            "flows_due": self.flows_due,
            "flows_triggered": self.flows_triggered,
            "timestamp": self.timestamp.isoformat(),
        }


def heartbeat(
    executor: FlowExecutor,
    *,
    namespace: str | None = None,
    flow: str | None = None,
    force: bool = False,
    trigger: Trigger = "heartbeat",
    run_name: str | None = None,
    tick: datetime | None = None,
) -> HeartbeatResult:
    """Run the due flows (or the one named ``flow``; with ``force`` even if not due).

    ``run_name`` (with ``flow`` and ``force``: a run-now Job's ``ADF_RUN_NAME``) names the run,
    so a second runner for the same request finds it already there and runs nothing.

    With ``flow`` and the flow not due, a run of it whose runner died (its lease lapsed, now or
    after waiting while it is neither renewed nor lapsed) is taken over as its slot's next
    attempt (:meth:`FlowExecutor.take_over`): this is the Job's replacement for a Pod that died.

    ``tick`` (with ``flow``: the tick the CronJob started this Job for, from ``ADF_JOB_NAME``) runs
    that tick's run unless it exists already (:meth:`FlowExecutor.run`), due or not.
    """
    if run_name is not None and (flow is None or not force):
        raise ValueError("run_name names the run of one forced flow")
    if tick is not None and (flow is None or force):
        raise ValueError("tick is the CronJob's tick of one scheduled flow")
    from ..schedule import utcnow

    store: Store = executor.store
    now = utcnow()
    result = HeartbeatResult(timestamp=now)
    record, due_before = None, False
    if flow is not None:
        ns = namespace or "default"
        record = store.get_flow(flow, ns)
        if record is None:
            raise UnknownFlow(f"flow '{flow}' not found in namespace '{ns}' of the store {store.url_for_display}")
        # (before reaping makes a dead runner's flow due)
        due_before = force or tick is not None or _is_due(store, record, now)
    lost = reaped = _reap(executor, result, now)
    if record is None:
        due = store.due_flows(now, namespace)
    elif due_before:
        due = [store.get_flow(record.name, record.namespace) or record]
    else:
        lost = [r for r in lost if r.flow_name == record.name and r.namespace == ns]
        if not lost and _lapsed_runs(executor, record):
            lost = [r for r in _reap(executor, result, utcnow()) if r.flow_name == record.name and r.namespace == ns]
        if lost:
            result.flows_due = 1
            slot_run = max(lost, key=lambda r: r.created_at or now)
            outcome = executor.take_over(store.get_flow(record.name, record.namespace) or record, slot_run)
            _log_skip(outcome)
            result.outcomes.append(outcome)
        _notify_lost(executor, reaped)
        return result
    result.flows_due = len(due)
    for record in due:
        outcome = executor.run(
            record, trigger="manual" if force else trigger, force=force, run_name=run_name, resume=flow is not None,
            tick=tick,
        )
        _log_skip(outcome)
        result.outcomes.append(outcome)
    _notify_lost(executor, reaped)
    return result


def idle_heartbeat(store_url: str, namespace: str | None = None) -> HeartbeatResult | None:
    """The result of a heartbeat (of every flow, not forced) that certainly finds nothing to do, learnt
    without opening the store where the store can tell cheaply (:func:`~activedataflow.store.probe.nothing_due`);
    None otherwise: open the store and call :func:`heartbeat`, which decides."""
    now = datetime.now(UTC)
    return HeartbeatResult(timestamp=now) if nothing_due(store_url, now, namespace) else None


def _reap(executor: FlowExecutor, result: HeartbeatResult, now: datetime) -> list[RunRecord]:
    """Fail the runs whose runner died (lease lapsed), which makes their flows due again."""
    reaped = executor.store.reap_expired(now)
    result.reaped += len(reaped)
    for run in reaped:
        log.warning("run %s of %s/%s failed: %s", run.run_name, run.namespace, run.flow_name, run.error_message)
        executor.reflect_lost(run)
    return reaped


def _notify_lost(executor: FlowExecutor, reaped: list[RunRecord]) -> None:
    """Once the runs of this heartbeat are done (a take-over continues a lost run's slot, so it is not told of
    as a failure): the notifications of the flows whose runs were reaped."""
    if not reaped:
        return
    from .executor import dataflow_from_record

    for name, namespace in sorted({(r.flow_name, r.namespace) for r in reaped}):
        try:
            if (record := executor.store.get_flow(name, namespace)) is not None:
                executor.notify_lost(dataflow_from_record(record))
        except Exception as err:  # a notification never fails a heartbeat
            log.warning("notifications of the lost runs of %s/%s not sent: %s", namespace, name, redact(str(err)))


def _log_skip(outcome: RunOutcome) -> None:
    if outcome.skipped:
        log.info("flow %s/%s skipped: %s", outcome.namespace, outcome.flow, outcome.skipped)


def _is_due(store: Store, record: FlowRecord, now: datetime) -> bool:
    return any(f.key == record.key for f in store.due_flows(now, record.namespace))


def _lapsed_runs(executor: FlowExecutor, record: FlowRecord) -> bool:
    """Whether an active run of the flow held by another runner turned out dead: its lease lapsed
    unrenewed while we waited (:meth:`FlowExecutor.await_settled`)."""
    settled = [executor.await_settled(r) for r in executor.store.active_runs(record.name, record.namespace)]
    now = datetime.now(UTC)
    return any(is_lease_lapsed(r, now) for r in settled)
