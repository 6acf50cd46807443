"""Push-down: when a flow becomes one INSERT ... SELECT, why not otherwise, and that it equals the row path."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from activedataflow.cli import cli
from activedataflow.model import DataFlow
from activedataflow.runner.connectors import open_sink, open_source
from activedataflow.runner.executor import FlowExecutor
from activedataflow.runner.plan import plan_flow
from activedataflow.runner.transforms import compile_transforms
from activedataflow.store import open_store
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.flows import dataflow, dataflow_of, manifest_of, sql_sink, sql_source
from tests.runner.test_fastpath import rows_of

pytestmark = pytest.mark.timeout(120)

SRC_DDL = ("CREATE TABLE src (id BIGINT PRIMARY KEY, a BIGINT, b BIGINT, x DOUBLE PRECISION, s TEXT, "
           "amount NUMERIC(7,2))")
DST_DDL = ("CREATE TABLE {name} (id BIGINT PRIMARY KEY, i1 BIGINT, f1 DOUBLE PRECISION, s1 TEXT, "
           "c BIGINT CHECK (c >= 0), n1 NUMERIC(12,4))")


def flow(src: str, dst: str, *, transform: list[dict[str, Any]], table: str = "dst", mode: str = "upsert",
         name: str = "f", **source: Any) -> DataFlow:
    return dataflow(name=name, transform=transform, sink=sql_sink(dst, table, mode=mode),
                    source=sql_source(src, **{"batchSize": 7, **source}))


def execute(url: str, *statements: str, params: list[dict[str, Any]] | None = None) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as c:
        for s in statements:
            c.execute(sa.text(s), params) if params and s.lstrip().upper().startswith("INSERT") else c.execute(
                sa.text(s))
    engine.dispose()


def setup_db(url: str, rows: list[dict[str, Any]], *sinks: str) -> None:
    execute(url, "DROP TABLE IF EXISTS src", *(f"DROP TABLE IF EXISTS {s}" for s in sinks), SRC_DDL,
            *(DST_DDL.format(name=s) for s in sinks))
    if rows:
        execute(url, "INSERT INTO src VALUES (:id, :a, :b, :x, :s, :amount)", params=rows)


def src_row(i: int, **over: Any) -> dict[str, Any]:
    row = {"id": i, "a": i % 5, "b": i * 3, "x": i / 4, "s": f"Row {i}", "amount": str(Decimal(i) / 4)}
    row.update(over)
    return row


@pytest.fixture
def sqlite_files(tmp_path: Path) -> tuple[str, str]:
    for name in ("src.db", "dst.db"):
        sqlite3.connect(tmp_path / name).close()
    return f"sqlite:///{tmp_path / 'src.db'}", f"sqlite:///{tmp_path / 'dst.db'}"


@pytest.fixture
def executor() -> Iterator[FlowExecutor]:
    store = open_store("memory://")
    yield FlowExecutor(store)
    store.close()


def run(executor: FlowExecutor, f: DataFlow) -> Any:
    outcome = executor.run(executor.register(f), trigger="manual", force=True)
    assert outcome.run is not None
    return outcome.run


TRANSFORM = [
    {"filter": "row.a != 0 and row.s is not None"},
    {"set": {"i1": "row.a * 10 + length(row.s)", "f1": "row.x * 2.0", "s1": "upper(concat(row.s, '!'))"}},
    {"select": ["id", "i1", "f1", "s1"]},
]


# --------------------------------------------------------------------------- when and why


def test_plans_say_why_a_flow_runs_row_by_row(pg_server: str, pg_url: str, pg_other: str,
                                              sqlite_files: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    setup_two(pg_url, pg_other, [], "dst")
    setup_db(pg_url, [], "dst")
    other = pg_other
    division = [{"set": {"i1": "row.b / row.a"}}, {"select": ["id", "i1"]}]
    reasons = {
        "two databases": plan_flow(flow(pg_url, other, transform=division), pg_url, other).reason,
        "postgres to sqlite": plan_flow(flow(pg_url, sqlite_files[1], transform=TRANSFORM), pg_url,
                                        sqlite_files[1]).reason,
        "python": plan_flow(flow(pg_url, pg_url, transform=[{"python": "json:dumps"}]), pg_url, pg_url).reason,
        "division": plan_flow(flow(pg_url, pg_url, transform=[{"set": {"i1": "row.b / row.a"}},
                                                                      {"select": ["id", "i1"]}]), pg_url,
                              pg_url).reason,
    }
    assert "different databases" in reasons["two databases"] and "spec.transform.0.set.i1" in reasons["two databases"]
    assert "postgresql" in reasons["postgres to sqlite"] and "sqlite" in reasons["postgres to sqlite"]
    assert reasons["python"].startswith("spec.transform.0.python")
    assert reasons["division"].startswith("spec.transform.0.set.i1")
    monkeypatch.setenv("ADF_PUSHDOWN", "off")
    assert "ADF_PUSHDOWN" in plan_flow(flow(pg_url, pg_url, transform=TRANSFORM), pg_url, pg_url).reason


def test_sqlite_numeric_cents_are_pushed_down_exactly(sqlite_files: tuple[str, str]) -> None:
    src, dst = sqlite_files
    setup_db(src, [])
    setup_db(dst, [], "dst")
    f = flow(src, dst, transform=[{"set": {"c": "int(row.amount * 100)"}}, {"select": ["id", "c"]}])
    plan = plan_flow(f, src, dst)
    assert plan.kind == "pushdown", plan.reason
    assert "CAST(round(src.amount * 100.0) AS BIGINT)" in (plan.sql or "")


@pytest.mark.parametrize(("expr", "reason"), [
    ("row.amount * 2", "the sink column is TEXT"),  # the row path cannot bind a Decimal to it
    ("row.amount / 2", "'/' on SQLite NUMERIC"),
])
def test_sqlite_numeric_that_sql_cannot_reproduce_stays_on_the_row_path(sqlite_files: tuple[str, str], expr: str,
                                                                        reason: str) -> None:
    src, dst = sqlite_files
    setup_db(src, [])
    setup_db(dst, [], "dst")
    plan = plan_flow(flow(src, dst, transform=[{"set": {"s1": expr}}, {"select": ["id", "s1"]}]), src, dst)
    assert plan.kind == "rows" and reason in plan.reason


def test_explain_prints_the_statement_or_the_reason(pg_url: str, pg_other: str, tmp_path: Path) -> None:
    setup_db(pg_url, [], "dst")
    setup_two(pg_url, pg_other, [], "dst")
    other = pg_other
    manifest = tmp_path / "flows.yaml"
    docs = []
    for name, dst in (("same", pg_url), ("cross", other)):
        f = flow(pg_url, dst, transform=TRANSFORM, name=name, where=[{"column": "b", "op": ">", "value": 3}])
        docs.append(json.dumps(manifest_of(f.spec_dict(), name=name)))
    manifest.write_text("\n---\n".join(docs))
    result = CliRunner().invoke(cli, ["--store", "memory://", "run", "--explain", str(manifest)])
    assert result.exit_code == 0, result.output
    same, cross = result.output.split("default/cross:")
    assert "push-down" in same and "INSERT INTO dst" in same and "ON CONFLICT (id) DO UPDATE" in same
    assert "%(b_1)s" in same or "%(b_" in same  # the where value is a placeholder, never inlined
    # between two databases: the source query, what moves the rows, and where Python takes over
    assert "source push-down" in cross and "different databases" in cross
    on_source, on_sink = cross.split("on the sink:")
    assert "COPY (SELECT" in on_source and "TO STDOUT (FORMAT binary)" in on_source and "%(b_" in on_source
    assert "FROM STDIN (FORMAT binary)" in on_sink and "ON CONFLICT (id) DO UPDATE" in on_sink
    assert "Python takes over: nowhere" in on_sink
    assert "adf-test-pw" not in result.output
    assert rows_of(pg_url, "dst") == []  # explain runs nothing


# --------------------------------------------------------------------------- running pushed down


def test_pushed_down_run_counts_and_equals_the_row_path(pg_url: str, executor: FlowExecutor,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    setup_db(pg_url, [src_row(i) for i in range(1, 41)] + [src_row(41, s=None)], "dst", "dst_rows")
    pushed = flow(pg_url, pg_url, transform=TRANSFORM, where=[{"column": "b", "op": ">", "value": 3}])
    assert plan_flow(pushed, pg_url, pg_url).kind == "pushdown"
    run1 = run(executor, pushed)
    monkeypatch.setenv("ADF_PUSHDOWN", "off")
    run2 = run(executor, flow(pg_url, pg_url, transform=TRANSFORM, table="dst_rows", name="g",
                              where=[{"column": "b", "op": ">", "value": 3}]))
    assert run1.status == run2.status == "success"
    assert (run1.records_read, run1.records_written, run1.records_failed) == (40, 31, 0)
    assert (run2.records_read, run2.records_written) == (40, 31)
    assert rows_of(pg_url, "dst") == rows_of(pg_url, "dst_rows")


def test_incremental_pushdown_resumes_after_the_committed_cursor(pg_url: str, executor: FlowExecutor) -> None:
    setup_db(pg_url, [src_row(i) for i in range(1, 21)], "dst")
    f = flow(pg_url, pg_url, transform=TRANSFORM, incremental={"cursorColumn": "b"})
    first = run(executor, f)
    assert (first.records_read, first.status) == (20, "success")
    record = executor.store.get_flow("f", "default")
    assert record is not None and record.cursor == {"b": 60, "id": 20}
    execute(pg_url, "INSERT INTO src VALUES (:id, :a, :b, :x, :s, :amount)",
            params=[src_row(i) for i in range(21, 26)])
    second = run(executor, f)
    assert (second.records_read, second.records_written) == (5, 4)  # a == 0 for id 25
    assert executor.store.get_flow("f", "default").cursor == {"b": 75, "id": 25}  # type: ignore[union-attr]
    assert [r[0] for r in rows_of(pg_url, "dst")] == [i for i in range(1, 26) if i % 5]


def test_sqlite_files_are_attached(sqlite_files: tuple[str, str], executor: FlowExecutor) -> None:
    src, dst = sqlite_files
    setup_db(src, [src_row(i) for i in range(1, 31)])
    setup_db(dst, [], "dst")
    f = flow(src, dst, transform=TRANSFORM, limit=12, orderBy=["id"])
    plan = plan_flow(f, src, dst)
    assert plan.kind == "pushdown" and "ATTACH" in plan.reason and "adf_src.src" in (plan.sql or "")
    assert "INSERT INTO main.dst" in (plan.sql or "")  # not into a table of the source file
    assert plan.execute().written == 10
    done = run(executor, f)  # again, through the executor
    assert (done.records_read, done.records_written) == (12, 10)
    assert [r[0] for r in rows_of(dst, "dst")] == [1, 2, 3, 4, 6, 7, 8, 9, 11, 12]
    assert rows_of(dst, "dst")[0] == (1, 15, 0.5, "ROW 1!", None, None)


ORDERS_DDL = ("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, "
              "amount NUMERIC(12,2) NOT NULL, status TEXT NOT NULL, note TEXT, updated_at TIMESTAMP NOT NULL)")
FACT_DDL = ("CREATE TABLE {name} (id INTEGER PRIMARY KEY, customer INTEGER, status TEXT, note TEXT, "
            "updated_at TIMESTAMP, amount_cents INTEGER)")
AMOUNTS = ["0.29", "-0.29", "1.15", "0.05", "-7.35", "0", "10.00", "12345.67", "9999999999.99", "-0.01", "19.99"]


def orders_flow(src: str, dst: str, table: str, name: str) -> DataFlow:
    """The benchmark's flow (bench/approaches.py), on table ``table`` of ``dst``."""
    return dataflow(name=name, source=sql_source(src, "orders", batchSize=4), sink=sql_sink(dst, table, mode="upsert"),
                    transform=[{"filter": "row.status == 'paid'"}, {"rename": {"customer_id": "customer"}},
                               {"set": {"amount_cents": "int(row.amount * 100)"}}, {"drop": ["amount"]}])


