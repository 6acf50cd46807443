"""One flow under fault, and the invariants checked after every cell of the matrix.

The flow copies ``src`` (id, amount, status, updated_at) to ``dst`` (id, status, updated_at,
cents): paid rows only, ``cents = amount * 2``; incremental on ``updated_at`` (unique per row),
upsert by ``id``. The tables live wherever the cell puts them (PostgreSQL, MariaDB, SQLite);
the checker reads them directly, never through a proxy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from activedataflow.model import DataFlow
from activedataflow.runner.connectors.sql import decode_cursor_value
from activedataflow.runner.executor import FlowExecutor, RunOutcome
from activedataflow.schedule import utcnow
from activedataflow.store import Store
from activedataflow.store.base import ACTIVE_STATUSES
from activedataflow.store.common import is_lease_lost

from tests.flows import paid_cents, paid_cents_rows
from tests.services import PG_PASSWORD

SECRETS = (PG_PASSWORD,)
ROWS = 90


def source_rows(n: int = ROWS) -> list[dict[str, Any]]:
    return [{"id": i, "amount": i * 7 % 23 - 3, "status": "paid" if i % 3 else "pending", "updated_at": 1000 + i}
            for i in range(1, n + 1)]


def create_tables(src_url: str, sink_url: str, rows: list[dict[str, Any]]) -> None:
    """``src`` with ``rows`` and an empty ``dst`` (both made anew)."""
    for url, table in ((src_url, "src"), (sink_url, "dst")):
        engine = sa.create_engine(url)
        md = sa.MetaData()
        cols: list[sa.Column[Any]] = [sa.Column("id", sa.Integer, primary_key=True, autoincrement=False)]
        if table == "src":
            cols += [sa.Column("amount", sa.Integer), sa.Column("status", sa.String(20)),
                     sa.Column("updated_at", sa.Integer)]
        else:
            cols += [sa.Column("status", sa.String(20)), sa.Column("updated_at", sa.Integer),
                     sa.Column("cents", sa.Integer)]
        t = sa.Table(table, md, *cols)
        with engine.begin() as c:
            t.drop(c, checkfirst=True)
            t.create(c)
            if table == "src" and rows:
                c.execute(t.insert(), rows)
        engine.dispose()


def sink_rows(sink_url: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(sink_url)
    with engine.connect() as c:
        got = [tuple(r) for r in c.execute(sa.text("SELECT id, status, updated_at, cents FROM dst ORDER BY id"))]
    engine.dispose()
    return got


def manifest(name: str, src_url: str, sink_url: str, *, namespace: str = "faults", **kw: Any) -> DataFlow:
    return paid_cents(src_url, sink_url, name=name, namespace=namespace, **kw)


@dataclass
class Cell:
    """A flow, its store and where its rows go: what the checker needs."""

    flow: DataFlow
    store: Store
    src_url: str  # direct (the checker's), not through the proxy
    sink_url: str
    address: str  # host:port of the faulted service, as the runner knows it (the proxy's)
    rows: list[dict[str, Any]]

    def run(self, executor: FlowExecutor) -> RunOutcome:
        record = executor.register(self.flow)
        return executor.run(record, force=True)

    def check(self, *, converged: bool) -> None:
        """The matrix's invariants; ``converged``: a run has succeeded since the fault."""
        got = sink_rows(self.sink_url)
        ids = [r[0] for r in got]
        assert len(ids) == len(set(ids)), f"duplicated rows in the sink: {sorted(ids)}"
        want = paid_cents_rows(self.rows)
        assert set(got) <= set(want), f"rows in the sink the source does not have: {set(got) - set(want)}"
        flow = self.flow
        record = self.store.get_flow(flow.name, flow.namespace)
        assert record is not None
        if record.cursor is not None:
            cursor = decode_cursor_value(record.cursor["updated_at"])
            covered = {r for r in want if r[2] <= cursor}
            assert covered <= set(got), (
                f"the cursor ({cursor}) passed rows that are not in the sink: {sorted(covered - set(got))}")
        runs = self.store.list_runs(flow.name, flow.namespace, limit=100)
        active = [r for r in runs if r.status in ACTIVE_STATUSES]
        assert len(active) <= 1, f"more than one active run of a Forbid flow: {active}"
        for run in runs:
            if run.status != "failed" or is_lease_lost(run):  # a runner that lost the store: reaped by its lease
                continue
            message = run.error_message or ""
            assert self.address in message, f"the error does not name {self.address}: {message!r}"
            for secret in SECRETS:
                assert secret not in message and secret not in (run.error_backtrace or ""), "a password shown"
        if converged:
            assert got == want, "the sink is not the transformed source after a successful run"
            assert runs[0].status == "success"

    def check_unreachable(self, err: Exception) -> None:
        """A runner that could not record its run (the store gone): its error names the store, no password."""
        assert self.address in str(err), f"the error does not name {self.address}: {err}"
        for secret in SECRETS:
            assert secret not in str(err)

    def wait_out_leases(self) -> None:
        """Until the leases of runs left active (their runner lost the store) have lapsed: a computed wait."""
        for run in self.store.active_runs(self.flow.name, self.flow.namespace):
            if run.lease_expires_at is not None:
                time.sleep(max(0.0, (run.lease_expires_at - utcnow()).total_seconds()) + 0.05)
