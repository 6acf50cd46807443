"""The store at scale: the heartbeat's queries use indexes, whatever the number of stored flows.

No timings here (bench/store_scale.py measures them): the SQL backends' plans come from the
database's own EXPLAIN of every statement the store sends for due_flows, a claim, reap_expired,
active_runs, list_runs and a heartbeat with nothing due, on a store of a few thousand flows;
Redis counts the commands the server ran (INFO commandstats). And a database made by the
previous migration upgrades to the head revision and keeps its data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from activedataflow.store import Counts, FlowUpsert, Store, open_store
from activedataflow.store.migrations import HEAD_REVISION, VERSION_TABLE
from activedataflow.store.redis_store import RedisStore
from activedataflow.store.schema import flows, runs
from activedataflow.store.sql import MIGRATIONS, SqlStore

from tests.core.store.conftest import url_of

NOW = datetime.now(UTC).replace(microsecond=0)
FLOWS = 3000
SPEC = {"schedule": "*/15 * * * *", "source": {"type": "sql", "table": "orders"}, "sink": {"type": "sql"}}

SQL_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]


def kind(i: int) -> str:
    """Most flows not due; 2 % due, 1 % never run, 2 % disabled."""
    if i % 50 == 7:
        return "disabled"
    if i % 100 == 3:
        return "never-run"
    return "due" if i % 50 == 11 else "later"


def ns_of(i: int) -> str:
    return f"ns-{(i // 3) % 10}"  # every kind in every namespace


def next_run_of(i: int) -> datetime | None:
    """Due ones minutes ago, the others from an hour on (the heartbeat's own clock sees the same)."""
    return {"never-run": None, "due": NOW - timedelta(minutes=1 + i % 30)}.get(
        kind(i), NOW + timedelta(seconds=3600 + (i * 7919) % 86_400))


def fill_sql(store: SqlStore) -> None:
    """FLOWS flows, a fifth of them with 5 finished runs and a few with a live run (bulk: the plans
    are the point, not the API's write path, which the conformance suite covers)."""
    flow_rows = [
        {"id": i + 1, "name": f"flow-{i:05d}", "namespace": ns_of(i), "description": "", "spec": SPEC,
         "enabled": kind(i) != "disabled", "schedule": "*/15 * * * *", "concurrency_policy": "Forbid",
         "next_run_at": next_run_of(i), "created_at": NOW - timedelta(days=2), "updated_at": NOW - timedelta(days=2)}
        for i in range(FLOWS)
    ]
    run_rows: list[dict[str, Any]] = []
    for i in range(0, FLOWS, 5):
        for k in range(5):
            at = NOW - timedelta(days=1) + timedelta(minutes=15 * k, seconds=i % 600)
            run_rows.append({
                "flow_id": i + 1, "status": "failed" if k == 2 else "success", "trigger": "schedule", "attempt": 1,
                "run_name": f"flow-{i:05d}-{k}", "scheduled_for": at, "started_at": at,
                "ended_at": at + timedelta(seconds=3), "records_read": 10, "records_written": 10,
                "records_failed": 0, "runner_id": "fill", "lease_expires_at": None, "created_at": at,
            })
    for i in range(1, FLOWS, 300):  # in progress on another runner, lease live
        run_rows.append({
            "flow_id": i + 1, "status": "in_progress", "trigger": "schedule", "attempt": 1, "run_name": None,
            "scheduled_for": NOW, "started_at": NOW, "ended_at": None, "records_read": 0, "records_written": 0,
            "records_failed": 0, "runner_id": "other", "lease_expires_at": NOW + timedelta(hours=1), "created_at": NOW,
        })
    with store._engine.begin() as c:
        c.execute(flows.insert(), flow_rows)
        c.execute(runs.insert(), run_rows)
        if store.backend == "postgresql":
            c.execute(sa.text("ANALYZE flows"))
            c.execute(sa.text("ANALYZE runs"))
        elif store.backend in ("mysql", "mariadb"):
            c.execute(sa.text("ANALYZE TABLE flows, runs"))


@contextmanager
def captured(store: SqlStore) -> Iterator[list[tuple[str, Any]]]:
    """Every statement (with its parameters) the store sends while the block runs."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            sent.append((statement, parameters))

    sa.event.listen(store._engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(store._engine, "before_cursor_execute", record)


def full_scans(store: SqlStore, statement: str, parameters: Any) -> tuple[list[str], str]:
    """The tables among flows and runs that the plan reads whole (table or full index scan), and the plan."""
    with store._engine.connect() as c:
        if store.backend == "sqlite":
            rows = c.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            details = [str(r[-1]) for r in rows]
            scans = [d for d in details if d.split(" ")[:2] in (["SCAN", "flows"], ["SCAN", "runs"])]
            return scans, "\n".join(details)
        if store.backend == "postgresql":
            plan = c.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
            plan = plan if isinstance(plan, list) else json.loads(plan)
            scans = [f"{n['Node Type']} on {n['Relation Name']}" for n in nodes(plan)
                     if n.get("Node Type") == "Seq Scan" and n.get("Relation Name") in ("flows", "runs")]
            return scans, json.dumps(plan, indent=1)
        text = c.exec_driver_sql("EXPLAIN FORMAT=JSON " + statement, parameters).scalar()
        plan = json.loads(text)
        scans = [f"{n['access_type']} on {n['table_name']}" for n in nodes(plan)
                 if n.get("table_name") in ("flows", "runs") and n.get("access_type") in ("ALL", "index")]
        return scans, json.dumps(plan, indent=1)


def nodes(value: Any) -> Iterator[dict[str, Any]]:
    """Every object in a JSON plan, depth first."""
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from nodes(v)
    elif isinstance(value, list):
        for v in value:
            yield from nodes(v)


def heartbeat_with_nothing_due(store: Store) -> None:
    from activedataflow.runner.executor import FlowExecutor
    from activedataflow.runner.heartbeat import heartbeat

    for f in store.due_flows(datetime.now(UTC)):
        store.set_next_run(f.name, f.namespace, datetime.now(UTC) + timedelta(hours=1))
    assert heartbeat(FlowExecutor(store, runner_id="test")).flows_due == 0


def claim_due(store: Store) -> None:
    first = store.due_flows(NOW)[0]
    assert store.claim(first.name, first.namespace, now=NOW, runner_id="test", lease_seconds=60,
                       run_name=f"{first.name}-x", next_run_at=NOW + timedelta(minutes=15)) is not None


OPERATIONS: dict[str, Callable[[Store], object]] = {
    "due_flows": lambda s: s.due_flows(NOW),
    "due_flows of a namespace": lambda s: s.due_flows(NOW, "ns-3"),
    "claim of a due flow": claim_due,
    "reap_expired": lambda s: s.reap_expired(NOW),
    "active_runs": lambda s: s.active_runs("flow-00001", ns_of(1)),
    "list_runs of a flow": lambda s: s.list_runs("flow-00005", ns_of(5), limit=20),
    "heartbeat with nothing due": heartbeat_with_nothing_due,
}


@pytest.fixture
def filled_sql(request: pytest.FixtureRequest) -> Iterator[SqlStore]:
    store = open_store(url_of(request, request.param))
    assert isinstance(store, SqlStore)
    fill_sql(store)
    try:
        yield store
    finally:
        store.close()


@pytest.mark.parametrize("filled_sql", SQL_BACKENDS, indirect=True)
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_the_heartbeat_queries_read_no_table_whole(filled_sql: SqlStore, operation: str) -> None:
    with captured(filled_sql) as sent:
        OPERATIONS[operation](filled_sql)
    assert sent, "no statement captured"
    for statement, parameters in sent:
        scans, plan = full_scans(filled_sql, statement, parameters)
        assert not scans, f"{operation}: {statement}\nreads {scans} whole:\n{plan}"


def next_run_ranges(store: SqlStore, statement: str, parameters: Any) -> tuple[list[str], list[str], str]:
    """The accesses of flows in the plan: those bounded by next_run_at, and the others."""
    with store._engine.connect() as c:
        if store.backend == "sqlite":
            details = [str(r[-1]) for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            accesses = [d for d in details if d.startswith(("SEARCH flows", "SCAN flows"))]
            text = "\n".join(details)
            bounded = [a for a in accesses if "next_run_at" in a.rpartition("(")[2]]  # the constraint, not the name
            return bounded, [a for a in accesses if a not in bounded], text
        if store.backend == "postgresql":
            plan = c.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
            plan = plan if isinstance(plan, list) else json.loads(plan)
            accesses = [n for n in nodes(plan) if n.get("Relation Name") == "flows"]
            bounded = [n for n in accesses if pg_bounded(n)]
            others = [n for n in accesses if not pg_bounded(n)]
            return [str(n["Node Type"]) for n in bounded], [str(n) for n in others], json.dumps(plan, indent=1)
        plan = json.loads(c.exec_driver_sql("EXPLAIN FORMAT=JSON " + statement, parameters).scalar())
        accesses = [n for n in nodes(plan) if n.get("table_name") == "flows"]
        bounded = [n for n in accesses if "next_run_at" in n.get("used_key_parts", [])]
        return [str(n) for n in bounded], [str(n) for n in accesses if n not in bounded], json.dumps(plan, indent=1)


def pg_bounded(node: dict[str, Any]) -> bool:
    """Whether a PostgreSQL plan node reads only a next_run_at range (a bitmap: AND of any, OR of all)."""
    kind = node.get("Node Type")
    children = node.get("Plans", [])
    if kind == "Bitmap Heap Scan" or kind == "BitmapAnd":
        return any(pg_bounded(child) for child in children)
    if kind == "BitmapOr":
        return all(pg_bounded(child) for child in children)
    return "next_run_at" in node.get("Index Cond", "")


@pytest.mark.parametrize("filled_sql", SQL_BACKENDS, indirect=True)
@pytest.mark.parametrize("namespace", [None, "ns-3"])
def test_the_due_lookup_is_a_range_of_the_next_run_index(filled_sql: SqlStore, namespace: str | None) -> None:
    """Not only no table scan: every read of flows is bounded by next_run_at (an index search by
    ``enabled`` alone, what ``enabled IS 1 AND (... OR ...)`` got on SQLite, reads every enabled flow)."""
    with captured(filled_sql) as sent:
        due = filled_sql.due_flows(NOW, namespace)
    expected = [i for i in range(FLOWS) if kind(i) in ("due", "never-run") and namespace in (None, ns_of(i))]
    assert len(due) == len(expected)
    [(statement, parameters)] = sent
    bounded, unbounded, plan = next_run_ranges(filled_sql, statement, parameters)
    assert bounded and not unbounded, plan
    assert "ix_flows_enabled_next_run_at" in plan, plan


@pytest.mark.redis
def test_the_redis_due_lookup_reads_only_the_due_flows(redis_url: str) -> None:
    store = open_store(redis_url)
    assert isinstance(store, RedisStore)
    flows_due = 0
    for i in range(1000):
        store.upsert_flow(FlowUpsert(name=f"flow-{i:05d}", namespace=ns_of(i), spec=SPEC,
                                     enabled=kind(i) != "disabled", next_run_at=next_run_of(i)))
        flows_due += kind(i) in ("due", "never-run")
    run = store.claim("flow-00001", ns_of(1), now=NOW, runner_id="other", lease_seconds=3600, require_due=False)
    assert run is not None
    store.start_run(run.id, now=NOW, lease_seconds=3600)

    def commands(operation: Callable[[], object]) -> dict[str, int]:
        store.r.config_resetstat()
        operation()
        stats = store.r.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()
                if not k.startswith(("cmdstat_config", "cmdstat_info", "cmdstat_script"))}

    store.due_flows(NOW)  # loads the script
    # One range of adf:due, then one script (EVALSHA; the commands it calls count too): an HGETALL per due flow.
    due = commands(lambda: store.due_flows(NOW))
    assert due == {"zrangebyscore": 1, "evalsha": 1, "hgetall": flows_due}, due
    assert len(store.due_flows(NOW, "ns-3")) == sum(1 for i in range(1000) if kind(i) in ("due", "never-run")
                                                    and ns_of(i) == "ns-3")
    due_ns = commands(lambda: store.due_flows(NOW, "ns-3"))
    assert due_ns["hgetall"] == len(store.due_flows(NOW, "ns-3")) < flows_due, due_ns  # only the namespace's
    claimed = commands(lambda: claim_due(store))
    assert claimed["hgetall"] <= flows_due + 2 and sum(claimed.values()) < flows_due + 40, claimed
    beat = commands(lambda: store.reap_expired(NOW))
    assert beat == {"zrangebyscore": 1}
    store.close()


def at_revision(url: str, revision: str) -> None:
    """Migrate an empty database to ``revision`` only (as an older release of the store did)."""
    from alembic import command
    from alembic.config import Config

    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = c
            command.upgrade(config, revision)
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_a_store_at_the_previous_revision_upgrades_and_keeps_its_data(
    request: pytest.FixtureRequest, backend: str
) -> None:
    url = url_of(request, backend)
    at_revision(url, "0001")
    old = open_store(url, migrate=False)  # what the previous release wrote
    old.upsert_flow(FlowUpsert(name="orders", namespace="shop", spec=SPEC, next_run_at=NOW))
    run = old.claim("orders", "shop", now=NOW, runner_id="a", lease_seconds=60, run_name="orders-1")
    assert run is not None
    old.start_run(run.id, now=NOW, lease_seconds=60)
    old.finish_run(run.id, status="success", now=NOW + timedelta(seconds=1), counts=Counts(3, 3, 0),
                   cursor={"id": 3}, commit_cursor=True)
    old.close()

    store = open_store(url)
    try:
        flow = store.get_flow("orders", "shop")
        assert flow is not None and flow.cursor == {"id": 3} and flow.last_run_status == "success"
        [kept] = store.list_runs("orders", "shop")
        assert (kept.id, kept.run_name, kept.status, kept.records_written) == (run.id, "orders-1", "success", 3)
        assert store.claim("orders", "shop", now=NOW, runner_id="b", lease_seconds=60, run_name="orders-1",
                           require_due=False) is None  # the slot's name is still taken
    finally:
        store.close()
    engine = sa.create_engine(url)
    try:
        indexes = {i["name"]: i["column_names"] for i in sa.inspect(engine).get_indexes("runs")}
        assert indexes["ix_runs_flow_status"] == ["flow_id", "status"]
        assert indexes["ix_runs_created_at"] == ["created_at", "id"]
        with engine.connect() as c:
            assert c.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [HEAD_REVISION]
    finally:
        engine.dispose()