def setup_orders(src: str, dst: str, amounts: list[str]) -> None:
    con = sqlite3.connect(src.removeprefix("sqlite:///"))
    con.execute(ORDERS_DDL)
    con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",  # amounts as text, as bench/generate.py
                    [(i, i % 7, a, "paid" if i % 3 else "pending", f"note {i}", f"2024-01-01 00:00:{i:02d}.000000")
                     for i, a in enumerate(amounts, 1)])
    con.commit()
    con.close()
    con = sqlite3.connect(dst.removeprefix("sqlite:///"))
    con.executescript(";".join(FACT_DDL.format(name=n) for n in ("fact_orders", "fact_rows")))
    con.close()


def test_benchmark_flow_on_two_sqlite_files_is_pushed_down_and_equals_the_row_path(
        sqlite_files: tuple[str, str], executor: FlowExecutor, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    src, dst = sqlite_files
    setup_orders(src, dst, AMOUNTS * 2)
    pushed = orders_flow(src, dst, "fact_orders", "pushed")
    plan = plan_flow(pushed, src, dst)
    assert plan.kind == "pushdown", plan.reason
    # the sink stays in its own file; the source is the ATTACHed one
    assert "INSERT INTO main.fact_orders" in plan.explain() and "FROM adf_src.orders" in plan.explain()
    with caplog.at_level("INFO", logger="activedataflow.runner"):
        done = run(executor, pushed)
    assert "push-down failed" not in caplog.text
    monkeypatch.setenv("ADF_PUSHDOWN", "off")
    rows = run(executor, orders_flow(src, dst, "fact_rows", "rows"))
    assert (done.status, done.records_read, done.records_written) == ("success", 22, 15)
    assert (rows.records_read, rows.records_written) == (22, 15)
    assert rows_of(dst, "fact_orders") == rows_of(dst, "fact_rows")
    cents = {r[0]: r[5] for r in rows_of(dst, "fact_orders")}
    assert (cents[1], cents[2], cents[5], cents[10]) == (29, -29, -735, -1)  # 0.29 * 100 is 28 in REAL arithmetic


def test_a_value_with_more_decimals_than_declared_runs_on_the_row_path(
        sqlite_files: tuple[str, str], executor: FlowExecutor, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """SQLite keeps 0.285 in a NUMERIC(12,2); the row path reads Decimal('0.28'): the statement refuses it."""
    src, dst = sqlite_files
    setup_orders(src, dst, ["0.29", "0.285", "1.15", "2.675"])
    pushed = orders_flow(src, dst, "fact_orders", "pushed")
    assert plan_flow(pushed, src, dst).kind == "pushdown"
    with caplog.at_level("INFO", logger="activedataflow.runner"):
        done = run(executor, pushed)
    assert "push-down failed" in caplog.text and "more decimals or digits than declared" in caplog.text
    monkeypatch.setenv("ADF_PUSHDOWN", "off")
    run(executor, orders_flow(src, dst, "fact_rows", "rows"))
    assert (done.status, done.records_written) == ("success", 3)
    assert rows_of(dst, "fact_orders") == rows_of(dst, "fact_rows")
    assert [r[5] for r in rows_of(dst, "fact_orders")] == [29, 28, 267]


TEMPORAL_DDL = "CREATE TABLE {name} (id INTEGER PRIMARY KEY, at DATETIME, day DATE, tod TIME)"
# shapes SQLite applications write (CURRENT_TIMESTAMP, isoformat(), SQLAlchemy, JavaScript's milliseconds)
TEMPORAL_ROWS = [
    (1, "2024-01-01 00:00:01", "2024-01-01", "10:00:00"),
    (2, "2024-01-01 00:00:02.000000", "2024-02-29", "10:00:00.123456"),
    (3, "2024-01-01T00:00:03", "2024-03-01", "10:00"),
    (4, "2024-01-01T00:00:04.250000", "2024-03-02", "10:00:00.250"),
    (5, "2024-01-01 00:00:05.125", "2024-03-03", None),
    (6, "2024-01-01T00:00:06.125", None, "23:59:59"),
    (7, "2024-01-01 00:07", "2024-03-04", "00:00:00"),
    (8, "2024-01-01", "2024-03-05", "12:00:00.999999"),
    (9, None, "2024-03-06", "12:00:00"),
]


def setup_temporal(src: str, dst: str, rows: list[tuple[Any, ...]], sink_ddl: str = TEMPORAL_DDL) -> None:
    con = sqlite3.connect(src.removeprefix("sqlite:///"))
    con.execute(TEMPORAL_DDL.format(name="src"))
    con.executemany("INSERT INTO src VALUES (?, ?, ?, ?)", rows)  # the text as written, as applications do
    con.commit()
    con.close()
    con = sqlite3.connect(dst.removeprefix("sqlite:///"))
    con.executescript(";".join(sink_ddl.format(name=n) for n in ("pushed", "rows")))
    con.close()


def pushed_and_row_path(src: str, dst: str, executor: FlowExecutor, monkeypatch: pytest.MonkeyPatch,
                        caplog: pytest.LogCaptureFixture) -> tuple[Any, str]:
    """Run the copy flow pushed down (into 'pushed') and on the row path (into 'rows'); (pushed run, log)."""
    with caplog.at_level("INFO", logger="activedataflow.runner"):
        done = run(executor, flow(src, dst, transform=[], table="pushed", name="pushed"))
    monkeypatch.setenv("ADF_PUSHDOWN", "off")
    rows = run(executor, flow(src, dst, transform=[], table="rows", name="rows"))
    assert rows.status == done.status == "success"
    return done, caplog.text


def test_sqlite_dates_and_times_get_the_row_paths_text(sqlite_files: tuple[str, str], executor: FlowExecutor,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """SQLite keeps dates as the text written; push-down writes what the row path writes, byte for byte."""
    src, dst = sqlite_files
    setup_temporal(src, dst, TEMPORAL_ROWS)
    assert plan_flow(flow(src, dst, transform=[], table="pushed"), src, dst).kind == "pushdown"
    done, log = pushed_and_row_path(src, dst, executor, monkeypatch, caplog)
    assert "push-down failed" not in log
    assert done.records_written == len(TEMPORAL_ROWS)
    assert rows_of(dst, "pushed") == rows_of(dst, "rows")
    assert rows_of(dst, "pushed")[:3] == [
        (1, "2024-01-01 00:00:01.000000", "2024-01-01", "10:00:00.000000"),
        (2, "2024-01-01 00:00:02.000000", "2024-02-29", "10:00:00.123456"),
        (3, "2024-01-01 00:00:03.000000", "2024-03-01", "10:00:00.000000"),
    ]


@pytest.mark.parametrize("odd", ["2024-01-01 10:00:00+02:00", "2024-01-01 10:00:00.5", "2024-01-01 10:00:00Z"])
def test_a_date_in_another_shape_runs_on_the_row_path(sqlite_files: tuple[str, str], executor: FlowExecutor,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture, odd: str) -> None:
    src, dst = sqlite_files
    setup_temporal(src, dst, [*TEMPORAL_ROWS[:4], (10, odd, "2024-01-01", None)])
    done, log = pushed_and_row_path(src, dst, executor, monkeypatch, caplog)
    assert "push-down failed" in log and "at, day, tod: an ISO date or time" in log
    assert done.records_written == 5
    assert rows_of(dst, "pushed") == rows_of(dst, "rows")


def test_incremental_pushdown_on_sqlite_timestamps_resumes_inside_a_second(
        sqlite_files: tuple[str, str], executor: FlowExecutor) -> None:
    """The committed cursor is the text the row holds, so a later row in the same second is read next time."""
    src, dst = sqlite_files
    setup_temporal(src, dst, [(i, f"2024-01-01 00:00:0{i // 3}", None, None) for i in range(1, 7)])
    f = flow(src, dst, transform=[], table="pushed", incremental={"cursorColumn": "at"})
    assert plan_flow(f, src, dst).kind == "pushdown"
    assert run(executor, f).records_read == 6
    assert executor.store.get_flow("f", "default").cursor == {"at": "2024-01-01 00:00:02", "id": 6}  # type: ignore[union-attr]
    execute(src, "INSERT INTO src VALUES (7, '2024-01-01 00:00:02', NULL, NULL)",
            "INSERT INTO src VALUES (8, '2024-01-01 00:00:01', NULL, NULL)")  # 8: before the cursor, never read
    second = run(executor, f)
    assert (second.records_read, second.records_written) == (1, 1)
    assert [r[0] for r in rows_of(dst, "pushed")] == [1, 2, 3, 4, 5, 6, 7]


DATETIME_SHAPES = ["%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f",
                   "%Y-%m-%d %H:%M", "%Y-%m-%d", "ms", "%Y-%m-%d %H:%M:%S+02:00", "%Y-%m-%d %H:%M:%S.%f0"]
TIME_SHAPES = ["%H:%M:%S.%f", "%H:%M:%S", "%H:%M", "ms", "%H:%M:%S.%f0"]


def _text(value: dt.datetime | dt.time, shape: str) -> str:
    if shape == "ms":  # JavaScript's and SQLite's strftime('%f') milliseconds
        return value.strftime("%Y-%m-%d %H:%M:%S" if isinstance(value, dt.datetime) else "%H:%M:%S") + \
            f".{value.microsecond // 1000:03d}"
    return value.strftime(shape)


TEMPORAL_VALUES = st.lists(st.tuples(
    st.none() | st.tuples(st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1)),
                          st.sampled_from(DATETIME_SHAPES)).map(lambda t: _text(*t)),
    st.none() | st.dates(dt.date(1900, 1, 1), dt.date(2200, 1, 1)).map(str),
    st.none() | st.tuples(st.times(), st.sampled_from(TIME_SHAPES)).map(lambda t: _text(*t)),
), max_size=8)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=TEMPORAL_VALUES)
def test_sqlite_date_text_of_any_shape_ends_as_the_row_path_writes_it(values: list[tuple[Any, ...]]) -> None:
    """Push-down (or its fallback, for a shape it does not rewrite) leaves the row path's text, byte for byte."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = f"sqlite:///{tmp}/src.db", f"sqlite:///{tmp}/dst.db"
        setup_temporal(src, dst, [(i, *v) for i, v in enumerate(values, 1)])
        store = open_store("memory://")
        executor = FlowExecutor(store)
        done = run(executor, flow(src, dst, transform=[], table="pushed", name="pushed"))
        os.environ["ADF_PUSHDOWN"] = "off"
        try:
            rows = run(executor, flow(src, dst, transform=[], table="rows", name="rows"))
        finally:
            del os.environ["ADF_PUSHDOWN"]
        store.close()
        assert done.status == rows.status == "success"
        assert rows_of(dst, "pushed") == rows_of(dst, "rows")


def test_a_date_going_into_a_text_column_runs_on_the_row_path(sqlite_files: tuple[str, str]) -> None:
    src, dst = sqlite_files
    setup_temporal(src, dst, TEMPORAL_ROWS, sink_ddl="CREATE TABLE {name} (id INTEGER PRIMARY KEY, at TEXT, "
                                                     "day DATE, tod TIME)")
    plan = plan_flow(flow(src, dst, transform=[], table="pushed"), src, dst)
    assert plan.kind == "rows"
    assert "column 'at'" in plan.reason and "TEXT" in plan.reason


def test_a_failing_statement_falls_back_to_the_row_path(pg_url: str, executor: FlowExecutor) -> None:
    """One row violates the sink's CHECK: the statement is rolled back, the row path writes the rest."""
    setup_db(pg_url, [src_row(i) for i in range(1, 11)], "dst")
    transform = [{"set": {"c": "row.b - 6"}}, {"select": ["id", "c"]}]  # id 1: c = -3 violates c >= 0
    spec = flow(pg_url, pg_url, transform=transform).spec_dict()
    spec["sink"]["maxFailedRecords"] = 1
    f = dataflow_of(spec)
    assert plan_flow(f, pg_url, pg_url).kind == "pushdown"
    done = run(executor, f)
    assert (done.status, done.records_read, done.records_written, done.records_failed) == ("success", 10, 9, 1)
    assert [r[0] for r in rows_of(pg_url, "dst")] == list(range(2, 11))


