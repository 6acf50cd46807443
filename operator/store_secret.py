"""The namespace's store Secret (``adf-store-url``): the store URL every runner pod of the namespace reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..kube.client import SECRET, AlreadyExists, Conflict, KubeError
from ..kube.names import MANAGED_BY, STORE_SECRET, STORE_SECRET_KEY
from ..model import SecretKeyRef
from .config import CONFLICT_RETRIES, Context
from .cronjob import build_store_secret

__all__ = ["STORE_REF", "ensure_store_secret"]

STORE_REF = SecretKeyRef(name=STORE_SECRET, key=STORE_SECRET_KEY)  # where every runner pod reads ADF_STORE_URL


def ensure_store_secret(ctx: Context, cronjob: Mapping[str, Any]) -> None:
    """The namespace's ``STORE_SECRET`` holds the store URL and counts ``cronjob`` among its owners.

    One Secret per namespace, shared by all its CronJobs: the chart grants ``get``/``patch`` on this
    name alone. An owner is added by a strategic merge patch under the resourceVersion precondition, so a
    Secret changed since it was read is read again; owners deleted since are dropped by the garbage
    collector. A Secret of that name the operator did not make is never overwritten (retried, with
    the reason on the flow, until it is renamed or deleted). The operator's own writes of a namespace's
    Secret are serialised and remembered (``Context.known_secret``), so an unchanged Secret costs no
    request and a new owner one patch, not a GET and a race per flow."""
    meta = cronjob["metadata"]
    namespace = meta["namespace"]
    with ctx.secret_lock(namespace):
        _ensure_store_secret(ctx, namespace, meta["uid"], cronjob)


def _ensure_store_secret(ctx: Context, namespace: str, uid: str, cronjob: Mapping[str, Any]) -> None:
    """Under the namespace's lock: the remembered Secret spares the GET (and, when it is already right,
    every request); a write that finds it changed or gone reads it again."""
    desired = build_store_secret(namespace, url=ctx.config.store_url, owners=[cronjob])
    for _ in range(CONFLICT_RETRIES):
        current = ctx.known_secret(namespace) or ctx.kube.get(SECRET, namespace, STORE_SECRET)
        if current is None:
            try:
                ctx.remember_secret(namespace, ctx.kube.create(SECRET, namespace, desired))
                return
            except AlreadyExists:
                continue
        labels = current["metadata"].get("labels") or {}
        if any(labels.get(k) != v for k, v in MANAGED_BY.items()):
            ctx.remember_secret(namespace, None)
            raise KubeError(409, f"Secret {namespace}/{STORE_SECRET} exists and was not made by ActiveDataFlow "
                                 f"(no label app.kubernetes.io/managed-by=activedataflow); the operator keeps the "
                                 f"store URL for runner pods under that name: rename or delete that Secret")
        owners = list(current["metadata"].get("ownerReferences") or [])
        if (current.get("data") or {}) == desired["data"] and uid in {o.get("uid") for o in owners}:
            ctx.remember_secret(namespace, current)
            return
        # A strategic merge patch adds the one owner (merged by uid): the request does not grow with the
        # namespace's CronJobs, as a merge patch re-sending the whole list did (N^2 bytes for N flows).
        patch = {
            "metadata": {"resourceVersion": current["metadata"]["resourceVersion"],
                         "ownerReferences": desired["metadata"]["ownerReferences"]},
            "data": desired["data"],
        }
        try:
            written = ctx.kube.patch(SECRET, namespace, STORE_SECRET, patch, strategic=True)
        except Conflict:
            written = None  # changed since (the garbage collector dropped an owner): read again
        ctx.remember_secret(namespace, written)
        if written is not None:
            return
    raise Conflict(409, f"Secret {namespace}/{STORE_SECRET} kept changing; will retry")

