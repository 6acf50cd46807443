"""Registering a flow: the one way a DataFlow becomes (or updates) its flow record.

The operator (``kubectl apply``) and ``adf run`` / ``adf apply`` all register through
:func:`register_flow`, so a flow's stored due time follows one rule wherever it was applied.
"""

from __future__ import annotations

from datetime import datetime

from ..model import DataFlow
from ..schedule import next_run
from .base import FlowRecord, FlowUpsert, Store

__all__ = ["register_flow"]


def register_flow(store: Store, flow: DataFlow, *, now: datetime) -> FlowRecord:
    """Create or update the flow record.

    ``next_run_at`` is recomputed only when the timing (schedule, interval, time
    zone) changed and the flow has run before; otherwise the stored value is kept,
    so applying a flow again (a restarted operator, a second ``adf apply``) never
    skips a run that is due (a flow never run before stays due). A record that would not change is not
    written: the operator's resync pass registers every flow again every few minutes.
    """
    stored = store.get_flow(flow.name, flow.namespace)
    next_at = None
    if stored is not None and stored.last_run_at is not None:
        spec = flow.spec
        timing = (spec.schedule, spec.interval_seconds, spec.timeZone)
        if timing != (stored.schedule, stored.interval_seconds, stored.time_zone):
            next_at = next_run(spec, after=now, last_run_at=stored.last_run_at)
    upsert = FlowUpsert.from_dataflow(flow, next_run_at=next_at)
    if stored is not None and next_at is None and _unchanged(stored, upsert):
        return stored
    return store.upsert_flow(upsert)


def _unchanged(stored: FlowRecord, upsert: FlowUpsert) -> bool:
    """Whether writing ``upsert`` would leave ``stored`` as it is (every field an upsert writes)."""
    return (stored.spec, stored.description, stored.enabled, stored.schedule, stored.interval_seconds,
            stored.time_zone, stored.concurrency_policy) == (
        upsert.spec, upsert.description or "", upsert.enabled, upsert.schedule, upsert.interval_seconds,
        upsert.time_zone, upsert.concurrency_policy)
