"""The namespace's store Secret (``adf-store-url``): the store URL every runner pod of the namespace reads.

One Secret per namespace, shared by all its CronJobs, written by the operator alone: made (or set
right) by the first reconcile of a flow of the namespace that finds it missing or stale, deleted with
the namespace's last DataFlow (:func:`drop_store_secret`, from the deletion handler, and from the
start-up sweep for DataFlows deleted while no operator ran). It has no owner references: with every
CronJob among its owners, each new flow rewrote a Secret as large as the namespace (N^2 work for the
API server and the garbage collector; 3,000 flows of one namespace did not settle in 30 minutes).
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import redact
from ..kube.client import DATAFLOW, SECRET, AlreadyExists, Conflict, KubeError
from ..kube.names import MANAGED_BY, STORE_SECRET, STORE_SECRET_KEY
from ..model import SecretKeyRef
from .config import CONFLICT_RETRIES, Context
from .cronjob import build_store_secret

__all__ = ["STORE_REF", "drop_store_secret", "drop_store_secrets", "ensure_store_secret"]

STORE_REF = SecretKeyRef(name=STORE_SECRET, key=STORE_SECRET_KEY)  # where every runner pod reads ADF_STORE_URL

log = logging.getLogger("activedataflow.operator")


def _is_ours(secret: dict[str, Any]) -> bool:
    labels = secret["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in MANAGED_BY.items())


def ensure_store_secret(ctx: Context, namespace: str) -> None:
    """The namespace's ``STORE_SECRET`` holds the store URL.

    The chart grants ``get``/``patch``/``delete`` on this name alone. The operator's own reads and writes
    of a namespace's Secret are serialised and remembered (``Context.known_secret``), so while it is
    right a flow costs no request for it. A Secret of that name the operator did not make is never
    overwritten (retried, with the reason on the flow, until it is renamed or deleted)."""
    with ctx.secret_lock(namespace):
        _ensure_store_secret(ctx, namespace)


def _ensure_store_secret(ctx: Context, namespace: str) -> None:
    desired = build_store_secret(namespace, url=ctx.config.store_url)
    for _ in range(CONFLICT_RETRIES):
        current = ctx.known_secret(namespace) or ctx.kube.get(SECRET, namespace, STORE_SECRET)
        if current is None:
            try:
                ctx.remember_secret(namespace, ctx.kube.create(SECRET, namespace, desired))
                return
            except AlreadyExists:
                continue
        if not _is_ours(current):
            ctx.remember_secret(namespace, None)
            raise KubeError(409, f"Secret {namespace}/{STORE_SECRET} exists and was not made by ActiveDataFlow "
                                 f"(no label app.kubernetes.io/managed-by=activedataflow); the operator keeps the "
                                 f"store URL for runner pods under that name: rename or delete that Secret")
        owned = bool(current["metadata"].get("ownerReferences"))
        if (current.get("data") or {}) == desired["data"] and not owned:
            ctx.remember_secret(namespace, current)
            return
        patch: dict[str, Any] = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                                 "data": desired["data"]}
        if owned:  # an earlier operator listed the CronJobs as owners: the last one's deletion would take it
            patch["metadata"]["ownerReferences"] = None
        try:
            written = ctx.kube.patch(SECRET, namespace, STORE_SECRET, patch)
        except Conflict:
            written = None  # changed since: read again
        ctx.remember_secret(namespace, written)
        if written is not None:
            return
    raise Conflict(409, f"Secret {namespace}/{STORE_SECRET} kept changing; will retry")


def drop_store_secret(ctx: Context, namespace: str) -> bool:
    """Delete the namespace's store Secret if no DataFlow of the namespace is left (and the Secret is the
    operator's). Under the namespace's lock, so a reconcile of a new flow either ran before (its DataFlow
    is listed: the Secret stays) or runs after (it finds the Secret gone and makes it again). True: deleted.

    One LIST of at most one DataFlow: deleting N flows costs N small requests, not N lists of the namespace."""
    with ctx.secret_lock(namespace):
        if ctx.kube.list(DATAFLOW, namespace, limit=1):
            return False
        ctx.remember_secret(namespace, None)
        current = ctx.kube.get(SECRET, namespace, STORE_SECRET)
        if current is None or not _is_ours(current):
            return False
        deleted = ctx.kube.delete(SECRET, namespace, STORE_SECRET)
    if deleted:
        log.info("namespace %s has no DataFlow left: Secret %s deleted", namespace, STORE_SECRET)
    return deleted


def drop_store_secrets(ctx: Context, namespaces: set[str]) -> None:
    """:func:`drop_store_secret` for each of ``namespaces`` (each deletion is logged); an API server that
    refuses one is logged."""
    for namespace in sorted(namespaces):
        try:
            drop_store_secret(ctx, namespace)
        except (KubeError, OSError) as err:
            log.warning("Secret %s/%s of a namespace without DataFlows not deleted (%s)", namespace, STORE_SECRET,
                        redact(str(err)))
