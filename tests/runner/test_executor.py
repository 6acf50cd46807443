"""The FlowExecutor: lifecycle, cursor safety under injected faults, retries, concurrency policy."""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from activedataflow.kube.names import manual_run_name, run_name_for
from activedataflow.model import DataFlow, parse_dataflow
from activedataflow.runner import connectors
from activedataflow.runner.executor import FlowExecutor, dataflow_from_record
from activedataflow.store import open_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.flows import paid_cents, paid_cents_rows
from tests.runner.stores import StoreWith


class InjectedFault(RuntimeError):
    pass


class FaultySink:
    """Wraps a real sink; the n-th write writes half its rows, then fails (a crash mid-batch)."""

    def __init__(self, inner: Any, fail_on_write: int | None) -> None:
        self.inner, self.fail_on_write, self.writes = inner, fail_on_write, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        self.writes += 1
        if self.writes == self.fail_on_write:
            self.inner.write(rows[: len(rows) // 2])
            raise InjectedFault(f"injected fault on write {self.writes}")
        self.inner.write(rows)


def flow_doc(src: str, sink: str, **kw: Any) -> DataFlow:
    return paid_cents(src, sink, name="prop-flow", namespace="test", **kw)


def make_dbs(tmp: Path, *, pk: bool) -> tuple[str, str]:
    src, dst = tmp / "src.db", tmp / "dst.db"
    for p in (src, dst):
        p.unlink(missing_ok=True)
    with sqlite3.connect(src) as db:
        db.execute("CREATE TABLE src (id INTEGER PRIMARY KEY, amount INTEGER, status TEXT, updated_at INTEGER)")
    with sqlite3.connect(dst) as db:
        key = "PRIMARY KEY" if pk else ""
        db.execute(f"CREATE TABLE dst (id INTEGER {key}, status TEXT, updated_at INTEGER, cents INTEGER)")
    return f"sqlite:///{src}", f"sqlite:///{dst}"


def expected_sink(src_path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(src_path) as db:
        db.row_factory = sqlite3.Row
        return paid_cents_rows(map(dict, db.execute("SELECT id, amount, status, updated_at FROM src")))


def actual_sink(dst_path: Path) -> list[tuple[int, str, int, int]]:
    with sqlite3.connect(dst_path) as db:
        return sorted(db.execute("SELECT id, status, updated_at, cents FROM dst").fetchall())


rows_strategy = st.lists(
    st.tuples(st.integers(-1000, 1000), st.sampled_from(["paid", "pending"])),
    min_size=0,
    max_size=40,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rounds=st.lists(
        st.tuples(rows_strategy, st.one_of(st.none(), st.integers(1, 6))), min_size=1, max_size=4
    ),
    mode=st.sampled_from(["upsert", "insert"]),
    transaction=st.sampled_from(["batch", "run", "none"]),
    src_batch=st.integers(1, 7),
    sink_batch=st.integers(1, 7),
    incremental=st.booleans(),
    pushdown=st.booleans(),
)
def test_after_a_successful_run_sink_equals_transformed_source_without_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rounds: list[tuple[list[tuple[int, str]], int | None]],
    mode: str, transaction: str, src_batch: int, sink_batch: int, incremental: bool, pushdown: bool,
) -> None:
    """Any data, any sequence of runs with faults injected mid-batch: once a run succeeds the
    sink holds exactly the transformed source — no row skipped, none duplicated. On the row
    path the faults hit the sink; SQLite -> SQLite may also run pushed down (one statement)."""
    tmp_path = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis reuses the fixture: one dir per example
    monkeypatch.setenv("ADF_PUSHDOWN", "on" if pushdown else "off")
    if mode == "insert":
        # Insert mode is exact only with a cursor (a full re-read inserts again by design) and a
        # transaction (with `none`, half a batch may land before the crash, as documented).
        incremental = True
        transaction = "batch" if transaction == "none" else transaction
    src_url, dst_url = make_dbs(tmp_path, pk=(mode == "upsert"))
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    flow = flow_doc(src_url, dst_url, mode=mode, transaction=transaction, src_batch=src_batch,
                    sink_batch=sink_batch, incremental=incremental)
    real_open_sink = connectors.open_sink
    executor = FlowExecutor(store)
    record = executor.register(flow)
    next_id, tick = 1, 0
    for new_rows, fail_on in [*rounds, ([], None)]:  # always end with a clean run
        with sqlite3.connect(tmp_path / "src.db") as db:
            for amount, status in new_rows:
                tick += 1  # cursor values only grow, as a real updated_at does
                db.execute("INSERT INTO src VALUES (?, ?, ?, ?)", (next_id, amount, status, tick))
                next_id += 1
        monkeypatch.setattr(
            connectors, "open_sink", lambda *a, _f=fail_on, **k: FaultySink(real_open_sink(*a, **k), _f)
        )
        outcome = executor.run(store.get_flow(record.name, record.namespace) or record, force=True)
        assert outcome.run is not None
        if outcome.run.status == "failed":
            assert "injected fault" in (outcome.run.error_message or "")
    assert outcome.run.status == "success"
    assert actual_sink(tmp_path / "dst.db") == expected_sink(tmp_path / "src.db")
    store.close()


def test_failed_run_records_error_and_backtrace_and_keeps_cursor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    monkeypatch.setenv("ADF_PUSHDOWN", "off")  # faults are injected into the row path's sink
    src_url, dst_url = make_dbs(tmp_path, pk=True)
    with sqlite3.connect(tmp_path / "src.db") as db:
        db.executemany("INSERT INTO src VALUES (?, ?, 'paid', ?)", [(i, i, i) for i in range(1, 11)])
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    flow = flow_doc(src_url, dst_url, mode="upsert", transaction="batch", src_batch=4, sink_batch=4,
                    incremental=True)
    executor = FlowExecutor(store)
    record = executor.register(flow)
    real_open_sink = connectors.open_sink
    monkeypatch.setattr(connectors, "open_sink", lambda *a, **k: FaultySink(real_open_sink(*a, **k), 2))
    outcome = executor.run(record, force=True)
    run = outcome.run
    assert run is not None and run.status == "failed"
    assert run.error_message and "injected fault on write 2" in run.error_message
    assert run.error_backtrace and "InjectedFault" in run.error_backtrace
    assert run.started_at and run.ended_at and run.duration_seconds is not None
    assert run.records_read == 8  # two source batches were read
    cursor = store.get_flow("prop-flow", "test").cursor  # only the first, committed batch is covered
    assert cursor == {"updated_at": 4, "id": 4}  # the last row of the first batch (ids and updated_at 1..4)
    assert len(actual_sink(tmp_path / "dst.db")) == 4


def test_run_lifecycle_is_recorded_as_success_with_counts(tmp_path: Path) -> None:
    src_url, dst_url = make_dbs(tmp_path, pk=True)
    with sqlite3.connect(tmp_path / "src.db") as db:
        db.executemany("INSERT INTO src VALUES (?, ?, ?, ?)",
                       [(i, i, "paid" if i % 2 else "pending", i) for i in range(1, 21)])
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    executor = FlowExecutor(store)
    record = executor.register(flow_doc(src_url, dst_url, mode="upsert", transaction="run", src_batch=6,
                                        sink_batch=3, incremental=False))
    run = executor.run(record).run  # never run before: due
    assert run is not None
    assert (run.status, run.records_read, run.records_written, run.records_failed) == ("success", 20, 10, 0)
    assert run.trigger == "schedule" and run.attempt == 1
    assert run.scheduled_for is not None  # the contract: <flow>-<unix minutes of the slot>
    assert run.run_name == f"prop-flow-{int(run.scheduled_for.timestamp()) // 60}"
    flow = store.get_flow("prop-flow", "test")
    assert flow is not None and flow.last_run_status == "success" and flow.next_run_at is not None
    assert [r.status for r in store.list_runs("prop-flow", "test")] == ["success"]


def test_retries_make_new_attempts_until_success(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADF_PUSHDOWN", "off")  # faults are injected into the row path's sink
    src_url, dst_url = make_dbs(tmp_path, pk=True)
    with sqlite3.connect(tmp_path / "src.db") as db:
        db.executemany("INSERT INTO src VALUES (?, ?, 'paid', ?)", [(i, i, i) for i in range(1, 6)])
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    sleeps: list[float] = []
    executor = FlowExecutor(store, sleep=sleeps.append)
    record = executor.register(flow_doc(src_url, dst_url, mode="upsert", transaction="batch", src_batch=2,
                                        sink_batch=2, incremental=True, retries=3))
    real_open_sink = connectors.open_sink
    failures = iter([1, 1, None])
    monkeypatch.setattr(connectors, "open_sink", lambda *a, **k: FaultySink(real_open_sink(*a, **k), next(failures)))
    outcome = executor.run(record, force=True)
    assert [r.status for r in outcome.attempts] == ["failed", "failed", "success"]
    assert [r.attempt for r in outcome.attempts] == [1, 2, 3]
    assert len(sleeps) == 2
    assert actual_sink(tmp_path / "dst.db") == expected_sink(tmp_path / "src.db")


def test_forbid_skips_a_flow_whose_run_is_active(tmp_path: Path) -> None:
    src_url, dst_url = make_dbs(tmp_path, pk=True)
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    executor = FlowExecutor(store)
    record = executor.register(flow_doc(src_url, dst_url, mode="upsert", transaction="batch", src_batch=2,
                                        sink_batch=2, incremental=False))
    from activedataflow.schedule import utcnow

    other = store.claim(record.name, record.namespace, now=utcnow(), runner_id="other", lease_seconds=300,
                        require_due=False)
    assert other is not None
    outcome = executor.run(record, force=True)
    assert outcome.run is None and outcome.skipped and "active" in outcome.skipped


def test_decimal_amounts_stay_exact(tmp_path: Path) -> None:
    """int(amount * 100) on a NUMERIC(12,2) of 0.29 gives 29, not 28."""
    from tests.cli_helpers import EXPECTED_FACT, ORDERS, manifest, sqlite_fact, sqlite_orders

    sqlite_orders(tmp_path / "shop.db", ORDERS)
    sqlite_fact(tmp_path / "wh.db")
    from activedataflow.model import load_manifests

    flow = load_manifests(manifest(tmp_path, source_url=f"sqlite:///{tmp_path / 'shop.db'}",
                                   sink_url=f"sqlite:///{tmp_path / 'wh.db'}"))[0]
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    executor = FlowExecutor(store)
    run = executor.run(executor.register(flow), force=True).run
    assert run is not None and run.status == "success", run and run.error_message
    with sqlite3.connect(tmp_path / "wh.db") as db:
        got = {r[0]: (r[1], r[2]) for r in db.execute("SELECT id, customer, amount_cents FROM fact_orders")}
    assert got == EXPECTED_FACT


def paid_doubled(row: dict[str, Any]) -> dict[str, Any] | None:
    """A `python:` step that declares no columns: they come from its first returned row."""
    if row["status"] != "paid":
        return None
    return {"id": row["id"], "status": row["status"], "updated_at": row["updated_at"], "cents": row["amount"] * 2}


def test_python_step_without_declared_columns_opens_the_sink_after_its_first_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src_url, dst_url = make_dbs(tmp_path, pk=True)
    with sqlite3.connect(tmp_path / "src.db") as db:  # the first batch yields no row at all
        db.executemany("INSERT INTO src VALUES (?, ?, ?, ?)",
                       [(i, i, "pending" if i <= 3 else "paid", i) for i in range(1, 9)])
    flow = flow_doc(src_url, dst_url, mode="upsert", transaction="batch", src_batch=3, sink_batch=3,
                    incremental=True)
    doc = flow.model_dump(by_alias=True, mode="json", exclude_none=True)
    doc["spec"]["transform"] = [{"python": "tests.runner.test_executor:paid_doubled"}]
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    executor = FlowExecutor(store)
    run = executor.run(executor.register(parse_dataflow(doc)), force=True).run
    assert run is not None and run.status == "success", run and run.error_message
    assert (run.records_read, run.records_written) == (8, 5)
    assert actual_sink(tmp_path / "dst.db") == expected_sink(tmp_path / "src.db")


# --------------------------------------------------------------------------- run names (CONTRACT.md, DataFlowRun)


def test_a_row_whose_expression_would_not_end_is_counted_failed_with_the_reason(tmp_path: Path) -> None:
    # int(decimal(row.status)) on '1e999999999' pinned a CPU for over ten minutes and the run never reported
    src_url, dst_url = make_dbs(tmp_path, pk=True)
    with sqlite3.connect(tmp_path / "src.db") as db:
        db.executemany("INSERT INTO src VALUES (?, ?, ?, ?)", [(1, 1, "1e999999999", 1), (2, 2, "12", 2)])
    with sqlite3.connect(tmp_path / "dst.db") as db:
        db.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, n INTEGER)")
    doc = flow_doc(src_url, dst_url, mode="insert", transaction="run", src_batch=10, sink_batch=10,
                   incremental=False).model_dump(by_alias=True, exclude_none=True)
    doc["spec"]["transform"] = [{"set": {"n": "int(decimal(row.status))"}}, {"select": ["id", "n"]}]
    doc["spec"]["sink"] |= {"table": "big", "maxFailedRecords": 1}
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    run = FlowExecutor(store).run(FlowExecutor(store).register(parse_dataflow(doc))).run
    assert run is not None
    assert (run.status, run.records_read, run.records_written, run.records_failed) == ("success", 2, 1, 1)
    with sqlite3.connect(tmp_path / "dst.db") as db:
        assert db.execute("SELECT id, n FROM big").fetchall() == [(2, 12)]
        db.execute("DELETE FROM big")
    doc["spec"]["sink"]["maxFailedRecords"] = 0  # the reason reaches the failed run
    executor = FlowExecutor(store)
    failed = executor.run(executor.register(parse_dataflow(doc)), trigger="manual", force=True).run
    assert failed is not None and failed.status == "failed"
    reason = "spec.transform.0.set.n: int() of Decimal 1E+999999999: more than 4300 digits"
    assert reason in (failed.error_message or "")


def _plain_flow(tmp_path: Path, **kw: Any) -> tuple[Any, FlowExecutor, Any]:
    src_url, dst_url = make_dbs(tmp_path, pk=True)
    with sqlite3.connect(tmp_path / "src.db") as db:
        db.executemany("INSERT INTO src VALUES (?, ?, 'paid', ?)", [(i, i, i) for i in range(1, 4)])
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    executor = FlowExecutor(store, runner_id="runner-a", sleep=lambda s: None)
    record = executor.register(flow_doc(src_url, dst_url, mode="upsert", transaction="batch", src_batch=2,
                                        sink_batch=2, incremental=False, **kw))
    return store, executor, record


@pytest.mark.parametrize(
    ("slot", "expected"),
    [
        # 2026-01-01T00:00:00Z is 1767225600 s since the epoch (56 years, 14 of them leap: 20454 days * 86400),
        # 1767225600 / 60 = 29453760 minutes.
        ("2026-01-01T00:00:00+00:00", "prop-flow-29453760"),
        ("2026-01-01T00:00:59+00:00", "prop-flow-29453760"),  # seconds do not count: the slot's minute
        ("2026-01-01T00:01:00+00:00", "prop-flow-29453761"),
        ("2026-01-01T01:00:00+01:00", "prop-flow-29453760"),  # the same instant in another zone
        ("1970-01-01T00:00:00+00:00", "prop-flow-0"),
    ],
)
def test_a_scheduled_run_is_named_flow_dash_unix_minutes_of_its_slot(tmp_path: Path, slot: str, expected: str) -> None:
    from datetime import datetime

    store, executor, record = _plain_flow(tmp_path)
    store.set_next_run(record.name, record.namespace, datetime.fromisoformat(slot))
    run = executor.run(store.get_flow(record.name, record.namespace)).run
    assert run is not None and run.status == "success", run and run.error_message
    assert run.run_name == expected


def test_scheduled_retries_add_the_attempt_to_the_slot_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime

    monkeypatch.setenv("ADF_PUSHDOWN", "off")
    store, executor, record = _plain_flow(tmp_path, retries=2)
    store.set_next_run(record.name, record.namespace, datetime.fromisoformat("2026-01-01T00:00:00+00:00"))
    real_open_sink = connectors.open_sink
    failures = iter([1, 1, None])
    monkeypatch.setattr(connectors, "open_sink", lambda *a, **k: FaultySink(real_open_sink(*a, **k), next(failures)))
    outcome = executor.run(store.get_flow(record.name, record.namespace))
    assert [r.run_name for r in outcome.attempts] == ["prop-flow-29453760", "prop-flow-29453760-2",
                                                      "prop-flow-29453760-3"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1767225600", "paid-orders-manual-1767225600"),  # `date +%s`, what `adf trigger` sets
        ("retry-after-fix", "paid-orders-manual-retry-after-fix"),
    ],
)
def test_a_manual_run_is_named_from_the_run_now_value(value: str, expected: str) -> None:
    assert manual_run_name("paid-orders", value) == expected


@pytest.mark.parametrize(
    "value", ["Now!", "2026-01-01T00:00:00Z", "a.b", "-1", "x" * 100, "", "1767225600 ", "ünïcode"]
)
def test_a_run_now_value_unusable_in_a_name_is_hashed_deterministically(value: str) -> None:
    import re

    name = manual_run_name("paid-orders", value)
    assert name == manual_run_name("paid-orders", value)
    assert re.fullmatch(r"paid-orders-manual-[0-9a-f]{12}", name), name
    assert name != manual_run_name("paid-orders", value + "x")


def test_a_manual_run_name_of_a_long_flow_stays_a_bounded_dns_subdomain() -> None:
    import re

    flow = "f" * 253
    a, b = manual_run_name(flow, "1767225600"), manual_run_name(flow, "1767225601")
    assert a != b
    for name in (a, b, f"{a}-101"):  # room for the attempt suffix of retries
        assert len(name) <= 253
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name)
    assert manual_run_name("g" + "f" * 252, "1767225600") != a  # the cut part is in the hash


