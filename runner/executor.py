"""The FlowExecutor: one run of one flow, from claim to final status.

Lifecycle (the Rails FlowExecutor's): ``pending -> in_progress -> success | failed``.

1. **claim** the flow atomically in the store (under ``Forbid`` no second run of
   the flow can be active; under ``Replace`` the active run is failed first and
   its runner notices at its next lease renewal);
2. **start** the run (``in_progress``), keep its lease alive from a background
   thread while it works, and reflect it into Kubernetes when running there;
3. read the source batch by batch, transform, write to the sink; after every
   batch the sink checkpoints and, once it says the rows are durable, the
   incremental cursor covering them is committed to the store. A failed run
   therefore never skips rows, and a re-run with ``upsert`` duplicates nothing;
4. **finish**: ``success`` (with the final cursor in the same store
   transaction) or ``failed`` (sink rolled back, error message and a bounded
   backtrace recorded, secrets redacted).

Retries (``spec.runtime.retries``) run in-process: each attempt is its own run
record with ``attempt`` counting up, after ``backoffSeconds * 2**(n-1)``; the same
for CronJob flows, heartbeat flows and ``adf run``. In Kubernetes the runner's Job
does not retry a flow that failed (the CLI's exit 1), only a runner that died
(``operator/cronjob.py``, ``runner_job_failure_handling``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..errors import ConnectorError, IllegalTransition, StoreUnavailable, UserError, redact
from ..kube.names import attempt_name, manual_run_name, run_name_for
from ..model import DataFlow, parse_dataflow
from ..schedule import next_run, utcnow
from ..store.base import ACTIVE_STATUSES, Counts, FlowRecord, RunRecord, Store, Trigger, UnknownRun
from ..store.common import is_lease_lapsed, is_lease_lost
from .connectors import address_of
from .connectors.engines import attempt_engines
from .deadline import Deadline, RunTimedOut, current_deadline, run_deadline
from .notify import RECENT_RUNS as NOTIFY_RECENT_RUNS
from .notify import Notifier

if TYPE_CHECKING:
    from .connectors.base import Batch, SinkWriter
    from .plan import Plan
    from .reflect import Reflector
    from .transforms import Pipeline

log = logging.getLogger("activedataflow.runner")

__all__ = [
    "FlowExecutor",
    "Progress",
    "RunOutcome",
    "attempt_name",
    "dataflow_from_record",
    "manual_run_name",
    "run_name_for",
]


class Progress(Protocol):
    """Receives progress of one run (a terminal bar, log lines, or nothing)."""

    def started(self, flow: DataFlow, run: RunRecord) -> None: ...

    def advanced(self, read: int, written: int, failed: int) -> None: ...

    def finished(self, run: RunRecord) -> None: ...


class _NoProgress:
    def started(self, flow: DataFlow, run: RunRecord) -> None:
        pass

    def advanced(self, read: int, written: int, failed: int) -> None:
        pass

    def finished(self, run: RunRecord) -> None:
        pass


@dataclass
class RunOutcome:
    """What happened when a flow was asked to run."""

    flow: str
    namespace: str
    run: RunRecord | None = None  # the last attempt; None if not claimed
    skipped: str | None = None  # why nothing ran (not due, already running...)
    attempts: list[RunRecord] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.run is not None and self.run.status == "failed"


REPLACED = "replaced by a newer run"
SETTLE_POLL_SECONDS = 2.0  # how often a replaced runner looks whether the slot's lease was renewed or lapsed
CATCH_UP_RUNS = 5  # a runner's earlier runs it reflects again when Kubernetes missed them (reflect.catch_up)
RECENT_RUNS = 200  # runs looked through for the one a second runner found already there


def dataflow_from_record(record: FlowRecord) -> DataFlow:
    return parse_dataflow(
        {
            "apiVersion": "activedataflow.io/v1alpha1",
            "kind": "DataFlow",
            "metadata": {"name": record.name, "namespace": record.namespace},
            "spec": record.spec,
        },
        source=f"flow {record.namespace}/{record.name}",
    )


class _Lease:
    """Renews a run's lease from a daemon thread; ``lost`` is set if the store refuses."""

    def __init__(self, store: Store, run_id: str, seconds: float) -> None:
        self.store, self.run_id, self.seconds = store, run_id, seconds
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{run_id}", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                if not self.store.renew_lease(self.run_id, now=utcnow(), lease_seconds=self.seconds):
                    self.lost.set()
                    return
            except Exception as err:  # a store hiccup: keep trying until the lease would lapse
                log.warning("renewing lease of run %s failed: %s", self.run_id, redact(str(err)))


