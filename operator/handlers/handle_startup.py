"""The operator's start: the flow records of DataFlows deleted while no operator ran are disabled, and
the store Secrets of namespaces left without DataFlows deleted.

With no finalizer on DataFlows, such a deletion is not seen as an event; one LIST of the DataFlows
(per watched namespace, or of all) against the store's enabled records finds them. kopf runs
start-up handlers before it watches anything, so no registration runs meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ...errors import StoreUnavailable, redact
from ...kube.client import DATAFLOW, KubeError
from ..config import Context
from ..store_secret import drop_store_secrets

__all__ = ["sweep_deleted_flows"]

log = logging.getLogger("activedataflow.operator")


def sweep_deleted_flows(ctx: Context, namespaces: Sequence[str] | None) -> list[tuple[str, str]]:
    """Disable the enabled flow records of ``namespaces`` (None: all) that no DataFlow has, and delete the
    store Secret of each namespace the store knows that no DataFlow is left in; returns the disabled
    records' (namespace, name). A store or API server that does not answer is logged, not fatal: the next
    start sweeps again."""
    try:
        scopes: Sequence[str | None] = [None] if namespaces is None else namespaces
        records = [r for ns in scopes for r in ctx.store().flow_keys(ns)]  # no spec decoded
        if not records:
            return []
        present = {(o["metadata"].get("namespace") or "default", o["metadata"]["name"])
                   for ns in scopes for page in ctx.kube.pages(DATAFLOW, ns) for o in page}  # names kept, bodies not
        gone = sorted({r.key for r in records if r.enabled} - present)
        for namespace, name in gone:
            ctx.store().set_enabled(name, namespace, False)
    except (StoreUnavailable, KubeError, OSError) as err:
        log.warning("flow records of DataFlows deleted while no operator ran not swept (%s)", redact(str(err)))
        return []
    if gone:
        log.info("disabled %d flow record(s) of DataFlows deleted while no operator ran: %s", len(gone),
                 ", ".join(f"{ns}/{name}" for ns, name in gone))
    drop_store_secrets(ctx, {r.namespace for r in records} - {ns for ns, _ in present})
    return gone