def test_a_manual_run_without_a_given_name_is_unique(tmp_path: Path) -> None:
    """`adf run` / `adf heartbeat --force` outside a cluster: every run is a new one."""
    store, executor, record = _plain_flow(tmp_path)
    first = executor.run(record, trigger="manual", force=True).run
    second = executor.run(store.get_flow(record.name, record.namespace), trigger="manual", force=True).run
    assert first is not None and second is not None
    assert first.run_name != second.run_name
    assert first.run_name.startswith("prop-flow-manual-") and second.run_name.startswith("prop-flow-manual-")


def test_a_second_runner_with_the_same_manual_run_name_finds_the_run_and_does_not_execute(tmp_path: Path) -> None:
    store, executor, record = _plain_flow(tmp_path)
    name = manual_run_name(record.name, "1767225600")
    first = executor.run(record, trigger="manual", force=True, run_name=name)
    assert first.run is not None and first.run.status == "success" and first.run.run_name == name

    second_runner = FlowExecutor(store, runner_id="runner-b")
    again = second_runner.run(store.get_flow(record.name, record.namespace), trigger="manual", force=True,
                              run_name=name)
    assert again.run is None and again.attempts == []
    assert again.skipped is not None
    assert again.skipped.startswith(f"run {name} for this slot already exists (succeeded")
    assert [r.run_name for r in store.list_runs(record.name, record.namespace)] == [name]


