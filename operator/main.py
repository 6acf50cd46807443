"""The kopf decorators, and nothing else: each delegates to a plain function of its event's module in
``handlers/`` (reconciles counted).

Handlers run in kopf's thread pool (they are sync). ``memo.ctx`` is the shared
:class:`~activedataflow.operator.config.Context` that ``app.run_operator`` made.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kopf

from ..kube.names import RUN_NOW_ANNOTATION
from ..model import API_GROUP, API_VERSION
from . import app
from .handlers.handle_delete import flow_deleted
from .handlers.handle_reconcile import reconcile_flow, was_heartbeat
from .handlers.handle_resync import RESYNC_SECONDS, Resyncer
from .handlers.handle_run_now import handle_run_now
from .handlers.handle_startup import sweep_deleted_flows
from .login import login as login_with
from .metrics import record_reconcile

registry = kopf.OperatorRegistry()
DATAFLOWS = (API_GROUP, API_VERSION, "dataflows")


@kopf.on.startup(registry=registry)
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    app.configure_settings(settings)


@kopf.on.startup(registry=registry)
def sweep(memo: kopf.Memo, **_: Any) -> None:
    sweep_deleted_flows(memo.ctx, memo.namespaces)


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return login_with(**kwargs)


@kopf.on.startup(registry=registry)
def resync(memo: kopf.Memo, **_: Any) -> None:
    # a thread of ours, not a kopf timer: a timer would put a finalizer on every DataFlow. Its first pass,
    # at once, is what kopf's resume handlers would do on a restart, a page of DataFlows at a time.
    memo.resyncer = Resyncer(memo.ctx, memo.namespaces, interval=RESYNC_SECONDS, counted=_counted).start()


@kopf.on.cleanup(registry=registry)
def close(memo: kopf.Memo, **_: Any) -> None:
    if "resyncer" in memo:
        memo.resyncer.stop()
    memo.ctx.close()


# No kopf resume handler: on a restart kopf would keep every listed DataFlow (and a worker for it) until its
# handler had run in the thread pool, 168 MB at 3,000 flows; the resync thread's first pass resumes them.
@kopf.on.create(*DATAFLOWS, registry=registry)
@kopf.on.update(*DATAFLOWS, field="spec", registry=registry)
def reconcile(*, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, reason: str,
              old: Any = None, **_: Any) -> None:
    # kopf passes a kopf.Reason (a str enum) where its handler protocol says str
    cause = kopf.Reason(reason).value
    with _counted():
        reconcile_flow(body, status=patch.status, ctx=memo.ctx, retry=retry, was_heartbeat=was_heartbeat(cause, old),
                       created=cause == "create")


@contextmanager
def _counted() -> Iterator[None]:
    """adf_operator_reconcile_total by result: a TemporaryError is retried by kopf, anything else raised is an error."""
    try:
        yield
    except kopf.TemporaryError:
        record_reconcile("retry")
        raise
    except BaseException:
        record_reconcile("error")
        raise
    record_reconcile("success")


# Only objects carrying the annotation: a restart does not run (and record progress for) this
# handler on every DataFlow.
@kopf.on.resume(*DATAFLOWS, annotations={RUN_NOW_ANNOTATION: kopf.PRESENT}, registry=registry)
@kopf.on.field(*DATAFLOWS, field=("metadata", "annotations", RUN_NOW_ANNOTATION),
               annotations={RUN_NOW_ANNOTATION: kopf.PRESENT}, registry=registry)
def run_now(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, **_: Any) -> None:
    handle_run_now(body, status=patch.status, ctx=memo.ctx, retry=retry)


def _gone(*, event: kopf.RawEvent, **_: Any) -> bool:
    return event["type"] == "DELETED"


# Deletion as the watch reports it, afterwards: no finalizer (a write of every new DataFlow) holds it up.
@kopf.on.event(*DATAFLOWS, when=_gone, registry=registry)
def deleted(*, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    flow_deleted(body, ctx=memo.ctx)