class RunAborted(Exception):
    pass


# Another runner finished this runner's run (concurrencyPolicy Replace, a take-over, a reaper): the lease
# thread sees it at its next renewal, the store at this runner's next write of the run, whichever is first.
TAKEN_OVER = "run aborted: its lease was taken over (replaced, or reaped as lost)"


class FlowExecutor:
    """Runs flows against one store. Thread-safe for different flows."""

    def __init__(
        self,
        store: Store,
        *,
        reflector: Reflector | None = None,
        runner_id: str | None = None,
        lease_seconds: float = 60.0,
        progress_factory: Callable[[], Progress] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.notifier = notifier or Notifier()
        self.reflector = reflector
        self.runner_id = runner_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_seconds = lease_seconds
        self.progress_factory = progress_factory or _NoProgress
        self.sleep = sleep

    # ------------------------------------------------------------------ public

    def register(self, flow: DataFlow) -> FlowRecord:
        """Store (create or update) the flow record of a DataFlow."""
        from ..store.registration import register_flow

        return register_flow(self.store, flow, now=utcnow())

    def run(
        self,
        record: FlowRecord,
        *,
        trigger: Trigger = "schedule",
        force: bool = False,
        run_name: str | None = None,
        resume: bool = False,
        tick: datetime | None = None,
    ) -> RunOutcome:
        """Run the flow if it is due (or ``force``), with retries. Never raises for a failed run.

        ``tick`` (the runner of a Job the CronJob controller started, :func:`tick_of_job`): the CronJob
        is the clock. The run is that tick's, ``<flow>-<tick in unix minutes>``, run unless a run of
        that name exists already, whatever the store's due time says (a DST change can move the
        store's slot and the CronJob's tick apart; ``startingDeadlineSeconds`` is then the controller's
        business). The store's next run is the CronJob's next tick.

        ``run_name`` names the (first attempt of the) run instead of :func:`run_name_for`: the
        run-now Job passes :func:`manual_run_name` of its annotation value. As for a scheduled
        slot, the store refuses a second run of that name, so a second runner for the same
        request runs nothing and says why (:attr:`RunOutcome.skipped`).

        ``resume`` (the runner of a Job, whose Pod may be a replacement for one that died): when
        the slot's run is there already, wait while its lease is neither renewed nor lapsed
        (:meth:`await_settled`), and go on with the slot's next attempt if its runner died (the
        lease lapsed) or died between attempts (failed with retries left). A run that succeeded,
        failed for good, or whose runner is alive is left alone.
        """
        flow = dataflow_from_record(record)
        outcome = RunOutcome(record.name, record.namespace)
        now = utcnow()
        if tick is not None and not force:
            return self._attempts(
                flow, record, outcome, base=run_name_for(flow.name, tick), slot=tick, trigger=trigger, force=True,
                attempt=1, resume=resume,
            )
        slot = now if force else (record.next_run_at or now)
        if not force and self._missed_deadline(flow, record, now):
            self.store.set_next_run(record.name, record.namespace, next_run(flow.spec, after=now, last_run_at=now))
            outcome.skipped = (
                f"missed the tick at {slot.isoformat()} by more than startingDeadlineSeconds "
                f"({flow.spec.startingDeadlineSeconds}s); waiting for the next one"
            )
            return outcome
        base = run_name or run_name_for(flow.name, slot, manual=force)
        return self._attempts(
            flow, record, outcome, base=base, slot=slot, trigger=trigger, force=force, attempt=1, resume=resume
        )

    def take_over(self, record: FlowRecord, lost: RunRecord) -> RunOutcome:
        """Go on with the slot of ``lost``, a run whose runner died (its lease lapsed), as its next
        attempt: same slot, same trigger, ``<its name>-<attempt + 1>``. What the replacement Pod of a
        flow's Job does when the dead runner's claim had already moved the flow's next run on."""
        flow = dataflow_from_record(record)
        name = lost.run_name or run_name_for(flow.name, lost.scheduled_for or utcnow())
        suffix = f"-{lost.attempt}"
        base = name[: -len(suffix)] if lost.attempt > 1 and name.endswith(suffix) else name
        return self._attempts(
            flow, record, RunOutcome(record.name, record.namespace), base=base,
            slot=lost.scheduled_for or utcnow(), trigger=lost.trigger, force=True, attempt=lost.attempt + 1,
            resume=True, taken_over=lost,
        )

    def _attempts(
        self,
        flow: DataFlow,
        record: FlowRecord,
        outcome: RunOutcome,
        *,
        base: str,
        slot: datetime,
        trigger: Trigger,
        force: bool,
        attempt: int,
        resume: bool,
        taken_over: RunRecord | None = None,
    ) -> RunOutcome:
        """Claim and execute attempts ``attempt``, ``attempt + 1`` ... of the run named ``base`` until
        one succeeds or retries are used up (one attempt at least)."""
        now = utcnow()
        retries = flow.spec.runtime.retries
        while True:
            name = attempt_name(base, attempt)
            run = self._claim(
                flow, record, trigger=trigger, force=force or attempt > 1, slot=slot, attempt=attempt, run_name=name,
            )
            if run is None:
                if not outcome.attempts:
                    previous = self._run_named(record, name) if resume else None
                    if previous is not None and (resumed := self._resume_after(previous, retries)) is not None:
                        attempt, taken_over = max(resumed, attempt + 1), previous
                        continue
                    outcome.skipped = self._why_not_claimed(record, now, name)
                break
            if taken_over is not None:
                self.reflect_lost(taken_over)
                taken_over = None
            run = self._execute(flow, run)
            outcome.run = run
            outcome.attempts.append(run)
            if run.status == "success" or attempt > retries.limit:
                break
            delay = retries.delay(attempt)
            log.info("flow %s/%s attempt %d failed; retrying in %ss", flow.namespace, flow.name, attempt, delay)
            self.sleep(delay)
            attempt += 1
            record = self.store.get_flow(record.name, record.namespace) or record
        return outcome

    def await_settled(self, run: RunRecord) -> RunRecord:
        """Wait while another runner's active ``run`` holds a lease that is neither renewed nor lapsed.

        A Job replaces a Pod once it has terminated, but the dead runner's lease runs on for up to
        its lease seconds. Returns the run as it then is: finished, still active with its lease
        lapsed (its runner died: the next claim fails it), or renewed (its runner is alive).
        """
        seen = run.lease_expires_at
        while run.status in ACTIVE_STATUSES and run.runner_id != self.runner_id and seen is not None:
            left = (seen - utcnow()).total_seconds()
            if left < 0:
                break
            self.sleep(min(left + 0.05, SETTLE_POLL_SECONDS))
            current = self.store.get_run(run.id)
            if current is None:
                break
            run = current
            if run.lease_expires_at != seen:
                break  # renewed: alive
        return run

    def reflect_lost(self, run: RunRecord) -> None:
        """Reflect a dead runner's run, failed by its lease (reaped, or taken over), into its DataFlowRun,
        which its runner left Running."""
        lost = self.store.get_run(run.id)
        current = self.store.get_flow(run.flow_name, run.namespace)
        if lost is not None and current is not None and is_lease_lost(lost):
            self._reflect("run_finished", current, lost, cursor=current.cursor, next_run_at=current.next_run_at)

    def _resume_after(self, previous: RunRecord, retries: Any) -> int | None:
        """The attempt a replaced runner goes on with after the slot's run ``previous``; None: leave the slot."""
        previous = self.await_settled(previous)
        if previous.status in ACTIVE_STATUSES:
            return previous.attempt + 1 if is_lease_lapsed(previous, utcnow()) else None
        if previous.status != "failed":
            return None
        if is_lease_lost(previous):
            return previous.attempt + 1
        if previous.attempt <= retries.limit and not (previous.error_message or "").startswith(REPLACED):
            # the rest of the backoff its runner did not wait out
            if previous.ended_at is not None:  # pragma: no branch - a failed run has ended_at (finish_run)
                due = previous.ended_at + timedelta(seconds=retries.delay(previous.attempt))
                if (left := (due - utcnow()).total_seconds()) > 0:
                    self.sleep(left)
            return previous.attempt + 1
        return None

    def notify_lost(self, flow: DataFlow, final: RunRecord | None = None) -> int:
        """Send ``spec.notify``'s failure notifications about the flow's recent runs that failed as lost (their
        runner died: reaped by a heartbeat, or failed by the next claim), as for any run that failed for good,
        then, given, about ``final`` (the run this runner just finished), from one listing of the runs.
        A lost run that a later attempt of its slot continues (a take-over) is not told of: as for a retried
        attempt, that attempt's outcome is. Once per run, whichever runner looks first and however many look
        at once (the store's mark); a runner killed before it looked leaves it to the flow's next heartbeat
        or run. Returns how many webhooks accepted one."""
        if not flow.spec.notify:
            return 0
        try:
            recent = self.store.list_runs(flow.name, flow.namespace, limit=NOTIFY_RECENT_RUNS)
        except Exception as err:  # a notification never fails a run
            log.warning("could not list the runs of %s/%s to notify: %s", flow.namespace, flow.name, redact(str(err)))
            recent = None
        sent = 0
        if recent is not None:
            lost = [run for run in recent[:CATCH_UP_RUNS] if is_lease_lost(run) and not _continued(run, recent)]
            sent = sum(self.notify(flow, run, recent) for run in lost)
        if final is not None:
            sent += self.notify(flow, final, recent)
        return sent

    def notify(self, flow: DataFlow, run: RunRecord, recent: Sequence[RunRecord] | None = None) -> int:
        """Send ``spec.notify``'s notifications about the finished ``run``: at most once per run, whichever
        runner asks (the store's mark decides, :mod:`activedataflow.runner.notify`); bounded in time, never
        raises. ``recent``: the flow's runs as ``list_runs`` just gave them, if the caller has them. Returns
        how many webhooks accepted one."""
        return self.notifier.notify(self.store, flow, run, recent)

    # ------------------------------------------------------------------ steps

    @staticmethod
    def _missed_deadline(flow: DataFlow, record: FlowRecord, now: datetime) -> bool:
        deadline = flow.spec.startingDeadlineSeconds
        if deadline is None or record.next_run_at is None:
            return False
        return now - record.next_run_at > timedelta(seconds=deadline)

    def _why_not_claimed(self, record: FlowRecord, now: datetime, run_name: str) -> str:
        current = self.store.get_flow(record.name, record.namespace)
        if current is None:
            return "flow no longer exists"
        if not current.enabled:
            return "flow is suspended or disabled"
        taken = self._run_named(record, run_name)
        if taken is not None:
            return f"run {run_name} for this slot already exists ({_describe(taken)})"
        if self.store.active_runs(record.name, record.namespace):
            return "another run of this flow is active (concurrencyPolicy Forbid)"
        if current.next_run_at is not None and current.next_run_at > now:
            return f"not due until {current.next_run_at.isoformat()}"
        return "claimed by another runner"

    def _run_named(self, record: FlowRecord, run_name: str) -> RunRecord | None:
        """The flow's run called ``run_name``, if it is among its recent runs (the store keeps
        ADF_KEEP_*_RUNS of each outcome)."""
        recent = self.store.list_runs(record.name, record.namespace, limit=RECENT_RUNS)
        return next((r for r in recent if r.run_name == run_name), None)

    def _claim(
        self,
        flow: DataFlow,
        record: FlowRecord,
        *,
        trigger: Trigger,
        force: bool,
        slot: datetime,
        attempt: int,
        run_name: str,
    ) -> RunRecord | None:
        now = utcnow()
        if flow.spec.concurrencyPolicy == "Replace":
            for active in self.store.active_runs(flow.name, flow.namespace):
                with contextlib.suppress(Exception):
                    self.store.finish_run(
                        active.id,
                        status="failed",
                        now=now,
                        counts=Counts(active.records_read, active.records_written, active.records_failed),
                        error_message=f"{REPLACED} (concurrencyPolicy Replace)",
                    )
        return self.store.claim(
            flow.name,
            flow.namespace,
            now=now,
            runner_id=self.runner_id,
            lease_seconds=self.lease_seconds,
            trigger=trigger,
            run_name=run_name,
            scheduled_for=slot,
            next_run_at=next_run(flow.spec, after=max(now, slot), last_run_at=now),
            require_due=not force,
            attempt=attempt,
        )

    def _catch_up(self, record: FlowRecord, run: RunRecord) -> None:
        """Before reflecting ``run``: reflect the flow's earlier runs that Kubernetes missed (the API server
        was unreachable when their runner reflected them), so the DataFlowRuns and the status catch up."""
        if self.reflector is None:
            return
        try:
            recent = [r for r in self.store.list_runs(record.name, record.namespace, limit=CATCH_UP_RUNS)
                      if r.id != run.id]
        except Exception as err:  # reflection never fails a run
            log.warning("could not list the runs to reflect: %s", redact(str(err)))
            return
        self._reflect("catch_up", record, recent, cursor=record.cursor, next_run_at=record.next_run_at)

    def _reflect(self, method: str, *args: Any, **kwargs: Any) -> None:
        if self.reflector is None:
            return
        try:
            reflect = getattr(self.reflector, method, None)
            if reflect is not None:  # a Reflector of its own may reflect only some of the steps
                reflect(*args, **kwargs)
        except Exception as err:  # reflection never fails a run
            log.warning("could not reflect run into Kubernetes: %s", redact(str(err)))

    def _execute(self, flow: DataFlow, run: RunRecord) -> RunRecord:
        progress = self.progress_factory()
        try:
            run = self.store.start_run(run.id, now=utcnow(), lease_seconds=self.lease_seconds)
        except UnknownRun as err:
            raise self._lost(run, err) from None
        record = self.store.get_flow(flow.name, flow.namespace)
        if record is None:
            raise self._lost(run, f"its flow {flow.namespace}/{flow.name} is gone")
        self._catch_up(record, run)
        self._reflect("run_started", record, run)
        progress.started(flow, run)
        counts = Counts()
        cursor: Any = record.cursor
        deadline: Deadline | None = None
        try:
            with _Lease(self.store, run.id, self.lease_seconds) as lease, \
                    run_deadline(flow.spec.runtime.timeoutSeconds) as deadline, attempt_engines():
                counts, cursor = self._move_rows(flow, run, record.cursor, progress, lease)
            final = self._finish(run, "success", counts=counts, cursor=cursor, commit_cursor=True)
        except Exception as err:
            counts = getattr(err, "counts", counts)
            if deadline is not None and (deadline.expired() or isinstance(err, RunTimedOut)):
                message = redact(deadline.reason())  # whatever the driver said when its statement was stopped
            else:
                message = redact(str(err) if isinstance(err, UserError | RunAborted)
                                 else f"{type(err).__name__}: {err}")
            final = self._finish(
                run,
                "failed",
                counts=counts,
                error_message=message or type(err).__name__,
                error_backtrace=redact(traceback.format_exc()),
            )
            log.error("flow %s/%s run %s failed: %s", flow.namespace, flow.name, final.run_name, message)
        progress.finished(final)
        record = self.store.get_flow(flow.name, flow.namespace) or record
        self._reflect("run_finished", record, final, cursor=record.cursor, next_run_at=record.next_run_at)
        # an earlier run whose runner died first (a reaper that died never told of it), then this one unless it
        # is a retried attempt
        told = final.status == "success" or final.attempt > flow.spec.runtime.retries.limit
        self.notify_lost(flow, final if told else None)
        with contextlib.suppress(Exception):
            self.store.prune_runs(
                flow.name, flow.namespace, keep_success=_history("ADF_KEEP_SUCCESSFUL_RUNS", 100),
                keep_failed=_history("ADF_KEEP_FAILED_RUNS", 100),
            )
        return final

    def _lost(self, run: RunRecord, why: object) -> StoreUnavailable:
        """The store no longer has the run it is running (a Redis restarted without persistence, a
        database restored from a backup): nothing can be recorded; the operator registers the flow again."""
        return StoreUnavailable(
            f"the store at {self.store.url_for_display} lost run {run.id} of {run.namespace}/{run.flow_name} "
            f"while it ran ({why}); was it restarted without persistence?"
        )

    def _finish(self, run: RunRecord, status: Literal["success", "failed"], **kwargs: Any) -> RunRecord:
        """``finish_run``, answered once even when its answer was lost: the store committed it but the
        connection died before the runner heard (or the client sent it again, and the store refused a
        second transition). A run the store holds as finished with ``status`` is the answer; so is a run
        failed by someone else when this runner was failing it anyway (replaced, reaped). A connection
        lost before the store acted (the run is still active, the store answers again) is tried once more."""
        try:
            return self.store.finish_run(run.id, status=status, now=utcnow(), **kwargs)
        except UnknownRun as err:
            raise self._lost(run, err) from None
        except (StoreUnavailable, IllegalTransition) as err:
            try:
                current = self.store.get_run(run.id)
            except Exception:
                raise err from None
            if current is not None and current.status == status:
                log.info("run %s was already %s in the store (the store's answer was lost)", run.id, status)
                return current
            if isinstance(err, StoreUnavailable) and current is not None and current.status in ACTIVE_STATUSES:
                # a blip (the store answers again, the run is as it was): finish it once more, not fail it
                return self.store.finish_run(run.id, status=status, now=utcnow(), **kwargs)
            raise

    def _move_rows(
        self, flow: DataFlow, run: RunRecord, cursor: Any, progress: Progress, lease: _Lease
    ) -> tuple[Counts, Any]:
        from .connections import resolve_url
        from .plan import plan_flow

        spec = flow.spec
        src_url = resolve_url(spec.source.connection, namespace=flow.namespace, field="spec.source.connection")
        sink_url = resolve_url(spec.sink.connection, namespace=flow.namespace, field="spec.sink.connection")
        deadline = current_deadline()
        if deadline is not None:
            deadline.check(f"planning the run (reading the tables {address_of(spec.source, src_url)} and "
                           f"{address_of(spec.sink, sink_url)})")
        plan = plan_flow(flow, src_url, sink_url, cursor=cursor)
        if plan.kind in ("pushdown", "stream"):  # one SQL statement, or binary COPY between two databases (plan.py)
            if deadline is not None:
                deadline.check(f"running the push-down statement in {address_of(spec.sink, sink_url)}")
            pushed = self._push_down(flow, plan, cursor, progress)
            if pushed is not None:
                return pushed
            if deadline is not None:
                deadline.check()  # a push-down stopped by the timeout: no row path after it
        return self._row_path(flow, run, src_url, sink_url, cursor, progress, lease,
                              plan if plan.kind == "source" else None)

    def _push_down(self, flow: DataFlow, plan: Plan, cursor: Any, progress: Progress) -> tuple[Counts, Any] | None:
        """The pushed-down run; None when the statement failed and the row path should take over."""
        from .plan import PushdownFailed

        try:
            done = plan.execute()
        except PushdownFailed as err:
            log.info("flow %s/%s: push-down failed, using the row path: %s", flow.namespace, flow.name, err)
            return None
        if done.cursor is not None and _incremental(flow):
            cursor = done.cursor
            self.store.commit_cursor(flow.name, flow.namespace, cursor)
        progress.advanced(done.read, done.written, 0)
        return Counts(done.read, done.written, 0), cursor

    def _row_path(
        self, flow: DataFlow, run: RunRecord, src_url: str, sink_url: str, cursor: Any, progress: Progress,
        lease: _Lease, pushed: Plan | None = None,
    ) -> tuple[Counts, Any]:
        """Source pages through the compiled transforms into the sink; the cursor committed once durable.

        ``pushed`` (a "source" plan): the source query computes the first steps, the pipeline the rest."""
        path = _RowPath(self, flow, run, src_url, sink_url, cursor, progress, lease, pushed)
        try:
            pipeline = path.open()
            for batch in path.source.batches():
                path.batch(pipeline, batch)
            return path.finish()
        except BaseException as err:
            err.counts = path.abort()  # type: ignore[attr-defined]
            raise
        finally:
            path.close()

    @staticmethod
    def _check_failures(spec: Any, failed: int, errors: list[str]) -> None:
        limit = getattr(spec.sink, "maxFailedRecords", 0) or 0
        if failed > limit:
            first = "; ".join(errors[:3])
            raise ConnectorError(
                f"{failed} record(s) failed, more than spec.sink.maxFailedRecords ({limit}): {first}"
            )


class _RowPath:
    """One run of :meth:`FlowExecutor._row_path`: its source, pipeline and sink, and the counts so far."""

    def __init__(
        self, executor: FlowExecutor, flow: DataFlow, run: RunRecord, src_url: str, sink_url: str, cursor: Any,
        progress: Progress, lease: _Lease, pushed: Plan | None,
    ) -> None:
        from .connectors import open_source

        self.executor, self.flow, self.spec, self.run = executor, flow, flow.spec, run
        self.sink_url, self.cursor, self.progress, self.lease, self.pushed = sink_url, cursor, progress, lease, pushed
        self.read = self.written = self.failed = 0
        self.row_errors: list[str] = []
        self.source = open_source(self.spec.source, src_url) if pushed is None else pushed.source_reader(flow, src_url)
        self.first = 0 if pushed is None else pushed.pushed_steps
        self.sink: SinkWriter | None = None
        self.sink_open = False
        self.deadline = current_deadline()
        source_address = address_of(self.spec.source, src_url) if self.deadline else ""
        self.reading = f"reading {source_address}"
        self.transforming = f"transforming rows read from {source_address}"
        self.writing = f"writing to {address_of(self.spec.sink, sink_url)}" if self.deadline else ""

    def step(self, activity: str) -> None:
        """Between batches: fail the run once its time is up (the watchdog for what has no timeout)."""
        if self.deadline is not None:
            self.deadline.check(activity)

    def on_row_error(self, row: tuple[Any, ...], err: Exception) -> None:
        self.row_errors.append(str(err))

    def open(self) -> Pipeline:
        """Open the source at the cursor, compile the transforms for its columns, open the sink if it can be."""
        from .connectors import open_sink
        from .transforms import compile_transforms

        self.step(self.reading)
        columns = self.source.open(self.cursor)
        pipeline = compile_transforms(self.spec.transform[self.first:], columns, first=self.first)
        self.sink = open_sink(self.spec.sink, self.sink_url)
        if pipeline.columns_known:  # else a python step names its columns with its first row
            self.step(self.writing)
            self.sink.open(pipeline.columns)
            self.sink_open = True
        self.step(self.reading)
        if self.pushed is not None:  # a page the source database failed to compute runs the steps in Python
            self.source.on_row_error = self.on_row_error  # type: ignore[attr-defined]
        return pipeline

    def batch(self, pipeline: Pipeline, batch: Batch) -> None:
        """Transform and write one page; commit its cursor once the sink made it durable."""
        assert self.sink is not None
        if self.lease.lost.is_set():
            raise RunAborted(TAKEN_OVER)
        self.read += len(batch.rows) if batch.read is None else batch.read
        self.step(self.transforming)
        rows = pipeline.apply(batch.rows, on_error=self.on_row_error)
        self.step(self.writing)
        if not self.sink_open and pipeline.columns_known:
            self.sink.open(pipeline.columns)
            self.sink_open = True
        durable = self.write(rows)
        if batch.cursor is not None and _incremental(self.flow):
            self.cursor = batch.cursor
            if durable:
                self.executor.store.commit_cursor(self.flow.name, self.flow.namespace, self.cursor)
        self.failed = self.check_failures()
        self.written = self.sink.stats.written
        try:
            self.executor.store.update_counts(self.run.id, Counts(self.read, self.written, self.failed))
        except IllegalTransition:  # finished by another runner: its verdict stands (see _finish)
            raise RunAborted(TAKEN_OVER) from None
        self.progress.advanced(self.read, self.written, self.failed)  # what the store now holds
        self.step(self.reading)

    def write(self, rows: list[tuple[Any, ...]]) -> bool:
        """Whether the rows written so far are durable (nothing came out of the pipeline yet: trivially)."""
        assert self.sink is not None
        if not self.sink_open:
            return True
        self.sink.write(rows)
        return self.sink.checkpoint()

    def check_failures(self) -> int:
        """Rows refused by a transform or by the sink so far; raises past maxFailedRecords."""
        assert self.sink is not None
        failed = self.sink.stats.failed + len(self.row_errors)
        self.executor._check_failures(self.spec, failed, (self.row_errors + self.sink.stats.errors)[:5])
        return failed

    def finish(self) -> tuple[Counts, Any]:
        assert self.sink is not None
        if self.sink_open:
            self.step(self.writing)
            self.sink.commit()
        self.written = self.sink.stats.written
        self.failed = self.check_failures()  # the last flush may have refused rows too
        return Counts(self.read, self.written, self.failed), self.cursor

    def abort(self) -> Counts:
        """Roll the sink back; the counts of the failed run (the rows refused so far, the one past the limit too)."""
        if self.sink is None:
            return Counts(self.read, self.written, self.failed)
        with contextlib.suppress(Exception):
            self.sink.rollback()
        return Counts(self.read, self.sink.stats.written, self.sink.stats.failed + len(self.row_errors))

    def close(self) -> None:
        if self.sink is not None:
            with contextlib.suppress(Exception):
                self.sink.close()
        with contextlib.suppress(Exception):
            self.source.close()


def _continued(run: RunRecord, runs: list[RunRecord]) -> bool:
    """Whether a later attempt of ``run``'s slot is among ``runs`` (the runs of ``run``'s flow)."""
    return any(r.scheduled_for == run.scheduled_for and r.trigger == run.trigger and r.attempt > run.attempt
               for r in runs)


def _describe(run: RunRecord) -> str:
    """A run's state in a few words, for a runner explaining why it ran nothing."""
    if run.status == "success":
        return f"succeeded at {_at(run.ended_at)}"
    if run.status == "failed":
        message = (run.error_message or "no error recorded").splitlines()[0]
        return f"failed: {message[:200]}"
    state = "running" if run.status == "in_progress" else run.status
    return f"{state}, runner {run.runner_id or 'unknown'}, lease until {_at(run.lease_expires_at)}"


def _at(when: datetime | None) -> str:
    return when.isoformat() if when is not None else "unknown time"


def _incremental(flow: DataFlow) -> bool:
    src = flow.spec.source
    return bool(getattr(src, "incremental", None))


def _history(var: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(var, default)))
    except ValueError:
        return default