# --------------------------------------------------------------------------- property: push-down == row path

LEAF_INTS = st.sampled_from(["row.a", "row.b", "0", "1", "2", "-3", "7", "None", "int(row.amount * 100)",
                             "int(row.amount)"])
LEAF_STRS = st.sampled_from(["row.s", "'ab'", "'Zz '", "''", "None"])
LEAF_FLOATS = st.sampled_from(["row.x", "0.5", "2.25", "-1.5"])


def _ints(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda e: f"abs({e})"),
        inner.map(lambda e: f"-{e}"),
        st.tuples(inner, inner).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
    )


INTS = st.recursive(LEAF_INTS, _ints, max_leaves=5)
STRS = st.recursive(LEAF_STRS, lambda inner: st.one_of(
    inner.map(lambda e: f"lower({e})"), inner.map(lambda e: f"upper({e})"), inner.map(lambda e: f"trim({e})"),
    st.tuples(inner, inner).map(lambda t: f"concat({t[0]}, {t[1]})"),
    inner.map(lambda e: f"substr({e}, 2, 3)"), inner.map(lambda e: f"replace({e}, 'a', 'x')"),
    st.tuples(inner, inner).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
), max_leaves=4)
FLOATS = st.recursive(LEAF_FLOATS, lambda inner: st.one_of(
    st.tuples(inner, st.sampled_from(["+", "-", "*"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
    INTS.map(lambda e: f"float({e})"),
), max_leaves=4)
LEAF_DECS = st.sampled_from(["row.amount", "row.amount", "0.05", "2", "-1.5", "None"])
DECS = st.recursive(LEAF_DECS, lambda inner: st.one_of(  # NUMERIC(7,2): exact in SQL on SQLite too
    st.tuples(inner, st.sampled_from(["+", "-", "*"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
    inner.map(lambda e: f"abs({e})"), inner.map(lambda e: f"-{e}"), inner.map(lambda e: f"round({e}, 1)"),
    st.tuples(inner, inner).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
), max_leaves=3)
def _compare(operands: st.SearchStrategy[str], ops: list[str]) -> st.SearchStrategy[str]:
    # `x == None` is refused by the checker ("use 'is None'"): only valid flows are compared.
    return (st.tuples(operands, st.sampled_from(ops), operands)
            .filter(lambda t: not (t[1] in ("==", "!=") and "None" in (t[0], t[2])))
            .map(lambda t: " ".join(t)))


CONDS = st.recursive(
    st.one_of(
        _compare(DECS, ["<", "<=", "==", "!=", ">"]),
        _compare(INTS, ["<", "<=", "==", "!=", ">"]),
        _compare(STRS, ["<", "=="]),
        st.sampled_from(["row.s is None", "row.a is not None", "row.a in (1, 2, 3)", "row.x > 1.0"]),
    ),
    lambda inner: st.one_of(
        inner.map(lambda e: f"not ({e})"),
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
    ),
    max_leaves=3,
)
ROWS = st.lists(
    st.fixed_dictionaries({
        "a": st.none() | st.integers(-999, 999), "b": st.none() | st.integers(-999, 999),
        "x": st.none() | st.sampled_from([0.0, 0.1, 0.5, -2.75, 1e3, 3.3]),
        "s": st.none() | st.text(st.sampled_from("aAbZz é_"), max_size=6),
        "amount": st.none() | st.integers(-99999, 99999).map(lambda n: str(Decimal(n).scaleb(-2))),  # x.x5, 0, < 0
    }),
    max_size=25,
)


def row_path(f: DataFlow, url: str) -> None:
    """The row path, in the small: source batches -> pipeline -> sink."""
    source = open_source(f.spec.source, url)
    pipeline = compile_transforms(f.spec.transform, source.open(None))
    sink = open_sink(f.spec.sink, url)
    sink.open(pipeline.columns)
    for batch in source.batches():
        sink.write(pipeline.apply(batch.rows))
    sink.commit()
    sink.close()
    source.close()


def check_property(url: str, rows: list[dict[str, Any]], cond: str, i1: str, f1: str, s1: str, n1: str) -> None:
    setup_db(url, [{"id": n, **r} for n, r in enumerate(rows, 1)], "dst", "dst_rows")
    transform = [{"filter": cond}, {"set": {"i1": i1, "f1": f1, "s1": s1, "n1": n1}},
                 {"select": ["id", "i1", "f1", "s1", "n1"]}]
    pushed = flow(url, url, transform=transform)
    plan = plan_flow(pushed, url, url)
    assume(plan.kind == "pushdown")
    result = plan.execute()
    row_path(flow(url, url, transform=transform, table="dst_rows"), url)
    assert rows_of(url, "dst") == rows_of(url, "dst_rows")
    assert result.read == len(rows) and result.written == len(rows_of(url, "dst"))


PROPERTY = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@PROPERTY
@given(rows=ROWS, cond=CONDS, i1=INTS, f1=FLOATS, s1=STRS, n1=DECS)
def test_pushdown_equals_row_path_on_sqlite(sqlite_url: str, rows: list[dict[str, Any]], cond: str, i1: str, f1: str,
                                            s1: str, n1: str) -> None:
    sqlite3.connect(sqlite_url.removeprefix("sqlite:///")).close()
    check_property(sqlite_url, rows, cond, i1, f1, s1, n1)


@PROPERTY
@given(rows=ROWS, cond=CONDS, i1=INTS, f1=FLOATS, s1=STRS, n1=DECS)
def test_pushdown_equals_row_path_on_postgresql(pg_url: str, rows: list[dict[str, Any]], cond: str, i1: str,
                                                f1: str, s1: str, n1: str) -> None:
    check_property(pg_url, rows, cond, i1, f1, s1, n1)


# SQLite computes + - * of integers in 64 bits and gives a REAL where the exact result leaves them
# (2**62 * 4 is 1.8446744073709552e+19); the row path keeps the exact int. Values at the edges:
BIG_INTS = st.sampled_from([2**62, -(2**62), 2**63 - 1, -(2**63), 3037000500, -3037000500, 2**53 + 1])
BIG_ROWS = st.lists(
    st.fixed_dictionaries({
        "a": st.none() | BIG_INTS | st.integers(-999, 999), "b": st.none() | BIG_INTS | st.integers(-999, 999),
        "x": st.none() | st.sampled_from([0.5, -2.75, 9.3e18, -9.3e18, 1e300]), "s": st.just("s"),
        "amount": st.just("1.25"),
    }),
    min_size=1, max_size=8,
)
BIG_EXPRS = st.recursive(LEAF_INTS | st.just("int(row.x)"), _ints, max_leaves=5)


def _ran(done: Any) -> tuple[Any, ...]:
    return done.status, done.records_read, done.records_written, done.records_failed


@pytest.mark.timeout(600)
@settings(PROPERTY, max_examples=25)  # two runs per example
@given(rows=BIG_ROWS, cond=_compare(BIG_EXPRS, ["<", "<=", "==", "!=", ">"]), i1=BIG_EXPRS)
def test_sqlite_pushdown_of_integers_beyond_64_bits_ends_as_the_row_path(
        sqlite_url: str, executor: FlowExecutor, monkeypatch: pytest.MonkeyPatch, rows: list[dict[str, Any]],
        cond: str, i1: str) -> None:
    """A pushed-down run whose integers leave 64 bits continues on the row path, as on PostgreSQL: the
    sink, the counts and the status are the row path's, never those of a REAL's rounding."""
    sqlite3.connect(sqlite_url.removeprefix("sqlite:///")).close()
    setup_db(sqlite_url, [{"id": n, **r} for n, r in enumerate(rows, 1)], "dst", "dst_rows")
    transform = [{"filter": cond}, {"set": {"i1": i1}}, {"select": ["id", "i1"]}]
    pushed = flow(sqlite_url, sqlite_url, transform=transform)
    assume(plan_flow(pushed, sqlite_url, sqlite_url).kind == "pushdown")
    done = run(executor, pushed)
    monkeypatch.setenv("ADF_PUSHDOWN", "off")
    reference = run(executor, flow(sqlite_url, sqlite_url, transform=transform, table="dst_rows", name="rows"))
    monkeypatch.delenv("ADF_PUSHDOWN")
    assert rows_of(sqlite_url, "dst") == rows_of(sqlite_url, "dst_rows")
    assert _ran(done) == _ran(reference)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_without_filters_rowcount_counts_reads_also_on_updates(backend: str, sqlite_files: tuple[str, str],
                                                              pg_url: str, executor: FlowExecutor) -> None:
    url = sqlite_files[0] if backend == "sqlite" else pg_url
    setup_db(url, [src_row(i) for i in range(1, 16)], "dst")
    f = flow(url, url, transform=[{"set": {"i1": "row.a + 1"}}, {"select": ["id", "i1"]}])
    assert plan_flow(f, url, url).kind == "pushdown"
    for _ in range(2):  # inserts, then updates of every row
        done = run(executor, f)
        assert (done.records_read, done.records_written, done.records_failed) == (15, 15, 0)


# --------------------------------------------------------------------------- between two PostgreSQL databases


@pytest.fixture
def pg_other(pg_server: str) -> Iterator[str]:
    """A second fresh PostgreSQL database on the same server (the sink of a flow between databases)."""
    name = f"t_{os.urandom(6).hex()}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def setup_two(src: str, dst: str, rows: list[dict[str, Any]], *sinks: str) -> None:
    setup_db(src, rows)
    execute(dst, *(f"DROP TABLE IF EXISTS {s}" for s in sinks), *(DST_DDL.format(name=s) for s in sinks))


def test_two_postgresql_databases_stream_by_binary_copy_and_equal_the_row_path(
        pg_url: str, pg_other: str, executor: FlowExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    setup_two(pg_url, pg_other, [src_row(i) for i in range(1, 3001)], "dst", "dst_rows")
    f = flow(pg_url, pg_other, transform=TRANSFORM)
    plan = plan_flow(f, pg_url, pg_other)
    assert plan.kind == "stream", plan.reason
    assert "TO STDOUT (FORMAT binary)" in (plan.source_sql or "") and "FROM STDIN (FORMAT binary)" in (plan.sql or "")
    streamed = plan.execute()  # raises PushdownFailed if the COPY did not go through
    assert (streamed.read, streamed.written) == (3000, 2400)
    execute(pg_other, "TRUNCATE dst")
    done = run(executor, f)
    monkeypatch.setenv("ADF_PUSHDOWN", "off")
    rows = run(executor, flow(pg_url, pg_other, transform=TRANSFORM, table="dst_rows", name="g"))
    assert rows_of(pg_other, "dst") == rows_of(pg_other, "dst_rows") != []
    assert (done.status, done.records_read, done.records_written) == ("success", rows.records_read,
                                                                      rows.records_written)


def test_postgresql_to_sqlite_computes_the_transform_in_the_source_query(
        pg_url: str, sqlite_files: tuple[str, str], executor: FlowExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    dst = sqlite_files[1]
    setup_db(pg_url, [src_row(i) for i in range(1, 41)])
    execute(dst, DST_DDL.format(name="dst"), DST_DDL.format(name="dst_rows"))
    f = flow(pg_url, dst, transform=TRANSFORM)
    plan = plan_flow(f, pg_url, dst)
    assert (plan.kind, plan.pushed_steps, plan.python_from) == ("source", 3, None)
    assert "adf_keep" in (plan.source_sql or "") and "only to write the rows" in plan.explain()
    done = run(executor, f)
    monkeypatch.setenv("ADF_PUSHDOWN", "off")
    rows = run(executor, flow(pg_url, dst, transform=TRANSFORM, table="dst_rows", name="g"))
    assert rows_of(dst, "dst") == rows_of(dst, "dst_rows") != []
    # the filter step's rows are read (and counted) by both, as the row path reads them
    assert (done.records_read, done.records_written, done.records_failed) == (
        rows.records_read, rows.records_written, rows.records_failed) == (40, 32, 0)


def test_python_takes_over_at_the_first_step_sql_cannot_compute(
        pg_url: str, pg_other: str, executor: FlowExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    setup_two(pg_url, pg_other, [src_row(i) for i in range(1, 26)], "dst", "dst_rows")
    transform = [*TRANSFORM[:2], {"python": "tests.runner.test_pushdown:shout"}, {"select": ["id", "i1", "f1", "s1"]}]
    # the memory:// store is the process's: names no other test gives an incremental flow
    f = flow(pg_url, pg_other, transform=transform, incremental={"cursorColumn": "id"}, name="py-f")
    plan = plan_flow(f, pg_url, pg_other)
    assert (plan.kind, plan.pushed_steps) == ("source", 2)
    assert "Python takes over at spec.transform.2.python" in plan.explain()
    done = run(executor, f)
    monkeypatch.setenv("ADF_PUSHDOWN", "off")
    g = flow(pg_url, pg_other, transform=transform, table="dst_rows", name="py-g",
             incremental={"cursorColumn": "id"})
    rows = run(executor, g)
    assert rows_of(pg_other, "dst") == rows_of(pg_other, "dst_rows") != []
    assert (done.records_read, done.records_written) == (rows.records_read, rows.records_written) == (25, 20)
    cursors = [executor.store.get_flow(n, "default").cursor for n in ("py-f", "py-g")]  # type: ignore[union-attr]
    assert cursors[0] == cursors[1] == {"id": 25}


def shout(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "s1": f"{row['s1']}!"}


shout.columns = ["id", "a", "b", "x", "s", "amount", "i1", "f1", "s1"]  # type: ignore[attr-defined]


def test_a_page_the_source_cannot_compute_runs_the_steps_in_python(
        pg_url: str, sqlite_files: tuple[str, str], executor: FlowExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    """bigint overflow in SQL on one page, none in Python (float of an unbounded int): the row path's rows."""
    dst = sqlite_files[1]
    setup_db(pg_url, [src_row(i, b=(4 * 10**18 if i == 9 else i)) for i in range(1, 21)])
    execute(dst, DST_DDL.format(name="dst"), DST_DDL.format(name="dst_rows"))
    transform = [{"set": {"f1": "float(row.b * 3)"}}, {"select": ["id", "f1"]}]
    f = flow(pg_url, dst, transform=transform)
    assert plan_flow(f, pg_url, dst).kind == "source"
    done = run(executor, f)
    monkeypatch.setenv("ADF_PUSHDOWN", "off")
    rows = run(executor, flow(pg_url, dst, transform=transform, table="dst_rows", name="g"))
    assert rows_of(dst, "dst") == rows_of(dst, "dst_rows")
    assert next(r for r in rows_of(dst, "dst") if r[0] == 9)[2] == 1.2e19  # computed in Python
    assert (done.status, done.records_read, done.records_written, done.records_failed) == (
        rows.status, rows.records_read, rows.records_written, rows.records_failed) == ("success", 20, 20, 0)


def test_a_stream_that_fails_on_a_row_falls_back_to_the_row_path(
        pg_url: str, pg_other: str, executor: FlowExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    """bigint overflow in the source query: the COPY is rolled back, the row path counts the row that fails."""
    setup_two(pg_url, pg_other, [src_row(i, b=(4 * 10**18 if i == 9 else i)) for i in range(1, 21)], "dst",
              "dst_rows")
    transform = [{"set": {"i1": "row.b * 3"}}, {"select": ["id", "i1"]}]

    def allowing_one(table: str, name: str) -> DataFlow:
        spec = flow(pg_url, pg_other, transform=transform, table=table, name=name).spec_dict()
        spec["sink"]["maxFailedRecords"] = 1
        return dataflow_of(spec, name=name)

    f = allowing_one("dst", "f")
    assert plan_flow(f, pg_url, pg_other).kind == "stream"
    done = run(executor, f)
    monkeypatch.setenv("ADF_PUSHDOWN", "off")
    rows = run(executor, allowing_one("dst_rows", "g"))
    assert rows_of(pg_other, "dst") == rows_of(pg_other, "dst_rows")
    assert (done.status, done.records_read, done.records_written, done.records_failed) == (
        rows.status, rows.records_read, rows.records_written, rows.records_failed) == ("success", 20, 19, 1)


# --------------------------------------------------------------------------- property: between databases == row path


def moved_by(plan: Any, f: DataFlow, src: str, dst: str) -> tuple[int, int]:
    """The row path in the small from ``src`` to ``dst``; with a "source" plan its source query computes the
    first steps. (rows read, rows written)"""
    first = plan.pushed_steps if plan is not None else 0
    source = plan.source_reader(f, src) if plan is not None else open_source(f.spec.source, src)
    pipeline = compile_transforms(f.spec.transform[first:], source.open(None), first=first)
    sink = open_sink(f.spec.sink, dst)
    sink.open(pipeline.columns)
    read = 0
    for batch in source.batches():
        read += len(batch.rows) if batch.read is None else batch.read
        sink.write(pipeline.apply(batch.rows))
    sink.commit()
    written = sink.stats.written
    sink.close()
    source.close()
    return read, written


def check_between(src: str, dst: str, kind: str, rows: list[dict[str, Any]], cond: str, i1: str, f1: str, s1: str,
                  n1: str) -> None:
    setup_two(src, dst, [{"id": n, **r} for n, r in enumerate(rows, 1)], "dst", "dst_rows")
    transform = [{"filter": cond}, {"set": {"i1": i1, "f1": f1, "s1": s1, "n1": n1}},
                 {"select": ["id", "i1", "f1", "s1", "n1"]}]
    pushed = flow(src, dst, transform=transform)
    plan = plan_flow(pushed, src, dst)
    assume(plan.kind == kind)
    if kind == "stream":
        result = plan.execute()
        read, written = result.read, result.written
    else:
        read, written = moved_by(plan, pushed, src, dst)
    expected = moved_by(None, flow(src, dst, transform=transform, table="dst_rows"), src, dst)
    assert rows_of(dst, "dst") == rows_of(dst, "dst_rows")
    assert (read, written) == expected == (len(rows), len(rows_of(dst, "dst")))


BETWEEN = settings(PROPERTY, max_examples=20)  # two databases per example: slower; the timeout allows a busy machine


@pytest.mark.timeout(900)
@BETWEEN
@given(rows=ROWS, cond=CONDS, i1=INTS, f1=FLOATS, s1=STRS, n1=DECS)
def test_binary_copy_between_postgresql_databases_equals_row_path(
        pg_url: str, pg_other: str, rows: list[dict[str, Any]], cond: str, i1: str, f1: str, s1: str,
        n1: str) -> None:
    check_between(pg_url, pg_other, "stream", rows, cond, i1, f1, s1, n1)


@pytest.mark.timeout(900)
@BETWEEN
@given(rows=ROWS, cond=CONDS, i1=INTS, f1=FLOATS, s1=STRS, n1=DECS)
def test_source_query_into_sqlite_equals_row_path(
        pg_url: str, sqlite_url: str, rows: list[dict[str, Any]], cond: str, i1: str, f1: str, s1: str,
        n1: str) -> None:
    sqlite3.connect(sqlite_url.removeprefix("sqlite:///")).close()
    check_between(pg_url, sqlite_url, "source", rows, cond, i1, f1, s1, n1)


@pytest.mark.parametrize("transaction", ["batch", "run", "none"])
def test_incremental_stream_resumes_after_the_committed_cursor(pg_url: str, pg_other: str, executor: FlowExecutor,
                                                               transaction: str) -> None:
    """The cursor is the last keyset the source query read (filtered out or not), in every transaction mode."""
    setup_two(pg_url, pg_other, [src_row(i) for i in range(1, 21)], "dst")
    spec = flow(pg_url, pg_other, transform=TRANSFORM, incremental={"cursorColumn": "b"}).spec_dict()
    spec["sink"]["transaction"] = transaction
    name = f"inc-{transaction}"  # the memory:// store is the process's: one flow record per case
    f = dataflow_of(spec, name=name)
    assert plan_flow(f, pg_url, pg_other).kind == "stream"
    first = run(executor, f)
    assert (first.status, first.records_read, first.records_written) == ("success", 20, 16)
    record = executor.store.get_flow(name, "default")
    assert record is not None and record.cursor == {"b": 60, "id": 20}
    execute(pg_url, "INSERT INTO src VALUES (:id, :a, :b, :x, :s, :amount)",
            params=[src_row(i) for i in range(21, 26)])
    second = run(executor, f)
    assert (second.records_read, second.records_written) == (5, 4)  # id 25: a == 0, filtered out but read
    record = executor.store.get_flow(name, "default")
    assert record is not None and record.cursor == {"b": 75, "id": 25}
    assert [r[0] for r in rows_of(pg_other, "dst")] == [i for i in range(1, 26) if i % 5]