def test_a_second_runner_for_a_slot_whose_run_is_active_says_so(tmp_path: Path) -> None:
    from activedataflow.schedule import utcnow

    store, _, record = _plain_flow(tmp_path)
    name = manual_run_name(record.name, "1767225600")
    held = store.claim(record.name, record.namespace, now=utcnow(), runner_id="runner-a", lease_seconds=300,
                       run_name=name, require_due=False, trigger="manual")
    assert held is not None
    outcome = FlowExecutor(store, runner_id="runner-b").run(record, trigger="manual", force=True, run_name=name)
    assert outcome.run is None
    assert outcome.skipped is not None
    assert outcome.skipped.startswith(f"run {name} for this slot already exists (pending, runner runner-a")


def test_a_second_runner_whose_slot_failed_names_the_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADF_PUSHDOWN", "off")
    store, executor, record = _plain_flow(tmp_path)
    name = manual_run_name(record.name, "1767225600")
    real_open_sink = connectors.open_sink
    monkeypatch.setattr(connectors, "open_sink", lambda *a, **k: FaultySink(real_open_sink(*a, **k), 1))
    assert executor.run(record, trigger="manual", force=True, run_name=name).failed
    again = FlowExecutor(store, runner_id="runner-b").run(record, trigger="manual", force=True, run_name=name)
    assert again.run is None and again.skipped is not None
    assert again.skipped.startswith(f"run {name} for this slot already exists (failed: ")
    assert "injected fault on write 1" in again.skipped


