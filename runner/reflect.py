"""Reflecting runs into Kubernetes: a DataFlowRun per run, and the DataFlow's status.

The FlowExecutor calls a :class:`Reflector` when a run starts and when it
finishes. In a cluster that is a :class:`KubeReflector`; on a laptop
(``adf run`` without a cluster) :func:`reflector_from_env` gives a
:class:`NullReflector` and nothing is attempted. Reflection never fails a run:
every error is logged (redacted) and swallowed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError, redact
from ..kube.names import FLOW_LABEL, labels, run_name_for
from ..model import FAILED_RUNS_HISTORY_LIMIT, SUCCESSFUL_RUNS_HISTORY_LIMIT, DataFlowSpec
from ..schedule import DEFAULT_HEARTBEAT_SCHEDULE, HEARTBEAT_SCHEDULE_ENV, next_run_for_status, utcnow
from ..store.base import ACTIVE_STATUSES, FlowRecord, RunRecord

if TYPE_CHECKING:
    from ..kube.client import KubeApi

# The Kubernetes client and the status models (..kube.client, ..kube.status: 0.027 s CPU of a runner's
# start-up, measured with everything else imported) are imported by the KubeReflector's methods and by
# reflector_from_env when it reflects: a run outside a cluster, or on a laptop, never loads them.

__all__ = ["KubeReflector", "NullReflector", "Reflector", "reflector_from_env"]

log = logging.getLogger("activedataflow.reflect")

PROBE_TIMEOUT = 3.0
REQUEST_TIMEOUT = 10.0
CONFLICT_RETRIES = 8


class Reflector(Protocol):
    def run_started(self, flow: FlowRecord, run: RunRecord) -> None: ...

    def run_finished(self, flow: FlowRecord, run: RunRecord, *, cursor: Any, next_run_at: datetime | None) -> None: ...

    def catch_up(
        self, flow: FlowRecord, runs: Sequence[RunRecord], *, cursor: Any, next_run_at: datetime | None
    ) -> None: ...


class NullReflector:
    """Outside a cluster: reflect nothing."""

    def run_started(self, flow: FlowRecord, run: RunRecord) -> None:
        return None

    def run_finished(self, flow: FlowRecord, run: RunRecord, *, cursor: Any, next_run_at: datetime | None) -> None:
        return None

    def catch_up(
        self, flow: FlowRecord, runs: Sequence[RunRecord], *, cursor: Any, next_run_at: datetime | None
    ) -> None:
        return None


def run_resource_name(flow: FlowRecord, run: RunRecord) -> str:
    """The DataFlowRun name: the executor's ``run.run_name`` (``<flow>-<unix minutes>``)."""
    if run.run_name:
        return run.run_name
    return run_name_for(flow.name, run.scheduled_for or run.created_at or utcnow(), run.attempt)


