"""Deletion of a DataFlow (its DELETED event): its flow record disabled, the shared heartbeat CronJob re-synced,
the namespace's store Secret deleted with its last DataFlow.

No finalizer holds the deletion up (it cost every new DataFlow a write), so this runs once the
DataFlow is gone, and nothing retries an event: a record the store cannot disable now is disabled
by the sweep at the operator's next start (:mod:`.handle_startup`), as are the records of DataFlows
deleted while no operator ran.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ...errors import StoreUnavailable, UnknownFlow, redact
from ...kube.client import DATAFLOW, KubeError
from ..config import Context
from ..cronjob import HEARTBEAT_CRONJOB
from ..store_secret import drop_store_secret
from ..workloads import is_heartbeat, sync_heartbeat
from . import plain

__all__ = ["disable_record", "flow_deleted"]

log = logging.getLogger("activedataflow.operator")


def disable_record(ctx: Context, namespace: str, name: str) -> bool:
    """Disable the flow record of a deleted DataFlow, keeping its run history, unless a DataFlow of that
    name exists again (its registration, under the same lock, owns the record). False: nothing to disable."""
    with ctx.record_lock(namespace, name):
        if ctx.kube.get(DATAFLOW, namespace, name) is not None:
            return False
        try:
            ctx.store().set_enabled(name, namespace, False)
        except UnknownFlow:
            return False  # never stored (it was invalid): nothing to disable
    return True


def flow_deleted(body: Mapping[str, Any], *, ctx: Context) -> None:
    """The flow's own CronJob goes with its owner (garbage collection); the shared heartbeat CronJob
    is re-synced (the garbage collector would drop the owner, not the flow's Secret references). A store
    that does not answer does not keep the Kubernetes side from being cleaned up."""
    obj = plain(body)
    meta = obj["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    disabled = False
    try:
        disabled = disable_record(ctx, namespace, name)
    except (StoreUnavailable, KubeError, OSError) as err:
        log.warning("DataFlow %s/%s deleted, its flow record not disabled (%s); the operator's next start "
                    "disables it", namespace, name, redact(str(err)))
    if is_heartbeat(obj):
        try:
            sync_heartbeat(ctx, namespace, exclude_uid=meta.get("uid"))
        except (KubeError, OSError) as err:
            log.warning("DataFlow %s/%s deleted, CronJob %s not re-synced (%s); the next reconcile of a heartbeat "
                        "flow of the namespace does it", namespace, name, HEARTBEAT_CRONJOB, redact(str(err)))
    try:
        drop_store_secret(ctx, namespace)
    except (KubeError, OSError) as err:
        log.warning("DataFlow %s/%s deleted, the namespace's store Secret not checked (%s); the operator's next "
                    "start deletes it if no DataFlow is left", namespace, name, redact(str(err)))
    if disabled:
        ctx.kube.post_event(obj, type="Normal", reason="Disabled", message="flow record disabled; run history kept")
