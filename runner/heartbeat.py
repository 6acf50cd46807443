"""The heartbeat: run every flow that is due (what the CronJobs and `adf serve` call).

A flow never run before is due. Runs whose runner died (lease expired) are
failed first, which makes their flows due again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from ..errors import UnknownFlow
from ..schedule import utcnow
from ..store.base import Store, Trigger
from .executor import FlowExecutor, RunOutcome

log = logging.getLogger("activedataflow.heartbeat")

__all__ = ["HeartbeatResult", "heartbeat"]


@dataclass
class HeartbeatResult:
    timestamp: datetime
    flows_due: int = 0
    outcomes: list[RunOutcome] = field(default_factory=list)
    reaped: int = 0

    @property
    def flows_triggered(self) -> int:
        return sum(1 for o in self.outcomes if o.run is not None)

    @property
    def failed(self) -> bool:
        return any(o.failed for o in self.outcomes)

    def as_json(self) -> dict[str, object]:
        return {
            "flows_due": self.flows_due,
            "flows_triggered": self.flows_triggered,
            "timestamp": self.timestamp.isoformat(),
        }


def heartbeat(
    executor: FlowExecutor,
    *,
    namespace: str | None = None,
    flow: str | None = None,
    force: bool = False,
    trigger: Trigger = "heartbeat",
    run_name: str | None = None,
) -> HeartbeatResult:
    """Run the due flows (or the one named ``flow``; with ``force`` even if not due).

    ``run_name`` (with ``flow`` and ``force``: a run-now Job's ``ADF_RUN_NAME``) names the run,
    so a second runner for the same request finds it already there and runs nothing."""
    if run_name is not None and (flow is None or not force):
        raise ValueError("run_name names the run of one forced flow")
    store: Store = executor.store
    now = utcnow()
    result = HeartbeatResult(timestamp=now)
    reaped = store.reap_expired(now)
    result.reaped = len(reaped)
    for run in reaped:
        log.warning("run %s of %s/%s failed: %s", run.run_name, run.namespace, run.flow_name, run.error_message)
    if flow is not None:
        ns = namespace or "default"
        record = store.get_flow(flow, ns)
        if record is None:
            raise UnknownFlow(f"flow '{flow}' not found in namespace '{ns}' of the store {store.url_for_display}")
        due = [record] if force or any(f.key == record.key for f in store.due_flows(now, ns)) else []
    else:
        due = store.due_flows(now, namespace)
    result.flows_due = len(due)
    for record in due:
        outcome = executor.run(record, trigger="manual" if force else trigger, force=force, run_name=run_name)
        if outcome.skipped:
            log.info("flow %s/%s skipped: %s", record.namespace, record.name, outcome.skipped)
        result.outcomes.append(outcome)
    return result
