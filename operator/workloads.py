"""The workloads that run DataFlows, kept as their flows say: a flow's own CronJob, the namespace's
shared heartbeat CronJob (the manifests are built by the pure :mod:`.cronjob`), each with the store
Secret its pods read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

from ..errors import ConfigError
from ..kube.client import CRONJOB, DATAFLOW, AlreadyExists, Conflict
from ..kube.names import MANAGED_BY, SPEC_HASH_ANNOTATION
from ..model import DataFlow, parse_dataflow
from .config import CONFLICT_RETRIES, Context
from .cronjob import HEARTBEAT_CRONJOB, build_flow_cronjob, build_heartbeat_cronjob, cron_schedule, cronjob_name
from .store_secret import STORE_REF, ensure_store_secret

__all__ = [
    "CronJobIndex",
    "cronjob_index",
    "drop_flow_from_heartbeat",
    "ensure_flow_cronjob",
    "is_heartbeat",
    "parse_runnable",
    "sync_heartbeat",
]


def parse_runnable(obj: Mapping[str, Any]) -> DataFlow:
    """The DataFlow model of a body, checked for what its workload needs (ConfigError naming the field)."""
    flow = parse_dataflow(dict(obj))
    if flow.spec.runtime.type == "cronjob":
        cron_schedule(flow)  # an interval cron cannot express raises naming spec.interval
    return flow


def is_heartbeat(obj: Mapping[str, Any]) -> bool:
    """Whether the body's flow runs in the namespace's shared heartbeat CronJob."""
    return ((obj.get("spec") or {}).get("runtime") or {}).get("type") == "heartbeat"


def _spec_hash(cronjob: Mapping[str, Any]) -> str | None:
    """The hash of the spec a CronJob was made from (None: not made by this operator's builder)."""
    hash_: str | None = (cronjob["metadata"].get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
    return hash_


def _apply_cronjob(
    ctx: Context, desired: dict[str, Any], current: Mapping[str, Any] | None
) -> tuple[dict[str, Any], str]:
    """Create or patch; returns the live CronJob and what happened ('' / 'created' / 'updated')."""
    if current is not None and _spec_hash(current) == desired["metadata"]["annotations"][SPEC_HASH_ANNOTATION]:
        return dict(current), ""
    live = ctx.kube.apply(CRONJOB, desired["metadata"]["namespace"], desired)
    return live, "created" if current is None else "updated"


CronJobIndex: TypeAlias = Mapping[tuple[str, str], str | None]
"""(namespace, name) -> the spec hash annotation of each of the operator's CronJobs, as one LIST saw them."""


def cronjob_index(ctx: Context, namespace: str | None, *, size: int) -> dict[tuple[str, str], str | None]:
    """The operator's CronJobs of ``namespace`` (None: all), listed ``size`` at a time and kept as names and
    spec hashes only: what a resync pass compares each flow with instead of a GET per flow."""
    index: dict[tuple[str, str], str | None] = {}
    for page in ctx.kube.pages(CRONJOB, namespace, labels=MANAGED_BY, size=size):
        for cj in page:
            index[(cj["metadata"].get("namespace") or "default", cj["metadata"]["name"])] = _spec_hash(cj)
    return index


def _listed(index: CronJobIndex, namespace: str, name: str) -> dict[str, Any] | None:
    """The CronJob as far as ``index`` knows it (its name and spec hash), or None if the LIST did not see it."""
    if (namespace, name) not in index:
        return None
    spec_hash = index[(namespace, name)]
    return {"metadata": {"name": name, "annotations": {} if spec_hash is None else {SPEC_HASH_ANNOTATION: spec_hash}}}


def ensure_flow_cronjob(
    ctx: Context, flow: DataFlow, obj: Mapping[str, Any], *, created: bool = False,
    listed: CronJobIndex | None = None,
) -> tuple[dict[str, Any], str]:
    """``created``: the DataFlow is new, so its CronJob is applied without a look first (the apply is
    idempotent; made before a restart, it is applied again unchanged and reported as created).
    ``listed``: the CronJobs a resync pass listed, looked up instead of a GET."""
    name = cronjob_name(flow.name)
    desired = build_flow_cronjob(flow, owner=obj, runner=ctx.config.runner, store=STORE_REF)
    ensure_store_secret(ctx, flow.namespace)  # first: a CronJob never starts a pod whose Secret is missing
    if created:
        live, change = ctx.kube.apply(CRONJOB, flow.namespace, desired), "created"
    else:
        current = (ctx.kube.get(CRONJOB, flow.namespace, name) if listed is None
                   else _listed(listed, flow.namespace, name))
        live, change = _apply_cronjob(ctx, desired, current)
    return live, change


def _heartbeat_flows(ctx: Context, namespace: str, exclude_uid: str | None) -> list[tuple[DataFlow, dict[str, Any]]]:
    out: list[tuple[DataFlow, dict[str, Any]]] = []
    for item in ctx.kube.list(DATAFLOW, namespace):
        meta = item["metadata"]
        if meta.get("deletionTimestamp") or meta.get("uid") == exclude_uid or not is_heartbeat(item):
            continue
        try:
            out.append((parse_dataflow(item), item))
        except ConfigError:
            continue  # an invalid flow is reported on itself and runs nowhere
    return out


def sync_heartbeat(
    ctx: Context, namespace: str, *, exclude_uid: str | None = None
) -> tuple[dict[str, Any] | None, str]:
    """Make the namespace's ``adf-heartbeat`` CronJob match its heartbeat flows (env union,
    owners), or delete it when there are none. Concurrent reconciles of different
    flows are serialised by the resourceVersion precondition."""
    for _ in range(CONFLICT_RETRIES):
        current = ctx.kube.get(CRONJOB, namespace, HEARTBEAT_CRONJOB)
        flows = _heartbeat_flows(ctx, namespace, exclude_uid)
        if not flows:
            if current is not None:
                ctx.kube.delete(CRONJOB, namespace, HEARTBEAT_CRONJOB)
                return None, "deleted"
            return None, ""
        ensure_store_secret(ctx, namespace)  # first: a CronJob never starts a pod whose Secret is missing
        desired = build_heartbeat_cronjob(namespace, flows, runner=ctx.config.runner, store=STORE_REF)
        try:
            if current is None:
                live, change = ctx.kube.create(CRONJOB, namespace, desired), "created"
            else:
                desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                live, change = _apply_cronjob(ctx, desired, current)
        except (AlreadyExists, Conflict):
            continue  # another flow's reconcile wrote first; recompute from the new state
        return live, change
    raise Conflict(409, f"CronJob {namespace}/{HEARTBEAT_CRONJOB} kept changing; will retry")


def drop_flow_from_heartbeat(ctx: Context, flow: DataFlow, uid: str) -> None:
    """A flow switched to runtime.type cronjob: take it out of the shared heartbeat CronJob."""
    current = ctx.kube.get(CRONJOB, flow.namespace, HEARTBEAT_CRONJOB)
    if current is not None and uid in {o.get("uid") for o in current["metadata"].get("ownerReferences") or []}:
        sync_heartbeat(ctx, flow.namespace)