# --------------------------------------------------------------------------- a replaced runner resumes its slot


def _hold(store: Any, record: Any, name: str | None, *, lease: float, require_due: bool = False,
          slot: Any = None) -> Any:
    """A run claimed by runner-a, which then never renews its lease (its Pod was killed)."""
    from activedataflow.schedule import next_run, utcnow

    now = utcnow()
    held = store.claim(record.name, record.namespace, now=now, runner_id="runner-a", lease_seconds=lease,
                       run_name=name, require_due=require_due, trigger="manual" if require_due is False else "schedule",
                       scheduled_for=slot or record.next_run_at or now,
                       next_run_at=next_run(dataflow_from_record(record).spec, after=now, last_run_at=now))
    assert held is not None
    return store.start_run(held.id, now=now, lease_seconds=lease)


def test_a_replaced_runner_takes_over_the_slot_of_a_runner_that_died(tmp_path: Path) -> None:
    """The run-now Job's Pod was OOM-killed mid-run; the Job's replacement Pod (same ADF_RUN_NAME) arrives
    before the dead runner's lease lapsed: it waits for the lease, then runs the slot as the next attempt."""
    import time

    store, _, record = _plain_flow(tmp_path)
    name = manual_run_name(record.name, "1767225600")
    held = _hold(store, record, name, lease=0.5)
    reflected: list[tuple[str, str, str]] = []

    class Reflector:
        def run_started(self, flow: Any, run: Any) -> None:
            reflected.append(("started", run.run_name, run.status))

        def run_finished(self, flow: Any, run: Any, **kw: Any) -> None:
            reflected.append(("finished", run.run_name, run.status))

    replacement = FlowExecutor(store, runner_id="runner-b", sleep=time.sleep, reflector=Reflector())
    started = time.monotonic()
    outcome = replacement.run(record, trigger="manual", force=True, run_name=name, resume=True)
    assert time.monotonic() - started < 10
    assert outcome.skipped is None
    assert [(r.run_name, r.attempt, r.status) for r in outcome.attempts] == [(f"{name}-2", 2, "success")]
    dead = store.get_run(held.id)
    assert dead.status == "failed" and dead.error_message.startswith("runner lost:")
    assert reflected == [  # the dead runner's DataFlowRun is not left Running
        ("finished", name, "failed"), ("started", f"{name}-2", "in_progress"), ("finished", f"{name}-2", "success"),
    ]


def test_a_replaced_runner_leaves_a_slot_alone_whose_runner_renews_its_lease(tmp_path: Path) -> None:
    store, _, record = _plain_flow(tmp_path)
    name = manual_run_name(record.name, "1767225600")
    held = _hold(store, record, name, lease=30)
    waits: list[float] = []

    def alive(seconds: float) -> None:  # while the second runner waits, the first renews its lease
        from activedataflow.schedule import utcnow

        waits.append(seconds)
        assert store.renew_lease(held.id, now=utcnow(), lease_seconds=60)

    outcome = FlowExecutor(store, runner_id="runner-b", sleep=alive).run(
        record, trigger="manual", force=True, run_name=name, resume=True
    )
    assert outcome.run is None and len(waits) == 1
    assert outcome.skipped is not None
    assert outcome.skipped.startswith(f"run {name} for this slot already exists (running, runner runner-a")
    assert store.get_run(held.id).status == "in_progress"


def test_a_replaced_runner_continues_the_retries_of_a_runner_that_died_in_its_backoff(tmp_path: Path) -> None:
    from activedataflow.schedule import utcnow
    from activedataflow.store.base import Counts

    store, _, record = _plain_flow(tmp_path, retries=1)
    name = manual_run_name(record.name, "1767225600")
    held = _hold(store, record, name, lease=60)
    store.finish_run(held.id, status="failed", now=utcnow(), counts=Counts(), error_message="sink: deadlock")
    outcome = FlowExecutor(store, runner_id="runner-b").run(
        record, trigger="manual", force=True, run_name=name, resume=True
    )
    assert [(r.run_name, r.attempt, r.status) for r in outcome.attempts] == [(f"{name}-2", 2, "success")]


def test_a_replaced_runner_does_not_retry_past_the_limit(tmp_path: Path) -> None:
    from activedataflow.schedule import utcnow
    from activedataflow.store.base import Counts

    store, _, record = _plain_flow(tmp_path, retries=0)
    name = manual_run_name(record.name, "1767225600")
    held = _hold(store, record, name, lease=60)
    store.finish_run(held.id, status="failed", now=utcnow(), counts=Counts(), error_message="sink: deadlock")
    outcome = FlowExecutor(store, runner_id="runner-b").run(
        record, trigger="manual", force=True, run_name=name, resume=True
    )
    assert outcome.run is None
    assert outcome.skipped == f"run {name} for this slot already exists (failed: sink: deadlock)"


def test_a_replaced_scheduled_runner_waits_for_the_dead_runners_lease_then_runs_the_flow(tmp_path: Path) -> None:
    """`adf heartbeat --flow F` in the replacement Pod of a CronJob's Job: the flow is not due (its dead
    run's claim moved next_run_at on), but that run's lease lapses unrenewed: the slot is run."""
    import time

    from activedataflow.runner.heartbeat import heartbeat

    store, _, record = _plain_flow(tmp_path)
    held = _hold(store, record, run_name_for(record.name, record.next_run_at or time_now()), lease=0.5,
                 require_due=True)
    reflected: list[tuple[str, str]] = []

    class Reflector:
        def run_started(self, flow: Any, run: Any) -> None:
            pass

        def run_finished(self, flow: Any, run: Any, **kw: Any) -> None:
            reflected.append((run.run_name, run.status))

    replacement = FlowExecutor(store, runner_id="runner-b", sleep=time.sleep, reflector=Reflector())
    result = heartbeat(replacement, namespace=record.namespace, flow=record.name, trigger="schedule")
    (outcome,) = result.outcomes
    assert outcome.run is not None and outcome.run.status == "success", outcome.skipped
    assert (outcome.run.run_name, outcome.run.attempt) == (f"{held.run_name}-2", 2)  # the same slot, taken over
    assert outcome.run.scheduled_for == held.scheduled_for and outcome.run.trigger == "schedule"
    assert store.get_run(held.id).status == "failed"
    assert result.reaped == 1
    assert reflected[0] == (held.run_name, "failed") and reflected[-1] == (outcome.run.run_name, "success")


def test_a_replaced_scheduled_runner_arriving_after_the_lease_lapsed_takes_the_slot_over(tmp_path: Path) -> None:
    import time

    from activedataflow.runner.heartbeat import heartbeat

    store, _, record = _plain_flow(tmp_path)
    slot = time_now()  # the run's name and its slot from one instant (apart, a minute could fall between them)
    held = _hold(store, record, run_name_for(record.name, slot), lease=0.2, require_due=True, slot=slot)
    time.sleep(0.3)
    result = heartbeat(FlowExecutor(store, runner_id="runner-b"), namespace=record.namespace, flow=record.name)
    (outcome,) = result.outcomes
    assert outcome.run is not None and outcome.run.status == "success", outcome.skipped
    assert (outcome.run.run_name, outcome.run.attempt) == (f"{held.run_name}-2", 2)


