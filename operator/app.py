"""Running the operator: configuration from the environment, kopf settings, ``kopf.run``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

import kopf

from ..kube.client import LIST_PAGE, RestKube, load_transport
from .config import Context, OperatorConfig

__all__ = ["configure_settings", "run_operator", "watch_namespaces"]

FINALIZER = "activedataflow.io/finalizer"  # no handler needs one now: kopf removes it from a DataFlow that has it
# kopf's own bookkeeping annotations. Not "activedataflow.io": kopf ignores every annotation
# under its storage prefix when diffing, and activedataflow.io/run-now must be seen.
PREFIX = "kopf.activedataflow.io"


def watch_namespaces(namespaces: list[str] | None) -> list[str] | None:
    """The namespaces to watch: the argument, else ``ADF_WATCH_NAMESPACES`` (comma list); None = all."""
    if namespaces:
        return namespaces
    listed = [n.strip() for n in os.environ.get("ADF_WATCH_NAMESPACES", "").split(",") if n.strip()]
    return listed or None


DIFFBASE_FIELD = ("status", "lastHandledConfiguration")  # a field of DataFlowStatus (the CRD keeps it)
LEGACY_DIFFBASE_KEY = "last-handled-configuration"  # the annotation (under PREFIX) of operators before it


class StatusDiffBaseStorage(kopf.StatusDiffBaseStorage):
    """kopf's diff base (the DataFlow as last handled) in ``status.lastHandledConfiguration``: kopf writes
    it with the status the handler reports, in one status patch, instead of patching the object's
    annotations too. A DataFlow an older operator handled has it in an annotation only: read from there
    until the status has one (the annotation is left as it is: removing it would be a write per flow)."""

    def __init__(self) -> None:
        super().__init__(field=DIFFBASE_FIELD)
        self._legacy = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX, key=LEGACY_DIFFBASE_KEY)

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)  # without the legacy annotation, as it was
        self._legacy.remove_annotations(essence, set(self._legacy.make_keys(LEGACY_DIFFBASE_KEY, body=body)))
        self._legacy.remove_empty_stanzas(essence)
        return essence

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return super().fetch(body=body) or self._legacy.fetch(body=body)


IDLE_WORKER_SECONDS = 0.5


def configure_settings(settings: kopf.OperatorSettings) -> None:
    """kopf's progress in annotations under its own prefix, its diff base in the status (see
    :class:`StatusDiffBaseStorage`), and the Events posted by the handlers alone."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = StatusDiffBaseStorage()
    settings.posting.enabled = False
    settings.watching.chunk_size = LIST_PAGE  # kopf's initial LIST in pages, as the sweep and the resync list
    # A per-object worker keeps its last event (the whole body) while it idles; kopf's 5 s kept every
    # DataFlow of a restart's listing alive at once. A worker made again later costs a task, nothing more.
    settings.queueing.idle_timeout = IDLE_WORKER_SECONDS
    settings.watching.server_timeout = 300  # re-list now and then: never miss a change for long
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30


def run_operator(
    *,
    namespaces: list[str] | None,
    store_url: str | None,
    standalone: bool = True,
    liveness: str | None = None,
) -> None:
    """Run the operator until SIGINT/SIGTERM. ``namespaces`` None: ADF_WATCH_NAMESPACES, else cluster-wide.

    ``standalone`` (the default) skips kopf's peering: one operator replica runs.
    ``liveness`` is a kopf liveness endpoint such as ``http://0.0.0.0:8080/healthz``.
    Raises UserError for bad configuration (an invalid store URL, no kubeconfig).
    """
    from ..store import open_store
    from . import main
    from .metrics import metrics_port_from_env, start_metrics_server

    config = OperatorConfig.from_env(store_url=store_url)
    ctx = Context(config, RestKube(load_transport()))  # a malformed store URL fails here (exit 2)
    watched = watch_namespaces(namespaces)
    metrics = metrics_store = None
    if (port := metrics_port_from_env()) is not None:
        # Its own store handle: scrapes read it from the metrics thread, answering adf_store_up 0 while it is down.
        metrics_store = open_store(config.store_url, migrate=False)
        metrics = start_metrics_server(metrics_store, port=port)
    if not logging.getLogger().handlers:
        kopf.configure(verbose=bool(os.environ.get("ADF_DEBUG")))
    try:
        kopf.run(
            registry=main.registry,
            standalone=standalone,
            clusterwide=watched is None,
            namespaces=watched or (),
            liveness_endpoint=liveness,
            memo=kopf.Memo(ctx=ctx, namespaces=watched),
        )
    finally:
        if metrics is not None:
            metrics.close()
        if metrics_store is not None:
            metrics_store.close()
        ctx.close()