class KubeReflector:
    """Creates/updates DataFlowRuns and patches DataFlow status through a :class:`KubeApi`."""

    def __init__(
        self, kube: KubeApi, *, clock: Callable[[], datetime] = utcnow, heartbeat_schedule: str | None = None
    ) -> None:
        self.kube = kube
        self.clock = clock
        # the shared heartbeat CronJob's schedule (its Pods have it in ADF_HEARTBEAT_SCHEDULE)
        self.heartbeat_schedule = heartbeat_schedule or os.environ.get(HEARTBEAT_SCHEDULE_ENV) or (
            DEFAULT_HEARTBEAT_SCHEDULE)

    # ----------------------------------------------------------------- Reflector
    def run_started(self, flow: FlowRecord, run: RunRecord) -> None:
        self._guarded(self._reflect, flow, run, finished=False)

    def run_finished(self, flow: FlowRecord, run: RunRecord, *, cursor: Any, next_run_at: datetime | None) -> None:
        self._guarded(self._reflect, flow, run, finished=True, cursor=cursor, next_run_at=next_run_at)

    def catch_up(
        self, flow: FlowRecord, runs: Sequence[RunRecord], *, cursor: Any, next_run_at: datetime | None
    ) -> None:
        """Reflect the store's finished ``runs`` (newest first, as ``list_runs`` gives them) that Kubernetes
        missed: their runner could not reach the API server. A run is reflected again when its DataFlowRun
        is absent or still active, or when it is the newest and the DataFlow status does not show it; a run
        older than the one the status shows is left alone (an absent one was pruned by the history limits).
        What the next runner does before its own run. Never raises."""
        try:
            self._catch_up(flow, runs, cursor=cursor, next_run_at=next_run_at)
        except Exception as err:
            log.warning("could not catch up the runs of %s/%s in Kubernetes: %s", flow.namespace, flow.name,
                        redact(str(err)))

    def _catch_up(
        self, flow: FlowRecord, runs: Sequence[RunRecord], *, cursor: Any, next_run_at: datetime | None
    ) -> None:
        from ..kube.client import DATAFLOW, DATAFLOWRUN
        from ..kube.status import ACTIVE_PHASES, phase_of

        done = [r for r in runs if r.status not in ACTIVE_STATUSES]
        if not done:
            return
        owner = self.kube.get(DATAFLOW, flow.namespace, flow.name)
        if owner is None:
            return
        status = owner.get("status") or {}
        shown = _parse_time(status.get("lastRunAt"))
        for i, run in reversed(list(enumerate(done))):  # oldest first: the newest ends up in the status
            started = run.started_at or run.created_at
            if shown is not None and started is not None and started.replace(microsecond=0) < shown:
                continue
            name = run_resource_name(flow, run)
            current = self.kube.get(DATAFLOWRUN, flow.namespace, name)
            missed = current is None or (current.get("status") or {}).get("phase") in ACTIVE_PHASES
            stale = i == 0 and (status.get("lastRunName"), status.get("lastRunStatus")) != (name, phase_of(run))
            if missed or stale:
                log.info("reflecting run %s of %s/%s, which Kubernetes missed", name, flow.namespace, flow.name)
                self._reflect(flow, run, finished=True, cursor=cursor, next_run_at=next_run_at)
                owner = self.kube.get(DATAFLOW, flow.namespace, flow.name) or owner
                status = owner.get("status") or {}

    # ----------------------------------------------------------------- steps
    def _guarded(self, fn: Callable[..., None], flow: FlowRecord, run: RunRecord, **kwargs: Any) -> None:
        try:
            fn(flow, run, **kwargs)
        except Exception as err:  # never fail a run because Kubernetes did not listen
            log.warning(
                "could not reflect run %s of %s/%s into Kubernetes: %s",
                run.run_name, flow.namespace, flow.name, redact(str(err)),
            )

    def _reflect(
        self,
        flow: FlowRecord,
        run: RunRecord,
        *,
        finished: bool,
        cursor: Any = None,
        next_run_at: datetime | None = None,
    ) -> None:
        from ..kube.client import DATAFLOW, DATAFLOWRUN
        from ..kube.status import ACTIVE_PHASES, dataflow_status, dataflowrun_status, phase_of

        owner = self.kube.get(DATAFLOW, flow.namespace, flow.name)
        if owner is None:
            log.debug("no DataFlow %s/%s in the cluster; not reflecting", flow.namespace, flow.name)
            return
        name = run_resource_name(flow, run)
        self._ensure_run(owner, flow, run, name)
        self.kube.patch(DATAFLOWRUN, flow.namespace, name, {"status": dataflowrun_status(run)}, status=True)
        runs = self.kube.list(DATAFLOWRUN, flow.namespace, labels={FLOW_LABEL: flow.name})
        active = sum(
            1 for r in runs if r["metadata"]["name"] != name and (r.get("status") or {}).get("phase") in ACTIVE_PHASES
        ) + (phase_of(run) in ACTIVE_PHASES)
        status: dict[str, Any] = {
            "lastRunName": name,
            "lastRunStatus": phase_of(run),
            "lastRunAt": run.started_at or run.created_at or self.clock(),
            "activeRuns": active,
        }
        if finished:
            if run.status == "success":
                status["lastSuccessfulRunAt"] = run.ended_at or self.clock()
            if cursor is not None:
                status["cursor"] = cursor
            spec = self._spec(flow)
            if spec is not None:  # as the operator computes it, from the store's due time
                status["nextRunAt"] = next_run_for_status(
                    spec, next_run_at, self.clock(), heartbeat_schedule=self.heartbeat_schedule)
            self._prune(owner, runs)
        status = dataflow_status(**status)
        self._patch_flow_status(owner, name, status, count=run.status if finished else None)

    @staticmethod
    def _spec(flow: FlowRecord) -> DataFlowSpec | None:
        """The flow record's spec; None (and nextRunAt left to the operator) for one the model refuses."""
        from .executor import dataflow_from_record

        try:
            return dataflow_from_record(flow).spec
        except ConfigError:
            return None

    def _ensure_run(self, owner: Mapping[str, Any], flow: FlowRecord, run: RunRecord, name: str) -> None:
        from ..kube.client import DATAFLOWRUN, AlreadyExists, owner_reference, rfc3339

        meta = {
            "name": name,
            "namespace": flow.namespace,
            "labels": labels(flow.name),
            "ownerReferences": [owner_reference(owner, controller=True)],
        }
        spec = {"flow": flow.name, "trigger": run.trigger}
        if run.scheduled_for is not None:
            spec["scheduledFor"] = rfc3339(run.scheduled_for) or ""
        body = {"apiVersion": DATAFLOWRUN.api_version, "kind": DATAFLOWRUN.kind, "metadata": meta, "spec": spec}
        try:
            self.kube.create(DATAFLOWRUN, flow.namespace, body)
        except AlreadyExists:  # a second runner, or the start of this run: update it
            patch = {"metadata": {k: meta[k] for k in ("labels", "ownerReferences")}, "spec": spec}
            self.kube.patch(DATAFLOWRUN, flow.namespace, name, patch)

    def _patch_flow_status(
        self, owner: Mapping[str, Any], name: str, status: dict[str, Any], *, count: str | None
    ) -> None:
        """Patch the DataFlow status; a finished run also bumps ``succeeded``/``failed`` once
        (read-modify-write under a resourceVersion precondition)."""
        from ..kube.client import DATAFLOW, Conflict
        from ..kube.status import dataflow_status

        meta = owner["metadata"]
        current: Mapping[str, Any] | None = owner
        for _ in range(CONFLICT_RETRIES):
            if current is None:
                return  # deleted meanwhile
            patch: dict[str, Any] = {"status": dict(status)}
            if count is not None:
                old = current.get("status") or {}
                key = "succeeded" if count == "success" else "failed"
                if old.get("lastRunName") == name and old.get("lastRunStatus") == status["lastRunStatus"]:
                    pass  # this run was counted already (a repeated reflection)
                else:
                    patch["status"] |= dataflow_status(**{key: int(old.get(key) or 0) + 1})
                patch["metadata"] = {"resourceVersion": current["metadata"]["resourceVersion"]}
            try:
                self.kube.patch(DATAFLOW, meta["namespace"], meta["name"], patch, status=True)
                return
            except Conflict:
                current = self.kube.get(DATAFLOW, meta["namespace"], meta["name"])
        log.warning("DataFlow %s/%s kept changing; status not updated", meta["namespace"], meta["name"])

    def _prune(self, owner: Mapping[str, Any], runs: list[dict[str, Any]]) -> None:
        """Delete finished DataFlowRuns beyond successfulRunsHistoryLimit / failedRunsHistoryLimit (newest kept)."""
        from ..kube.client import DATAFLOWRUN

        spec = owner.get("spec") or {}
        limits = {
            "Succeeded": int(spec.get("successfulRunsHistoryLimit", SUCCESSFUL_RUNS_HISTORY_LIMIT)),
            "Failed": int(spec.get("failedRunsHistoryLimit", FAILED_RUNS_HISTORY_LIMIT)),
        }
        for phase, limit in limits.items():
            done = sorted(
                (r for r in runs if (r.get("status") or {}).get("phase") == phase), key=_finished_key, reverse=True
            )
            for old in done[limit:]:
                self.kube.delete(DATAFLOWRUN, old["metadata"]["namespace"], old["metadata"]["name"])