def test_the_next_tick_after_a_dead_runner_runs_its_own_slot(tmp_path: Path) -> None:
    """The flow is due (a new tick): the lost run is failed, the tick runs under its own name."""
    import time
    from datetime import timedelta

    from activedataflow.runner.heartbeat import heartbeat

    store, _, record = _plain_flow(tmp_path)
    earlier = time_now() - timedelta(minutes=5)
    held = _hold(store, record, run_name_for(record.name, earlier), lease=0.2, require_due=True, slot=earlier)
    time.sleep(0.3)
    store.set_next_run(record.name, record.namespace, time_now())  # the tick
    result = heartbeat(FlowExecutor(store, runner_id="runner-b"), namespace=record.namespace, flow=record.name)
    (outcome,) = result.outcomes
    assert outcome.run is not None and outcome.run.status == "success", outcome.skipped
    assert outcome.run.attempt == 1 and outcome.run.scheduled_for > earlier
    assert outcome.run.run_name == f"prop-flow-{int(outcome.run.scheduled_for.timestamp()) // 60}"
    assert held.run_name == f"prop-flow-{int(earlier.timestamp()) // 60}" != outcome.run.run_name
    assert store.get_run(held.id).status == "failed"


def test_a_second_scheduled_runner_leaves_a_live_run_alone(tmp_path: Path) -> None:
    from activedataflow.runner.heartbeat import heartbeat
    from activedataflow.schedule import utcnow

    store, _, record = _plain_flow(tmp_path)
    slot = time_now()
    held = _hold(store, record, run_name_for(record.name, slot), lease=30, require_due=True, slot=slot)
    second = FlowExecutor(store, runner_id="runner-b",
                          sleep=lambda s: store.renew_lease(held.id, now=utcnow(), lease_seconds=60))
    result = heartbeat(second, namespace=record.namespace, flow=record.name, trigger="schedule")
    assert result.outcomes == [] and result.flows_due == 0
    assert store.get_run(held.id).status == "in_progress"


def time_now() -> Any:
    from activedataflow.schedule import utcnow

    return utcnow()


# --------------------------------------------------------------------------- the CronJob is the clock


def _clock_flow(tmp_path: Path, **spec: Any) -> tuple[Any, FlowExecutor, Any]:
    """A plain flow with ``spec`` (a schedule instead of the interval), registered."""
    src_url, dst_url = make_dbs(tmp_path, pk=True)
    with sqlite3.connect(tmp_path / "src.db") as db:
        db.executemany("INSERT INTO src VALUES (?, ?, 'paid', ?)", [(i, i, i) for i in range(1, 4)])
    doc = flow_doc(src_url, dst_url, mode="upsert", transaction="batch", src_batch=2, sink_batch=2,
                   incremental=False).model_dump(mode="json", exclude_none=True)
    doc["spec"].pop("interval")
    doc["spec"].update(spec)
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    executor = FlowExecutor(store, runner_id="runner-a", sleep=lambda s: None)
    return store, executor, executor.register(parse_dataflow(doc))


