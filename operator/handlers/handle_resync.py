"""The periodic resync: the reconcile pass again over every DataFlow, which repairs drift (a CronJob
or store Secret deleted by hand) and refreshes ``nextRunAt``, repeating no Event for an unchanged invalid spec.

Not a kopf timer: kopf puts a finalizer on every object a timer or daemon watches (a write of each new
DataFlow, and a deletion held up while no operator runs). One thread of the operator instead lists the
DataFlows every :data:`RESYNC_SECONDS` (per watched namespace, or of all, a page of :data:`RESYNC_PAGE` at a
time, each page reconciled before the next is asked for; the operator's CronJobs are listed first, as
names and spec hashes, so that no flow costs a GET of its CronJob) and writes a flow's
status only where the pass changed it, under the listed ``resourceVersion``: a flow that changed
meanwhile is left to the handler of that change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import kopf

from ...errors import redact
from ...kube.client import DATAFLOW, Conflict, KubeError
from ..config import Context
from ..workloads import CronJobIndex, cronjob_index
from .handle_reconcile import reconcile_flow

__all__ = ["RESYNC_SECONDS", "Resyncer", "resync_all", "resync_flow"]

log = logging.getLogger("activedataflow.operator")

RESYNC_SECONDS = 600.0
# The pass's LISTs (CronJobs, then DataFlows), this many objects a request. An idle restart with 3,000 flows
# (bench/operator_scale.py) peaked at 117 MB RSS with pages of 500 (a CronJob body, its pod template, is
# several times a DataFlow's), 95-100 with 100 CronJobs a page, 95 with 100 DataFlows a page too: 72 LISTs.
RESYNC_PAGE = 100


def resync_flow(body: Mapping[str, Any], *, status: MutableMapping[str, Any], ctx: Context, retry: int = 0,
                listed: CronJobIndex | None = None) -> None:
    reconcile_flow(body, status=status, ctx=ctx, retry=retry, resync=True, listed=listed)


def _listed_cronjobs(ctx: Context, namespace: str | None) -> CronJobIndex | None:
    """The pass's view of the CronJobs (a few LISTs instead of a GET per flow), or None: a GET per flow, as
    when the operator's role cannot list CronJobs (a chart older than the operator)."""
    try:
        return cronjob_index(ctx, namespace, size=RESYNC_PAGE)
    except (KubeError, OSError) as err:
        log.warning("resync: CronJobs of %s not listed, each is read instead: %s", namespace or "all namespaces",
                    redact(str(err)))
        return None


def resync_all(ctx: Context, namespaces: Sequence[str] | None,
               counted: Callable[[], AbstractContextManager[None]] | None = None, *, start: bool = False) -> int:
    """One resync pass over the DataFlows of ``namespaces`` (None: all); returns how many statuses it wrote.
    A flow's failure (store down, API error, invalid spec) is its status, as in any reconcile, and never
    stops the pass; the next pass retries it. Remembered store Secrets are read again, so one deleted by
    hand is made again by the pass. ``start``: the operator's first pass, which leaves a DataFlow no
    operator has handled yet to kopf's create handler (it runs meanwhile; both would post ``Created``)."""
    written = 0
    ctx.forget_secrets()
    for namespace in [None] if namespaces is None else namespaces:
        try:
            # listed before the DataFlows: a CronJob a flow's handler makes meanwhile is applied again, unchanged
            listed = _listed_cronjobs(ctx, namespace)
            for page in ctx.kube.pages(DATAFLOW, namespace, size=RESYNC_PAGE):  # memory flat in the flow count
                for obj in page:
                    if start and "observedGeneration" not in (obj.get("status") or {}):
                        continue
                    written += _resync_one(ctx, obj, counted, listed)
        except (KubeError, OSError) as err:
            log.warning("resync: DataFlows of %s not listed: %s", namespace or "all namespaces", redact(str(err)))
    return written


def _resync_one(ctx: Context, obj: Mapping[str, Any], counted: Callable[[], AbstractContextManager[None]] | None,
                listed: CronJobIndex | None) -> int:
    meta = obj["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    status: dict[str, Any] = {}
    try:
        with (counted or nullcontext)():
            resync_flow(obj, status=status, ctx=ctx, listed=listed)
    except (kopf.PermanentError, kopf.TemporaryError) as err:  # already in ``status``: Ready=False, the reason
        log.info("resync of DataFlow %s/%s: %s", namespace, name, err)
    except Exception as err:  # one flow's bug never stops the pass over the others
        log.exception("resync of DataFlow %s/%s failed: %s", namespace, name, redact(str(err)))
        return 0
    if not status:
        return 0
    try:
        ctx.kube.patch(DATAFLOW, namespace, name, {"metadata": {"resourceVersion": meta["resourceVersion"]},
                                                   "status": status}, status=True)
    except Conflict:
        return 0  # changed since the list: its own event's handler reports it
    except (KubeError, OSError) as err:
        log.warning("resync: status of DataFlow %s/%s not written: %s", namespace, name, redact(str(err)))
        return 0
    return 1


class Resyncer:
    """The thread that runs :func:`resync_all` every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, ctx: Context, namespaces: Sequence[str] | None, *, interval: float = RESYNC_SECONDS,
                 counted: Callable[[], AbstractContextManager[None]] | None = None) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(ctx, namespaces, interval, counted),
                                        name="adf-resync", daemon=True)

    def start(self) -> Resyncer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self, ctx: Context, namespaces: Sequence[str] | None, interval: float,
              counted: Callable[[], AbstractContextManager[None]] | None) -> None:
        """A pass at once (the operator's start: every DataFlow resumed), then one every ``interval``."""
        start = True
        while start or not self._stop.wait(interval):
            try:
                written = resync_all(ctx, namespaces, counted, start=start)
                log.info("resync pass done: %d status(es) written", written)
            except Exception:  # the thread outlives any one pass
                log.exception("resync pass failed")
            start = False