def _parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time of a status field (``2026-01-01T10:00:00Z``), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _finished_key(run: Mapping[str, Any]) -> str:
    status = run.get("status") or {}
    return str(status.get("finishedAt") or run["metadata"].get("creationTimestamp") or "")


def reflector_from_env(env: Mapping[str, str] | None = None) -> Reflector:
    """A KubeReflector in a cluster (KUBERNETES_SERVICE_HOST), or with ADF_REFLECT=1 or a KUBECONFIG
    when the API server answers; otherwise (or with ADF_REFLECT=0) a NullReflector. Never raises."""
    env = os.environ if env is None else env
    flag = env.get("ADF_REFLECT", "")
    in_cluster = bool(env.get("KUBERNETES_SERVICE_HOST"))
    if flag == "0" or not (in_cluster or flag == "1" or env.get("KUBECONFIG")):
        return NullReflector()
    from ..kube.client import RestKube, load_transport

    try:
        kube = RestKube(load_transport(retries=1, env=env), timeout=PROBE_TIMEOUT)
        kube.request("GET", "/version")
    except Exception as err:
        log.info("not reflecting runs into Kubernetes: %s", redact(str(err)))
        return NullReflector()
    kube.timeout = REQUEST_TIMEOUT
    return KubeReflector(kube)

