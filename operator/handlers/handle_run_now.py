"""The ``activedataflow.io/run-now`` annotation: a Job from the flow's CronJob, once per value."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

import kopf

from ...errors import ConfigError
from ...kube.client import CRONJOB, JOB, AlreadyExists
from ...kube.names import RUN_NOW_ANNOTATION
from ..conditions import backoff, reported
from ..config import Context
from ..cronjob import HEARTBEAT_CRONJOB, build_manual_job, cronjob_name
from ..workloads import parse_runnable
from . import plain

__all__ = ["handle_run_now"]


def handle_run_now(
    body: Mapping[str, Any], *, status: MutableMapping[str, Any], ctx: Context, retry: int = 0
) -> str | None:
    """``activedataflow.io/run-now`` differs from ``status.lastHandledRunNow``: create a Job from the
    CronJob's template at once and acknowledge the value. Returns the Job name (None: nothing to do)."""
    obj = plain(body)
    meta = obj["metadata"]
    value = (meta.get("annotations") or {}).get(RUN_NOW_ANNOTATION)
    if not value or value == (obj.get("status") or {}).get("lastHandledRunNow"):
        return None
    try:
        flow = parse_runnable(obj)
    except ConfigError as err:
        ctx.kube.post_event(obj, type="Warning", reason="RunNowRefused", message=f"invalid DataFlow: {err}")
        status["lastHandledRunNow"] = value
        raise kopf.PermanentError(f"run-now {value} refused: invalid DataFlow: {err}") from None
    if flow.spec.suspend:
        ctx.kube.post_event(obj, type="Warning", reason="RunNowRefused", message="the flow is suspended")
        status["lastHandledRunNow"] = value
        return None
    cj_name = HEARTBEAT_CRONJOB if flow.spec.runtime.type == "heartbeat" else cronjob_name(flow.name)
    with reported(obj, status, ctx, retry):
        cron = ctx.kube.get(CRONJOB, flow.namespace, cj_name)
        if cron is None:
            raise kopf.TemporaryError(f"run-now {value}: CronJob {cj_name} does not exist yet", delay=backoff(retry))
        job = build_manual_job(cron, owner=obj, flow_name=flow.name, namespace=flow.namespace, value=value)
        try:
            ctx.kube.create(JOB, flow.namespace, job)
            ctx.kube.post_event(
                obj, type="Normal", reason="RunRequested", message=f"created Job {job['metadata']['name']} (run-now)"
            )
        except AlreadyExists:
            pass  # made before a restart: the same value runs once
    status["lastHandledRunNow"] = value
    return str(job["metadata"]["name"])

