"""The store at scale: claiming the next due flow among 10,000 stored flows (issue 12, part 4).

Run by hand (not in CI):

    .venv/bin/python bench/store_scale.py [--flows 10000] [--reps 30] [--backends sqlite,postgresql,redis]

Each backend is a fresh throwaway server started like the tests start theirs (tests/services.py:
Debian's PostgreSQL, Redis, MariaDB on loopback; SQLite is a file in a temporary directory),
filled through the store's own API with a realistic mix of flows in 10 namespaces:

* most not due (next_run_at spread over the 24 h after the next hour), 2 % due (minutes ago), 1 % never run,
  2 % disabled (suspended);
* 10 % with a history of 5 finished runs (4 success, 1 failed), 0.2 % with a run in progress
  on another runner (live lease);
* a spec of about 1 kB each (source, five transform steps, sink).

``--fill bulk`` writes the same rows into a SQL store in two INSERTs (seconds, not minutes).

Then it times (median, p95 and min of --reps, wall clock of the calling process):
``due_flows`` over all namespaces and over one, ``claim`` of one due flow, "next due + claim"
(``due_flows`` then ``claim`` of its first: what a heartbeat does per flow), ``active_runs`` and
``list_runs`` of one flow, ``list_runs`` over all, ``reap_expired`` with nothing expired, and a
whole ``heartbeat`` (runner/heartbeat.py) after every due flow was claimed, i.e. with nothing due.

PostgreSQL is ANALYZEd after the fill (what autovacuum does within a minute of such a load);
SQLite is not (the store never runs ANALYZE, so its planner works without statistics).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from activedataflow.runner.executor import FlowExecutor  # noqa: E402
from activedataflow.runner.heartbeat import heartbeat  # noqa: E402
from activedataflow.schedule import utcnow  # noqa: E402
from activedataflow.store import Counts, FlowUpsert, Store, open_store  # noqa: E402

from tests import services  # noqa: E402

NAMESPACES = 10
HISTORY_RUNS = 5


def spec_of(name: str) -> dict[str, Any]:
    return {
        "schedule": "*/15 * * * *",
        "timeZone": "Europe/Berlin",
        "description": f"flow {name}: paid orders into the warehouse",
        "source": {"type": "sql", "connection": {"secretRef": {"name": "shop-db", "key": "url"}}, "table": "orders",
                   "where": [{"column": "status", "op": "=", "value": "paid"}],
                   "incremental": {"cursorColumn": "updated_at"}},
        "transform": [
            {"rename": {"customer_id": "customer"}},
            {"filter": "row.amount > 0"},
            {"set": {"amount_cents": "int(row.amount * 100.0)"}},
            {"set": {"region": "upper(row.region)"}},
            {"drop": ["amount"]},
        ],
        "sink": {"type": "sql", "connection": {"secretRef": {"name": "warehouse-db", "key": "url"}},
                 "table": "fact_orders", "mode": "upsert", "uniqueBy": ["id"]},
    }


def kind_of(i: int) -> str:
    """The mix, by index: deterministic so every backend gets the same store."""
    if i % 50 == 7:
        return "disabled"
    if i % 100 == 3:
        return "never-run"
    if i % 50 == 11:
        return "due"
    return "later"


def fill(store: Store, flows: int, now: datetime) -> dict[str, list[tuple[str, str]]]:
    """Store ``flows`` flows; returns (name, namespace) by kind, plus 'history'."""
    by_kind: dict[str, list[tuple[str, str]]] = {"disabled": [], "never-run": [], "due": [], "later": [],
                                                 "history": []}
    for i in range(flows):
        name, ns = f"flow-{i:05d}", f"ns-{(i // 3) % NAMESPACES}"  # every kind in every namespace
        kind = kind_of(i)
        next_at: datetime | None
        if kind == "never-run":
            next_at = None
        elif kind == "due":
            next_at = now - timedelta(minutes=1 + i % 30)
        else:
            next_at = now + timedelta(seconds=3600 + (i * 7919) % 86_400)  # not due before the bench ends
        store.upsert_flow(FlowUpsert(name=name, namespace=ns, spec=spec_of(name), schedule="*/15 * * * *",
                                     time_zone="Europe/Berlin", enabled=kind != "disabled", next_run_at=next_at))
        by_kind[kind].append((name, ns))
        if kind == "later" and i % 10 == 1:  # history: 5 finished runs, a day ago onwards
            by_kind["history"].append((name, ns))
            for k in range(HISTORY_RUNS):
                at = now - timedelta(days=1) + timedelta(minutes=15 * k, seconds=i % 600)
                run = store.claim(name, ns, now=at, runner_id="bench-fill", lease_seconds=600, trigger="schedule",
                                  run_name=f"{name}-{int(at.timestamp()) // 60}", scheduled_for=at,
                                  require_due=False)
                assert run is not None
                store.start_run(run.id, now=at, lease_seconds=600)
                status = "failed" if k == 2 else "success"
                store.finish_run(run.id, status=status, now=at + timedelta(seconds=3), counts=Counts(100, 100, 0),
                                 error_message="boom" if status == "failed" else None)
        if kind == "later" and i % 500 == 21:  # a run in progress elsewhere, lease live for an hour
            run = store.claim(name, ns, now=now, runner_id="bench-other", lease_seconds=3600, require_due=False)
            assert run is not None
            store.start_run(run.id, now=now, lease_seconds=3600)
    return by_kind


def fill_sql_bulk(store: Any, flows: int, now: datetime) -> dict[str, list[tuple[str, str]]]:
    """The rows ``fill`` writes through the API, inserted in two statements (seconds instead of minutes:
    fewer, shorter runs on a loaded machine). Flow, run and index contents are the same."""
    import sqlalchemy as sa
    from activedataflow.store.schema import flows as flows_table
    from activedataflow.store.schema import runs as runs_table

    by_kind: dict[str, list[tuple[str, str]]] = {"disabled": [], "never-run": [], "due": [], "later": [],
                                                 "history": []}
    flow_rows: list[dict[str, Any]] = []
    run_rows: list[dict[str, Any]] = []
    for i in range(flows):
        name, ns = f"flow-{i:05d}", f"ns-{(i // 3) % NAMESPACES}"
        kind = kind_of(i)
        by_kind[kind].append((name, ns))
        next_at = {"never-run": None, "due": now - timedelta(minutes=1 + i % 30)}.get(
            kind, now + timedelta(seconds=3600 + (i * 7919) % 86_400))
        row: dict[str, Any] = {
            "id": i + 1, "name": name, "namespace": ns, "description": "", "spec": spec_of(name),
            "enabled": kind != "disabled", "schedule": "*/15 * * * *", "interval_seconds": None,
            "time_zone": "Europe/Berlin", "concurrency_policy": "Forbid", "last_run_at": None,
            "last_run_status": None, "next_run_at": next_at, "created_at": now, "updated_at": now,
        }
        if kind == "later" and i % 10 == 1:
            by_kind["history"].append((name, ns))
            for k in range(HISTORY_RUNS):
                at = now - timedelta(days=1) + timedelta(minutes=15 * k, seconds=i % 600)
                status = "failed" if k == 2 else "success"
                run_rows.append({
                    "flow_id": i + 1, "status": status, "trigger": "schedule", "attempt": 1,
                    "run_name": f"{name}-{int(at.timestamp()) // 60}", "scheduled_for": at, "started_at": at,
                    "ended_at": at + timedelta(seconds=3), "duration_seconds": 3.0,
                    "error_message": "boom" if status == "failed" else None, "records_read": 100,
                    "records_written": 100, "records_failed": 0, "runner_id": "bench-fill",
                    "lease_expires_at": None, "created_at": at,
                })
                row.update(last_run_at=at, last_run_status=status)
        if kind == "later" and i % 500 == 21:
            run_rows.append({
                "flow_id": i + 1, "status": "in_progress", "trigger": "schedule", "attempt": 1, "run_name": None,
                "scheduled_for": None, "started_at": now, "ended_at": None, "duration_seconds": None,
                "error_message": None, "records_read": 0, "records_written": 0, "records_failed": 0,
                "runner_id": "bench-other", "lease_expires_at": now + timedelta(hours=1), "created_at": now,
            })
        flow_rows.append(row)
    with store._engine.begin() as c:
        c.execute(flows_table.insert(), flow_rows)
        c.execute(runs_table.insert(), run_rows)
        if store.backend == "postgresql":
            c.execute(sa.text("SELECT setval(pg_get_serial_sequence('flows', 'id'), (SELECT max(id) FROM flows))"))
    return by_kind


def timed(fn: Callable[[], Any], reps: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(reps):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return times, result


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


@contextlib.contextmanager
def server(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'adf.db'}"
    elif backend == "postgresql":
        with services.postgres_server() as url:
            yield url
    elif backend == "redis":
        with services.redis_server() as url:
            import redis

            redis.Redis.from_url(url).flushdb()
            yield url
    elif backend == "mysql":
        with services.mysql_server() as url:
            yield url
    else:
        raise SystemExit(f"unknown backend {backend}")


def bench_backend(backend: str, flows: int, reps: int, bulk: bool) -> list[tuple[str, list[float], str]]:
    rows: list[tuple[str, list[float], str]] = []
    with tempfile.TemporaryDirectory(prefix="adf-store-bench-") as tmpdir, server(backend, Path(tmpdir)) as url:
        store = open_store(url)
        now = utcnow()
        started = time.perf_counter()
        by_kind = fill_sql_bulk(store, flows, now) if bulk and backend != "redis" else fill(store, flows, now)
        fill_s = time.perf_counter() - started
        if backend == "postgresql":
            import sqlalchemy as sa

            with sa.create_engine(url).begin() as c:
                c.execute(sa.text("ANALYZE"))
        print(f"  {backend}: filled {flows} flows in {fill_s:.1f} s", file=sys.stderr)

        def now_() -> datetime:
            return utcnow()

        t, due = timed(lambda: store.due_flows(now_()), reps)
        rows.append(("due_flows, all namespaces", t, f"{len(due)} due"))
        t, due_ns = timed(lambda: store.due_flows(now_(), "ns-3"), reps)
        rows.append(("due_flows, one namespace", t, f"{len(due_ns)} due"))

        later = now + timedelta(hours=2)
        queue = [(f.name, f.namespace) for f in due]
        claims: list[float] = []
        for name, ns in queue[:reps]:
            started = time.perf_counter()
            run = store.claim(name, ns, now=now_(), runner_id="bench", lease_seconds=3600, next_run_at=later,
                              run_name=f"{name}-bench")
            claims.append(time.perf_counter() - started)
            assert run is not None, (name, ns)
        rows.append(("claim one due flow", claims, ""))

        def next_and_claim() -> Any:
            first = store.due_flows(now_())[0]
            return store.claim(first.name, first.namespace, now=now_(), runner_id="bench", lease_seconds=3600,
                               next_run_at=later, run_name=f"{first.name}-bench")

        t, run = timed(next_and_claim, reps)
        rows.append(("next due + claim", t, ""))

        name, ns = by_kind["history"][len(by_kind["history"]) // 2]
        t, found = timed(lambda: store.active_runs(name, ns), reps)
        rows.append(("active_runs of one flow", t, f"{len(found)} active"))
        t, found = timed(lambda: store.list_runs(name, ns, limit=20), reps)
        rows.append(("list_runs of one flow", t, f"{len(found)} runs"))
        t, found = timed(lambda: store.list_runs(limit=50), reps)
        rows.append(("list_runs, all flows (50)", t, ""))
        t, found = timed(lambda: store.reap_expired(now_()), reps)
        rows.append(("reap_expired, none expired", t, f"{len(found)} reaped"))

        for f in store.due_flows(now_()):  # nothing due any more: claimed elsewhere
            store.set_next_run(f.name, f.namespace, later)
        executor = FlowExecutor(store, runner_id="bench")
        t, result = timed(lambda: heartbeat(executor), reps)
        assert result.flows_due == 0, result
        rows.append(("heartbeat, nothing due", t, ""))
        store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--backends", default="sqlite,postgresql,redis")
    parser.add_argument("--fill", choices=["api", "bulk"], default="api",
                        help="bulk: SQL stores get the same rows in two INSERTs (Redis is always filled by the API)")
    args = parser.parse_args()
    os.environ.setdefault("ADF_LOG_LEVEL", "WARNING")
    results = {b: bench_backend(b, args.flows, args.reps, args.fill == "bulk") for b in args.backends.split(",")}
    print(f"\n{args.flows} flows, median / p95 / min of {args.reps}, ms")
    backends = list(results)
    print(f"{'operation':<30}" + "".join(f"{b:>26}" for b in backends))
    for i, (label, _, _) in enumerate(results[backends[0]]):
        cells = []
        for b in backends:
            _, times, _ = results[b][i]
            cell = f"{statistics.median(times) * 1000:.2f} / {p95(times) * 1000:.2f} / {min(times) * 1000:.2f}"
            cells.append(f"{cell:>26}")
        print(f"{label:<30}" + "".join(cells))
    print("\nnotes: " + "; ".join(f"{b}: " + ", ".join(f"{lab} {n}" for lab, _, n in results[b] if n)
                                  for b in backends))


if __name__ == "__main__":
    main()
