"""Create, update of the spec, resume: validate, store the flow record, keep its CronJob, report status."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from datetime import datetime
from typing import Any

import kopf

from ...errors import ConfigError
from ...kube import status as st
from ...kube.client import CRONJOB, rfc3339
from ...model import DataFlow
from ...schedule import next_run_for_status as status_next_run
from ...store.base import FlowRecord
from ...store.registration import register_flow
from ..conditions import not_ready, only_changes, ready, reconciled_at_this_generation, reported
from ..config import Context
from ..cronjob import HEARTBEAT_CRONJOB, cron_schedule, cronjob_name
from ..workloads import CronJobIndex, drop_flow_from_heartbeat, ensure_flow_cronjob, parse_runnable, sync_heartbeat
from . import plain

__all__ = ["next_run_for_status", "reconcile_flow", "was_heartbeat"]


def was_heartbeat(reason: str, old: Any) -> bool | None:
    """Whether the flow ran in the shared heartbeat CronJob before this event: never on create;
    from the old spec on an update (kopf gives the old value of the watched ``spec`` field);
    unknown (None) otherwise."""
    if reason == "create":
        return False
    if reason == "update" and isinstance(old, Mapping):
        return ((old.get("runtime") or {}).get("type")) == "heartbeat"
    return None


def next_run_for_status(flow: DataFlow, record: FlowRecord, ctx: Context) -> datetime | None:
    """``status.nextRunAt`` (:func:`activedataflow.schedule.next_run_for_status`, the runner's computation too)."""
    return status_next_run(
        flow.spec, record.next_run_at, ctx.clock(), heartbeat_schedule=ctx.config.runner.heartbeat_schedule
    )


def _may_have_own_cronjob(flow: DataFlow, *, created: bool, was_heartbeat: bool | None,
                          listed: CronJobIndex | None) -> bool:
    """Whether a heartbeat flow may still have a CronJob of its own, from before it switched: never when new
    or when it ran in the heartbeat before this change; per a resync pass's LIST when there is one (an idle
    restart with 1,000 heartbeat flows made 1,000 DELETEs that answered 404)."""
    if created or was_heartbeat:
        return False
    return listed is None or (flow.namespace, cronjob_name(flow.name)) in listed


def reconcile_flow(
    body: Mapping[str, Any],
    *,
    status: MutableMapping[str, Any],
    ctx: Context,
    retry: int = 0,
    resync: bool = False,
    was_heartbeat: bool | None = None,
    created: bool = False,
    listed: CronJobIndex | None = None,
) -> None:
    """Create / update / resume: validate, store the flow record, keep its CronJob, report status.

    ``resync``: the periodic pass that repairs drift (a CronJob deleted by hand) and
    refreshes ``nextRunAt``; it repeats no Event for an unchanged invalid spec.
    ``created``: a create event (its CronJob is applied without a GET first).
    ``was_heartbeat``: whether the flow ran in the shared heartbeat CronJob before this
    change (False on create); None when unknown (resume, resync), which costs a look.
    ``listed``: the CronJobs a resync pass listed (:func:`~..workloads.cronjob_index`), instead of a GET.
    """
    obj = plain(body)
    with only_changes(obj, status) as out:
        _reconcile(obj, out, ctx, retry=retry, resync=resync, was_heartbeat=was_heartbeat, created=created,
                   listed=listed)


def _reconcile(
    obj: dict[str, Any],
    status: MutableMapping[str, Any],
    ctx: Context,
    *,
    retry: int,
    resync: bool,
    was_heartbeat: bool | None,
    created: bool,
    listed: CronJobIndex | None,
) -> None:
    meta = obj["metadata"]
    try:
        flow = parse_runnable(obj)
    except ConfigError as err:
        not_ready(obj, status, ctx, st.INVALID_SPEC, str(err), always_event=not resync)
        raise kopf.PermanentError(f"invalid DataFlow: {err}") from None

    with reported(obj, status, ctx, retry):
        with ctx.record_lock(flow.namespace, flow.name):
            record = register_flow(ctx.store(), flow, now=ctx.clock())
        if flow.spec.runtime.type == "heartbeat":
            if _may_have_own_cronjob(flow, created=created, was_heartbeat=was_heartbeat, listed=listed):
                ctx.kube.delete(CRONJOB, flow.namespace, cronjob_name(flow.name))  # it switched from cronjob
            live, change = sync_heartbeat(ctx, flow.namespace)
            runs_in = f"the shared CronJob {HEARTBEAT_CRONJOB} ('{ctx.config.runner.heartbeat_schedule}')"
        else:
            live, change = ensure_flow_cronjob(ctx, flow, obj, created=created, listed=listed)
            if was_heartbeat is not False and not reconciled_at_this_generation(obj):
                drop_flow_from_heartbeat(ctx, flow, meta["uid"])
            zone = f" {flow.spec.timeZone}" if flow.spec.timeZone else ""
            runs_in = f"CronJob {cronjob_name(flow.name)} ('{cron_schedule(flow)}'{zone})"

    if flow.spec.suspend:
        reason, message = st.SUSPENDED, f"suspended; {runs_in} does not start runs"
    else:
        reason, message = st.RECONCILED, f"flow record stored; runs by {runs_in}"
    ready(obj, status, ctx, True, reason, message)
    status["nextRunAt"] = rfc3339(next_run_for_status(flow, record, ctx))
    if change and live is not None:
        what = "Created" if change == "created" else "Updated"
        message = f"{what.lower()} CronJob {live['metadata']['name']}"
        ctx.kube.post_event(obj, type="Normal", reason=what, message=message)