def _at(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


def test_a_job_for_a_tick_after_the_stores_slot_runs_that_tick(tmp_path: Path) -> None:
    # 02:30 Berlin does not exist on 2026-03-29: Kubernetes starts no Job then, the next one for 2026-03-30
    # 00:30 UTC. A store that expected 01:00 UTC on the 29th must not skip that Job as 23.5 h late.
    store, executor, record = _clock_flow(tmp_path, schedule="30 2 * * *", timeZone="Europe/Berlin",
                                          startingDeadlineSeconds=300)
    store.set_next_run(record.name, record.namespace, _at("2026-03-29T01:00:00+00:00"))
    outcome = executor.run(store.get_flow(record.name, record.namespace), tick=_at("2026-03-30T00:30:00+00:00"))
    assert outcome.skipped is None
    assert outcome.run is not None and outcome.run.status == "success", outcome.run and outcome.run.error_message
    assert outcome.run.run_name == "prop-flow-29580510"  # 2026-03-30T00:30Z = 1774830600 s = 29580510 min
    assert outcome.run.scheduled_for == _at("2026-03-30T00:30:00+00:00")


def test_after_a_ticks_run_the_store_waits_for_the_cronjobs_next_tick(tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    store, executor, record = _clock_flow(tmp_path, schedule="30 2 * * *", timeZone="Europe/Berlin")
    run = executor.run(record, tick=_at("2026-03-30T00:30:00+00:00")).run
    assert run is not None and run.created_at is not None
    due = store.get_flow(record.name, record.namespace).next_run_at
    local = due.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute, local.second) == (2, 30, 0)
    assert run.created_at < due <= run.created_at + timedelta(days=1)


def test_both_jobs_of_a_fall_back_days_repeated_hour_run(tmp_path: Path) -> None:
    from activedataflow.runner.heartbeat import heartbeat

    # America/New_York, 2026-11-01: 01:00 comes twice, and so do the CronJob's Jobs (05:00 and 06:00 UTC)
    store, executor, record = _clock_flow(tmp_path, schedule="0 1 * * *", timeZone="America/New_York")
    outcomes = [
        heartbeat(executor, namespace="test", flow="prop-flow", trigger="schedule", tick=_at(tick)).outcomes
        for tick in ("2026-11-01T05:00:00+00:00", "2026-11-01T06:00:00+00:00")
    ]
    assert [[o.skipped for o in out] for out in outcomes] == [[None], [None]]
    runs = store.list_runs(record.name, record.namespace)
    assert sorted((r.run_name, r.status, r.trigger) for r in runs) == [
        ("prop-flow-29891820", "success", "schedule"), ("prop-flow-29891880", "success", "schedule")]


def test_a_second_job_for_the_same_tick_runs_nothing_and_says_why(tmp_path: Path) -> None:
    store, executor, record = _clock_flow(tmp_path, schedule="0 1 * * *", timeZone="America/New_York")
    tick = _at("2026-11-01T05:00:00+00:00")
    first = executor.run(record, tick=tick, resume=True)
    second = FlowExecutor(store, runner_id="runner-b", sleep=lambda s: None).run(
        store.get_flow(record.name, record.namespace), tick=tick, resume=True)
    assert first.run is not None and first.run.status == "success"
    assert second.run is None and second.skipped is not None
    assert second.skipped.startswith("run prop-flow-29891820 for this slot already exists (succeeded at ")
    assert len(store.list_runs(record.name, record.namespace)) == 1


@pytest.mark.parametrize(
    ("job", "tick"),
    [
        ("df-prop-flow-29891820", "2026-11-01T05:00:00+00:00"),
        ("df-prop-flow-0", "1970-01-01T00:00:00+00:00"),
        ("df-prop-flow-manual-12345678", None),  # a run-now Job (its hash may be all digits)
        ("df-other-flow-29891820", None),
        ("df-prop-flow-29891820x", None),
        ("df-prop-flow-", None),
        ("", None),
    ],
)
def test_the_tick_of_a_job_is_read_from_its_name(job: str, tick: str | None) -> None:
    from activedataflow.kube.names import tick_of_job

    assert tick_of_job(job, "prop-flow") == (None if tick is None else _at(tick))


def test_the_tick_of_a_long_flows_job_is_read_after_its_cut_cronjob_name() -> None:
    from activedataflow.kube.names import tick_of_job

    flow = "a-flow-whose-name-is-far-too-long-for-a-cronjob-of-its-own"
    # cut to 52 - 9 characters, the cut's trailing '-' dropped, then '-' and 8 hex digits of its SHA-256
    cronjob = f"df-{flow}"[:43].rstrip("-") + "-" + hashlib.sha256(flow.encode()).hexdigest()[:8]
    assert cronjob == "df-a-flow-whose-name-is-far-too-long-for-a-b0fb2d0e"
    assert tick_of_job(f"{cronjob}-29891820", flow) == _at("2026-11-01T05:00:00+00:00")


# --------------------------------------------------------------------------- paths of run() and the lease


def test_a_tick_missed_by_more_than_starting_deadline_seconds_is_skipped_and_the_next_awaited(tmp_path: Path) -> None:
    from activedataflow.schedule import utcnow

    store, executor, record = _clock_flow(tmp_path, schedule="*/15 * * * *", startingDeadlineSeconds=60)
    missed = utcnow() - timedelta(minutes=10)  # 600 s late, the deadline is 60 s
    store.set_next_run(record.name, record.namespace, missed)
    outcome = executor.run(store.get_flow(record.name, record.namespace))
    assert outcome.run is None and outcome.attempts == []
    assert outcome.skipped == (f"missed the tick at {missed.isoformat()} by more than startingDeadlineSeconds "
                               "(60s); waiting for the next one")
    assert store.list_runs(record.name, record.namespace) == []
    after = store.get_flow(record.name, record.namespace)
    assert after is not None and after.next_run_at is not None and after.next_run_at > utcnow()
    assert after.next_run_at.minute % 15 == 0 and after.next_run_at - utcnow() <= timedelta(minutes=15)


def test_a_tick_late_by_less_than_starting_deadline_seconds_runs(tmp_path: Path) -> None:
    from activedataflow.schedule import utcnow

    store, executor, record = _clock_flow(tmp_path, schedule="*/15 * * * *", startingDeadlineSeconds=600)
    store.set_next_run(record.name, record.namespace, utcnow() - timedelta(minutes=2))
    outcome = executor.run(store.get_flow(record.name, record.namespace))
    assert outcome.skipped is None
    assert outcome.run is not None and outcome.run.status == "success", outcome.run and outcome.run.error_message


def test_replace_fails_the_active_run_and_runs_the_new_one(tmp_path: Path) -> None:
    store, _, record = _clock_flow(tmp_path, schedule="*/15 * * * *", concurrencyPolicy="Replace")
    held = _hold(store, record, "prop-flow-manual-held", lease=300)  # runner-a's run, alive
    outcome = FlowExecutor(store, runner_id="runner-b").run(record, force=True)
    assert outcome.run is not None and outcome.run.status == "success", outcome.run and outcome.run.error_message
    old = store.get_run(held.id)
    assert old is not None and old.status == "failed"
    assert old.error_message == "replaced by a newer run (concurrencyPolicy Replace)"
    assert [r.id for r in store.active_runs(record.name, record.namespace)] == []


class _ObservedStore:
    """The real store, with the lease renewals it answers observed: a test waits on ``refused``
    (a renewal answered False) or ``recovered`` (a renewal that succeeded after one that raised).
    ``fail_renewals`` renewals raise first, as a store that does not answer would."""

    def __init__(self, inner: Any, *, fail_renewals: int = 0) -> None:
        import threading

        self.inner, self.fail_renewals = inner, fail_renewals
        self.refused, self.recovered = threading.Event(), threading.Event()
        self.raised = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def renew_lease(self, run_id: str, *, now: Any, lease_seconds: float) -> bool:
        from activedataflow.errors import StoreUnavailable

        if self.raised < self.fail_renewals:
            self.raised += 1
            raise StoreUnavailable("cannot reach the store at sqlite:///store.db: injected")
        renewed: bool = self.inner.renew_lease(run_id, now=now, lease_seconds=lease_seconds)
        if not renewed:
            self.refused.set()
        elif self.raised:
            self.recovered.set()
        return renewed


class _AfterFirstBatch:
    """A Progress calling ``then(run)`` once, after the first batch is written (the run is mid-flight)."""

    def __init__(self, then: Any) -> None:
        self.then, self.run, self.done = then, None, False

    def started(self, flow: Any, run: Any) -> None:
        self.run = run

    def advanced(self, read: int, written: int, failed: int) -> None:
        if not self.done:
            self.done = True
            self.then(self.run)

    def finished(self, run: Any) -> None:
        pass


def test_a_run_whose_lease_is_taken_away_mid_run_aborts_before_its_next_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from activedataflow.runner.executor import Counts
    from activedataflow.schedule import utcnow

    monkeypatch.setenv("ADF_PUSHDOWN", "off")  # the row path, batch by batch
    store, _, record = _plain_flow(tmp_path)  # 3 rows, batches of 2: two batches
    observed = _ObservedStore(store)

    def taken_away(run: Any) -> None:  # another runner fails it (reaped, replaced) ...
        store.finish_run(run.id, status="failed", now=utcnow(), counts=Counts(2, 2, 0), error_message="reaped")
        assert observed.refused.wait(30), "the runner never tried to renew its lease"  # ... and it notices:
        for lease in [t for t in threading.enumerate() if t.name == f"lease-{run.id}"]:
            lease.join(30)  # the lease thread sets `lost`, then ends, once the store refused
            assert not lease.is_alive()

    executor = FlowExecutor(observed, runner_id="runner-a", lease_seconds=0.3,  # type: ignore[arg-type]
                            progress_factory=lambda: _AfterFirstBatch(taken_away))
    with caplog.at_level("ERROR", logger="activedataflow"):
        run = executor.run(record, force=True).run
    assert "run aborted: its lease was taken over" in caplog.text  # the runner stopped for that reason
    assert run is not None and run.status == "failed"
    assert run.error_message == "reaped"  # the store's answer: the run was failed by the one who took it
    assert run.records_read == 2  # the second batch was never read into the sink
    assert len(actual_sink(tmp_path / "dst.db")) == 2


def test_a_run_failed_by_another_runner_mid_run_aborts_at_its_next_write_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before its lease thread notices (a 60 s lease is renewed every 20 s), the store refuses the run's next
    counts: the runner stops there, and the other runner's verdict stands."""
    from activedataflow.runner.executor import Counts
    from activedataflow.schedule import utcnow

    monkeypatch.setenv("ADF_PUSHDOWN", "off")
    store, _, record = _plain_flow(tmp_path)  # 3 rows, batches of 2: two batches

    def replaced(run: Any) -> None:
        store.finish_run(run.id, status="failed", now=utcnow(), counts=Counts(2, 2, 0),
                         error_message="replaced by a newer run (concurrencyPolicy Replace)")

    executor = FlowExecutor(store, runner_id="runner-a", progress_factory=lambda: _AfterFirstBatch(replaced))
    with caplog.at_level("ERROR", logger="activedataflow"):
        run = executor.run(record, force=True).run
    assert "failed: run aborted: its lease was taken over (replaced, or reaped as lost)" in caplog.text
    assert run is not None and run.status == "failed"
    assert run.error_message == "replaced by a newer run (concurrencyPolicy Replace)"
    assert (run.records_read, run.records_written) == (2, 2)  # the counts of its verdict, not overwritten


def test_lease_renewals_that_fail_are_retried_and_the_run_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADF_PUSHDOWN", "off")  # the row path, batch by batch
    store, _, record = _plain_flow(tmp_path)
    observed = _ObservedStore(store, fail_renewals=2)

    def hiccup(run: Any) -> None:
        assert observed.recovered.wait(30), "the lease was not renewed after the store came back"

    executor = FlowExecutor(observed, runner_id="runner-a", lease_seconds=0.3,  # type: ignore[arg-type]
                            progress_factory=lambda: _AfterFirstBatch(hiccup))
    with caplog.at_level("WARNING", logger="activedataflow"):
        run = executor.run(record, force=True).run
    assert run is not None and run.status == "success", run and run.error_message
    assert run.records_read == 3 and len(actual_sink(tmp_path / "dst.db")) == 3
    warnings = [r.getMessage() for r in caplog.records if "renewing lease" in r.getMessage()]
    assert len(warnings) == 2 and all("injected" in w for w in warnings)


def test_a_run_of_a_deleted_flow_is_not_claimed_because_the_flow_no_longer_exists(tmp_path: Path) -> None:
    store, executor, record = _plain_flow(tmp_path)
    assert store.delete_flow(record.name, record.namespace)
    outcome = executor.run(record, force=True)
    assert (outcome.run, outcome.skipped) == (None, "flow no longer exists")


def test_a_run_of_a_disabled_flow_is_not_claimed_because_it_is_suspended(tmp_path: Path) -> None:
    store, executor, record = _plain_flow(tmp_path)
    store.set_enabled(record.name, record.namespace, False)
    outcome = executor.run(record, force=True)
    assert (outcome.run, outcome.skipped) == (None, "flow is suspended or disabled")
    assert store.list_runs(record.name, record.namespace) == []


def test_a_run_while_another_is_active_is_not_claimed_under_forbid(tmp_path: Path) -> None:
    store, executor, record = _plain_flow(tmp_path)
    _hold(store, record, "prop-flow-manual-held", lease=300)
    outcome = executor.run(record, force=True)
    assert (outcome.run, outcome.skipped) == (None, "another run of this flow is active (concurrencyPolicy Forbid)")


def test_a_flow_not_yet_due_is_not_claimed_and_says_until_when(tmp_path: Path) -> None:
    from activedataflow.schedule import utcnow

    store, executor, record = _plain_flow(tmp_path)
    later = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    store.set_next_run(record.name, record.namespace, later)
    outcome = executor.run(store.get_flow(record.name, record.namespace))
    assert (outcome.run, outcome.skipped) == (None, f"not due until {later.isoformat()}")


def test_a_due_flow_whose_claim_was_lost_says_another_runner_claimed_it(tmp_path: Path) -> None:
    """The race no state explains afterwards (another runner's claim won, its run already pruned):
    nothing else holds the slot, so the reason is the other runner."""
    from activedataflow.schedule import utcnow

    store, executor, record = _plain_flow(tmp_path)
    current = store.get_flow(record.name, record.namespace)
    assert current is not None and (current.next_run_at is None or current.next_run_at <= utcnow())
    assert executor._why_not_claimed(record, utcnow(), "prop-flow-1") == "claimed by another runner"


@pytest.mark.parametrize(("keep", "kept"), [("1", 1), ("0", 1), ("many", 3)])  # at least one; not a number: 100
def test_the_history_kept_after_a_run_is_adf_keep_successful_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: str, kept: int
) -> None:
    monkeypatch.setenv("ADF_KEEP_SUCCESSFUL_RUNS", keep)
    store, executor, record = _plain_flow(tmp_path)
    names = [executor.run(record, trigger="manual", force=True).run.run_name for _ in range(3)]  # type: ignore[union-attr]
    runs = store.list_runs(record.name, record.namespace, limit=10)
    assert sorted(r.run_name for r in runs) == sorted(names[-kept:])


