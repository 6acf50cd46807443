"""Deletion of a DataFlow: its flow record disabled, the shared heartbeat CronJob re-synced."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from ...errors import StoreUnavailable, UnknownFlow, redact
from ...kube.client import KubeError
from ..conditions import backoff
from ..config import Context
from ..workloads import is_heartbeat, sync_heartbeat
from . import plain

__all__ = ["finalize_flow"]


def finalize_flow(body: Mapping[str, Any], *, ctx: Context, retry: int = 0) -> None:
    """Deletion (the finalizer): disable the flow record, keeping its run history. The flow's own
    CronJob goes with its owner (garbage collection); the shared heartbeat CronJob is re-synced."""
    obj = plain(body)
    meta = obj["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    try:
        ctx.store().set_enabled(name, namespace, False)
    except UnknownFlow:
        pass  # never stored (it was invalid): nothing to disable
    except StoreUnavailable as err:
        message = f"{redact(str(err))}; the DataFlow is deleted once its flow record can be disabled"
        raise kopf.TemporaryError(message, delay=backoff(retry)) from None
    if is_heartbeat(obj):
        try:
            sync_heartbeat(ctx, namespace, exclude_uid=meta.get("uid"))
        except (KubeError, OSError) as err:
            raise kopf.TemporaryError(f"Kubernetes API: {redact(str(err))}", delay=backoff(retry)) from None
    ctx.kube.post_event(obj, type="Normal", reason="Disabled", message="flow record disabled; run history kept")