def test_a_reflector_that_fails_never_fails_the_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Unreachable:  # every step of reflection fails, as with an API server that refuses connections
        def refuse(self, *args: Any, **kwargs: Any) -> None:
            raise ConnectionRefusedError("the API server refused the connection")

        run_started = run_finished = catch_up = refuse

    store, _, record = _plain_flow(tmp_path)
    executor = FlowExecutor(store, runner_id="runner-a", sleep=lambda s: None, reflector=Unreachable())
    run = executor.run(record, trigger="manual", force=True).run
    assert run is not None and run.status == "success", run and run.error_message
    assert "could not reflect run into Kubernetes: the API server refused the connection" in caplog.text


# --------------------------------------------------------------------------- the store changing under a run


def _with_backoff(record: Any, seconds: int) -> Any:
    doc = dataflow_from_record(record).model_dump(by_alias=True, mode="json", exclude_none=True)
    doc["spec"]["runtime"]["retries"]["backoffSeconds"] = seconds
    return parse_dataflow(doc)


def test_a_flow_suspended_during_a_retrys_backoff_makes_no_further_attempt(tmp_path: Path) -> None:
    store, _, record = _plain_flow(tmp_path, retries=2)
    (tmp_path / "src.db").unlink()  # every attempt fails: no source table

    def suspend_meanwhile(seconds: float) -> None:
        store.set_enabled(record.name, record.namespace, False)

    outcome = FlowExecutor(store, runner_id="runner-a", sleep=suspend_meanwhile).run(record, force=True)
    assert [(r.attempt, r.status) for r in outcome.attempts] == [(1, "failed")]
    assert outcome.skipped is None  # the first attempt ran: its failure is the outcome
    assert len(store.list_runs(record.name, record.namespace)) == 1


def test_a_replaced_runner_continues_after_a_slot_whose_run_a_heartbeat_failed_as_lost(tmp_path: Path) -> None:
    from activedataflow.schedule import utcnow

    store, _, record = _plain_flow(tmp_path, retries=0)  # no retries left: a lost run is not a failed attempt
    name = manual_run_name(record.name, "1767225600")
    held = _hold(store, record, name, lease=0.01)
    reaped = store.reap_expired(utcnow() + timedelta(seconds=1))
    assert [r.id for r in reaped] == [held.id]
    outcome = FlowExecutor(store, runner_id="runner-b").run(
        record, trigger="manual", force=True, run_name=name, resume=True
    )
    assert [(r.run_name, r.attempt, r.status) for r in outcome.attempts] == [(f"{name}-2", 2, "success")]


def test_a_replaced_runner_waits_out_the_rest_of_the_dead_runners_backoff(tmp_path: Path) -> None:
    from activedataflow.schedule import utcnow
    from activedataflow.store.base import Counts

    store, _, plain = _plain_flow(tmp_path, retries=1)
    record = FlowExecutor(store, runner_id="runner-a").register(_with_backoff(plain, 600))
    name = manual_run_name(record.name, "1767225600")
    held = _hold(store, record, name, lease=60)
    failed = store.finish_run(held.id, status="failed", now=utcnow(), counts=Counts(), error_message="sink: deadlock")
    waits: list[float] = []
    outcome = FlowExecutor(store, runner_id="runner-b", sleep=waits.append).run(
        record, trigger="manual", force=True, run_name=name, resume=True
    )
    assert [(r.attempt, r.status) for r in outcome.attempts] == [(2, "success")]
    assert len(waits) == 1
    assert failed.ended_at is not None
    waited_until = (failed.ended_at + timedelta(seconds=600) - utcnow()).total_seconds()
    assert waited_until - 5 < waits[0] <= 600  # what was left of the 600 s backoff when it looked


def test_waiting_on_a_run_that_is_deleted_meanwhile_returns_it_as_last_seen(tmp_path: Path) -> None:
    store, _, record = _plain_flow(tmp_path)
    held = _hold(store, record, "prop-flow-manual-held", lease=300)

    def deleted_meanwhile(seconds: float) -> None:
        assert store.delete_flow(record.name, record.namespace)  # its runs go with it

    settled = FlowExecutor(store, runner_id="runner-b", sleep=deleted_meanwhile).await_settled(held)
    assert settled.id == held.id and settled.status == "in_progress"
    assert store.get_run(held.id) is None


def test_catching_up_whose_listing_fails_leaves_reflection_to_the_next_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from activedataflow.errors import StoreUnavailable

    caught_up: list[Any] = []

    class Reflector:
        def catch_up(self, flow: Any, runs: Any, **kw: Any) -> None:
            caught_up.append(runs)

    def unlisted(inner: Any, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("cannot reach the store at sqlite:///store.db: injected")

    store, _, record = _plain_flow(tmp_path)
    executor = FlowExecutor(StoreWith(store, list_runs=unlisted), runner_id="runner-a",  # type: ignore[arg-type]
                            reflector=Reflector())
    with caplog.at_level("WARNING", logger="activedataflow"):
        run = executor.run(record, force=True).run
    assert run is not None and run.status == "success", run and run.error_message
    assert caught_up == []
    assert "could not list the runs to reflect: cannot reach the store at sqlite:///store.db: injected" in caplog.text


@pytest.mark.parametrize("lost_at", ["start_run", "finish_run"])
def test_a_run_the_store_lost_while_it_ran_says_so_naming_the_store(tmp_path: Path, lost_at: str) -> None:
    """A Redis restarted without persistence between the claim and the start, or before the finish."""
    from activedataflow.errors import StoreUnavailable
    from activedataflow.store.base import UnknownRun

    def unknown(inner: Any, run_id: str, **kwargs: Any) -> Any:
        raise UnknownRun(run_id)

    store, _, record = _plain_flow(tmp_path)
    executor = FlowExecutor(StoreWith(store, **{lost_at: unknown}), runner_id="runner-a")  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailable) as caught:
        executor.run(record, force=True)
    message = str(caught.value)
    assert message.startswith(f"the store at sqlite:///{tmp_path / 'store.db'} lost run ")
    assert "of test/prop-flow while it ran" in message
    assert message.endswith("was it restarted without persistence?")


def test_a_run_whose_flow_record_is_gone_when_it_starts_says_the_store_lost_it(tmp_path: Path) -> None:
    from activedataflow.errors import StoreUnavailable

    store, _, record = _plain_flow(tmp_path)
    claimed: list[Any] = []

    def claim(inner: Any, *args: Any, **kwargs: Any) -> Any:
        claimed.append(inner.claim(*args, **kwargs))
        return claimed[-1]

    def gone_once_claimed(inner: Any, *args: Any, **kwargs: Any) -> Any:  # a store restored from a backup
        return None if claimed else inner.get_flow(*args, **kwargs)

    gone = StoreWith(store, claim=claim, get_flow=gone_once_claimed)
    with pytest.raises(StoreUnavailable, match=r"lost run \S+ of test/prop-flow while it ran "
                                               r"\(its flow test/prop-flow is gone\)"):
        FlowExecutor(gone, runner_id="runner-a").run(record, force=True)  # type: ignore[arg-type]


def test_a_run_failed_by_another_runner_after_its_last_batch_keeps_that_runners_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replaced (concurrencyPolicy Replace) between its last batch and its finish: the store refuses the
    success, and the run stays as the other runner failed it."""
    from activedataflow.runner.executor import Counts
    from activedataflow.schedule import utcnow

    monkeypatch.setenv("ADF_PUSHDOWN", "off")
    store, _, record = _plain_flow(tmp_path)  # 3 rows, batches of 2
    batches = 0

    class ReplacedAfterTheLastBatch(_AfterFirstBatch):
        def advanced(self, read: int, written: int, failed: int) -> None:
            nonlocal batches
            batches += 1
            if read == 3:
                store.finish_run(self.run.id, status="failed", now=utcnow(), counts=Counts(read, written, 0),
                                 error_message="replaced by a newer run (concurrencyPolicy Replace)")

    executor = FlowExecutor(store, runner_id="runner-a", progress_factory=lambda: ReplacedAfterTheLastBatch(None))
    run = executor.run(record, force=True).run
    assert batches == 2
    assert run is not None and run.status == "failed"
    assert run.error_message == "replaced by a newer run (concurrencyPolicy Replace)"
    assert store.get_run(run.id).status == "failed"  # type: ignore[union-attr]


def test_a_python_step_on_an_empty_source_never_opens_the_sink_and_succeeds(tmp_path: Path) -> None:
    src_url, dst_url = make_dbs(tmp_path, pk=True)
    (tmp_path / "dst.db").unlink()  # no sink table: opening the sink would fail
    doc = flow_doc(src_url, dst_url).model_dump(by_alias=True, mode="json", exclude_none=True)
    doc["spec"]["transform"] = [{"python": "tests.runner.test_executor:paid_doubled"}]
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    executor = FlowExecutor(store)
    run = executor.run(executor.register(parse_dataflow(doc)), force=True).run
    assert run is not None and run.status == "success", run and run.error_message
    assert (run.records_read, run.records_written, run.records_failed) == (0, 0, 0)
