"""The SQL sink: insert / native upsert, transactions, bad rows, clear errors — on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from activedataflow.errors import ConnectorError
from activedataflow.runner.connectors import open_sink
from activedataflow.runner.connectors import sql as sqlmod
from activedataflow.runner.connectors.base import Row
from activedataflow.runner.connectors.sql import (
    ExecutemanyStrategy,
    SinkTarget,
    SqlSinkWriter,
    build_write_statement,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.runner.connectors.tables import T0, create, insert, orders_table, read_table, sql_sink

# Writing tests run twice (``both_paths``): through the per-dialect fast strategies (COPY on PostgreSQL,
# prepared executemany) that open_sink installs, and through the generic SQLAlchemy executemany.
both_paths = pytest.mark.usefixtures("sql_path")

COLUMNS = ("id", "customer_id", "amount", "status", "note", "updated_at")


def fact(i: int, **over: Any) -> Row:
    row = {"id": i, "customer_id": 10 + i, "amount": Decimal(i) + Decimal("0.25"), "status": "paid",
           "note": f"n{i}", "updated_at": T0}
    row.update(over)
    return tuple(row[c] for c in COLUMNS)


def make_fact(url: str, *, unique: bool = True) -> None:
    md = sa.MetaData()
    if unique:
        create(url, orders_table(md, "fact_orders"))
    else:  # the same columns, no primary key, no unique index
        columns = [sa.Column(c.name, c.type, nullable=c.nullable) for c in orders_table(sa.MetaData(), "x").columns]
        create(url, sa.Table("fact_orders", md, *columns))


def sink_for(url: str, columns: Sequence[str] = COLUMNS, **fields: Any) -> SqlSinkWriter:
    sink = open_sink(sql_sink(url, **fields), url)
    assert isinstance(sink, SqlSinkWriter)
    sink.open(columns)
    return sink


def ids(url: str) -> list[int]:
    return [r["id"] for r in read_table(url, "fact_orders")]


# --------------------------------------------------------------------------- insert / upsert


@both_paths
def test_insert_writes_rows_with_their_types(db_url: str) -> None:
    make_fact(db_url)
    sink = sink_for(db_url)
    sink.write([fact(1), fact(2, note=None)])
    sink.commit()
    sink.close()
    rows = read_table(db_url, "fact_orders")
    assert [(r["id"], r["amount"], r["note"], r["updated_at"]) for r in rows] == [
        (1, Decimal("1.25"), "n1", T0), (2, Decimal("2.25"), None, T0)]
    assert sink.stats.written == 2 and sink.stats.failed == 0


def test_a_subset_of_columns_leaves_the_rest_to_their_defaults(db_url: str) -> None:
    make_fact(db_url)
    sink = sink_for(db_url, ("id", "customer_id", "updated_at"))
    sink.write([(1, 5, T0)])
    sink.commit()
    sink.close()
    assert [(r["id"], r["customer_id"], r["status"]) for r in read_table(db_url, "fact_orders")] == [(1, 5, None)]


@both_paths
def test_upsert_updates_only_the_update_only_columns(db_url: str) -> None:
    make_fact(db_url)
    insert(db_url, "fact_orders", [dict(zip(COLUMNS, fact(1), strict=True)), dict(zip(COLUMNS, fact(2), strict=True))])
    sink = sink_for(db_url, mode="upsert", uniqueBy=["id"], updateOnly=["status", "amount"])
    sink.write([fact(2, status="refunded", amount=Decimal("9.99"), note="changed", customer_id=99), fact(3)])
    sink.commit()
    sink.close()
    rows = {r["id"]: r for r in read_table(db_url, "fact_orders")}
    assert sorted(rows) == [1, 2, 3]
    assert (rows[2]["status"], rows[2]["amount"]) == ("refunded", Decimal("9.99"))
    assert (rows[2]["note"], rows[2]["customer_id"]) == ("n2", 12)  # not in updateOnly: untouched
    assert rows[1]["status"] == "paid"


@both_paths
def test_upsert_updates_every_non_key_column_by_default(db_url: str) -> None:
    make_fact(db_url)
    insert(db_url, "fact_orders", [dict(zip(COLUMNS, fact(1), strict=True))])
    sink = sink_for(db_url, mode="upsert", uniqueBy=["id"])
    sink.write([fact(1, status="refunded", note="changed", customer_id=99)])
    sink.commit()
    sink.close()
    row = read_table(db_url, "fact_orders")[0]
    assert (row["status"], row["note"], row["customer_id"]) == ("refunded", "changed", 99)


@both_paths
def test_upsert_with_only_key_columns_inserts_missing_rows_and_keeps_existing(db_url: str) -> None:
    make_fact(db_url)
    insert(db_url, "fact_orders", [dict(zip(COLUMNS, fact(1, status="kept"), strict=True))])
    sink = sink_for(db_url, mode="upsert", uniqueBy=["id"], updateOnly=[])
    sink.write([fact(1, status="ignored"), fact(2)])
    sink.commit()
    sink.close()
    assert [(r["id"], r["status"]) for r in read_table(db_url, "fact_orders")] == [(1, "kept"), (2, "paid")]


@both_paths
def test_upsert_on_a_composite_unique_index(db_url: str) -> None:
    md = sa.MetaData()
    table = sa.Table("fact_orders", md, sa.Column("day", sa.Date, nullable=False),
                     sa.Column("shop", sa.String(10), nullable=False), sa.Column("total", sa.Integer),
                     sa.UniqueConstraint("day", "shop"))
    create(db_url, table)
    day = T0.date()
    sink = sink_for(db_url, ("shop", "day", "total"), mode="upsert", uniqueBy=["day", "shop"])
    sink.write([("a", day, 1), ("b", day, 2)])
    sink.checkpoint()
    sink.write([("a", day, 10)])
    sink.commit()
    sink.close()
    assert [(r["shop"], r["total"]) for r in read_table(db_url, "fact_orders", order_by="shop")] == [
        ("a", 10), ("b", 2)]


def test_rerunning_an_upsert_duplicates_nothing(db_url: str) -> None:
    make_fact(db_url)
    for _ in range(2):
        sink = sink_for(db_url, mode="upsert", uniqueBy=["id"], batchSize=3)
        sink.write([fact(i) for i in range(1, 8)])
        sink.commit()
        sink.close()
    assert ids(db_url) == list(range(1, 8))


def test_upsert_without_a_unique_index_says_what_is_missing(db_url: str) -> None:
    make_fact(db_url, unique=False)
    with pytest.raises(ConnectorError, match=(
        r"^spec\.sink\.uniqueBy: table fact_orders has no primary key or unique index on \(id\); "
        r"upsert needs one .* Unique keys: none$"
    )):
        sink_for(db_url, mode="upsert", uniqueBy=["id"])


def test_upsert_on_columns_that_are_not_the_unique_key_lists_the_keys(sqlite_db: str) -> None:
    make_fact(sqlite_db)
    with pytest.raises(ConnectorError, match=r"no primary key or unique index on \(status\);.* Unique keys: \(id\)$"):
        sink_for(sqlite_db, mode="upsert", uniqueBy=["status"])


# --------------------------------------------------------------------------- buffering and transactions


@both_paths
def test_rows_are_buffered_and_flushed_every_batch_size(db_url: str) -> None:
    make_fact(db_url)
    sink = sink_for(db_url, batchSize=4)
    sink.write([fact(i) for i in range(1, 4)])
    assert sink.stats.written == 0  # still buffered
    sink.write([fact(i) for i in range(4, 11)])
    assert sink.stats.written == 8  # two full batches flushed, two rows buffered
    assert ids(db_url) == []  # flushed, not committed before the checkpoint
    assert sink.checkpoint() is True
    assert sink.stats.written == 10
    assert ids(db_url) == list(range(1, 11))
    sink.close()


@both_paths
def test_transaction_batch_keeps_checkpointed_batches_when_a_later_one_fails(db_url: str) -> None:
    make_fact(db_url)
    sink = sink_for(db_url, transaction="batch", batchSize=2)
    sink.write([fact(1), fact(2), fact(3)])
    assert sink.checkpoint() is True
    sink.write([fact(4), fact(5), fact(6)])  # 4 and 5 flushed inside the open transaction
    sink.rollback()  # the run failed before the next checkpoint
    sink.close()
    assert ids(db_url) == [1, 2, 3]
    assert sink.stats.written == 3


@both_paths
def test_transaction_run_commits_nothing_until_the_end(db_url: str) -> None:
    make_fact(db_url)
    sink = sink_for(db_url, transaction="run", batchSize=2)
    sink.write([fact(1), fact(2), fact(3)])
    assert sink.checkpoint() is False
    sink.write([fact(4)])
    assert sink.checkpoint() is False
    assert ids(db_url) == []
    sink.rollback()
    sink.close()
    assert ids(db_url) == []
    assert sink.stats.written == 0


def test_transaction_run_commit_writes_everything(db_url: str) -> None:
    make_fact(db_url)
    sink = sink_for(db_url, transaction="run", batchSize=2)
    for i in range(1, 6):
        sink.write([fact(i)])
        sink.checkpoint()
    sink.commit()
    sink.close()
    assert ids(db_url) == [1, 2, 3, 4, 5]


@both_paths
def test_transaction_none_commits_every_flush(db_url: str) -> None:
    make_fact(db_url)
    sink = sink_for(db_url, transaction="none", batchSize=2)
    sink.write([fact(1), fact(2), fact(3)])  # 1 and 2 flushed and committed at once
    assert ids(db_url) == [1, 2]
    sink.rollback()  # drops only the buffered row
    sink.close()
    assert ids(db_url) == [1, 2]


def test_closing_without_commit_rolls_back(db_url: str) -> None:
    make_fact(db_url)
    sink = sink_for(db_url, batchSize=1)
    sink.write([fact(1)])
    sink.close()
    assert ids(db_url) == []


# --------------------------------------------------------------------------- bad rows


@both_paths
def test_bad_rows_are_counted_and_the_good_rows_written(db_url: str) -> None:
    make_fact(db_url)
    insert(db_url, "fact_orders", [dict(zip(COLUMNS, fact(3), strict=True))])
    sink = sink_for(db_url, maxFailedRecords=5, batchSize=100)
    rows = [fact(1), fact(2, customer_id=None), fact(3), fact(4), fact(5, status="x" * 41), fact(6)]
    sink.write(rows)
    sink.commit()
    sink.close()
    # SQLite does not enforce VARCHAR lengths: the 41-character status is a good row there
    too_long_fails = not db_url.startswith("sqlite")
    assert ids(db_url) == [1, 3, 4, 6] if too_long_fails else [1, 3, 4, 5, 6]
    assert sink.stats.written == 4 - too_long_fails
    assert sink.stats.failed == 2 + too_long_fails
    assert sink.stats.errors[0].startswith("row 2 (id=2): ")
    assert "customer_id" in sink.stats.errors[0]
    assert sink.stats.errors[1].startswith("row 3 (id=3): ")


@both_paths
def test_more_bad_rows_than_allowed_fail_the_sink(db_url: str) -> None:
    make_fact(db_url)
    sink = sink_for(db_url, maxFailedRecords=1, batchSize=10)
    sink.write([fact(1)])
    assert sink.checkpoint()
    sink.write([fact(2, customer_id=None), fact(3), fact(4, customer_id=None)])
    with pytest.raises(ConnectorError, match=(
        r"^spec\.sink\.maxFailedRecords: 2 row\(s\) failed, more than maxFailedRecords \(1\); first: row 2 \(id=2\)"
    )):
        sink.checkpoint()
    sink.rollback()
    sink.close()
    assert ids(db_url) == [1]  # nothing of the failed batch was left behind


def test_by_default_one_bad_row_fails_the_batch(sqlite_db: str) -> None:
    make_fact(sqlite_db)
    sink = sink_for(sqlite_db)
    sink.write([fact(1), fact(1)])
    with pytest.raises(ConnectorError, match=r"row 2 \(id=1\): UNIQUE constraint failed: fact_orders\.id"):
        sink.checkpoint()
    sink.rollback()
    sink.close()
    assert ids(sqlite_db) == []


@both_paths
def test_a_value_of_the_wrong_type_is_a_bad_row(db_url: str) -> None:
    make_fact(db_url)
    sink = sink_for(db_url, maxFailedRecords=1)
    sink.write([fact(1, updated_at="not a time" if db_url.startswith("sqlite") else "31/31/2024"), fact(2)])
    sink.commit()
    sink.close()
    assert ids(db_url) == [2]
    assert sink.stats.failed == 1


@both_paths
def test_a_value_the_postgresql_driver_cannot_adapt_is_a_bad_row(pg_schema_url: str) -> None:
    make_fact(pg_schema_url)
    sink = sink_for(pg_schema_url, maxFailedRecords=1)
    sink.write([fact(1), fact(2, customer_id=1 + 2j), fact(3)])  # psycopg has no adapter for complex
    sink.commit()
    sink.close()
    assert ids(pg_schema_url) == [1, 3]
    assert sink.stats.failed == 1
    assert re.match(r"^row 2 \(id=2\): .*(cannot|can't) adapt type 'complex'", sink.stats.errors[0]), sink.stats.errors


@both_paths
def test_a_last_row_its_column_cannot_hold_fails_alone(sqlite_db: str) -> None:
    create(sqlite_db, sa.Table("fact_orders", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                               sa.Column("ratio", sa.Float)))
    sink = sink_for(sqlite_db, ("id", "ratio"), maxFailedRecords=1)
    sink.write([(1, 0.5), (2, 1.5), (3, float("nan"))])
    sink.commit()
    sink.close()
    assert [(r["id"], r["ratio"]) for r in read_table(sqlite_db, "fact_orders")] == [(1, 0.5), (2, 1.5)]
    assert sink.stats.errors == ["row 3 (id=3): column ratio: NaN cannot be stored in a SQLite REAL column "
                                 "(SQLite would store NULL)"]


@both_paths
def test_a_deferred_constraint_that_fails_at_commit_fails_the_sink_and_writes_nothing(pg_schema_url: str) -> None:
    """PostgreSQL checks a DEFERRABLE INITIALLY DEFERRED constraint at COMMIT: no row is to blame, the sink fails."""
    make_fact(pg_schema_url)
    engine = sa.create_engine(pg_schema_url)
    with engine.begin() as c:
        c.execute(sa.text("ALTER TABLE fact_orders ADD CONSTRAINT one_order_per_customer UNIQUE (customer_id) "
                          "DEFERRABLE INITIALLY DEFERRED"))
    engine.dispose()
    sink = sink_for(pg_schema_url, maxFailedRecords=5)
    sink.write([fact(1, customer_id=7), fact(2, customer_id=7)])
    url = sa.make_url(pg_schema_url)
    address = re.escape(f"{url.host}:{url.port}/{url.database}")
    with pytest.raises(ConnectorError, match=rf"^spec\.sink: commit to fact_orders at {address} failed: duplicate key "
                                             r'value violates unique constraint "one_order_per_customer"'):
        sink.commit()
    sink.close()
    assert ids(pg_schema_url) == []


@both_paths
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=st.lists(st.booleans(), min_size=1, max_size=40), batch_size=st.integers(1, 16))
def test_bad_rows_are_isolated_wherever_they_are(db_url_fast: str, bad: list[bool], batch_size: int) -> None:
    make_fact(db_url_fast)
    sink = sink_for(db_url_fast, maxFailedRecords=len(bad), batchSize=batch_size)
    sink.write([fact(i, customer_id=None if b else i) for i, b in enumerate(bad, start=1)])
    sink.commit()
    sink.close()
    assert ids(db_url_fast) == [i for i, b in enumerate(bad, start=1) if not b]
    assert (sink.stats.written, sink.stats.failed) == (bad.count(False), bad.count(True))
    assert len(sink.stats.errors) == min(bad.count(True), 5)


# --------------------------------------------------------------------------- errors


def test_unknown_sink_table_lists_the_tables(db_url: str) -> None:
    make_fact(db_url)
    with pytest.raises(ConnectorError, match=r"^spec\.sink\.table: table 'fact_ordrs' not found in .*; tables: "
                                             r"fact_orders$"):
        open_sink(sql_sink(db_url, table="fact_ordrs"), db_url).open(COLUMNS)


def test_a_column_the_table_lacks_is_named_with_the_columns_that_exist(db_url: str) -> None:
    make_fact(db_url)
    with pytest.raises(ConnectorError, match=(
        r"^spec\.sink\.table: column 'amount_cents' not found in table fact_orders; columns: id, customer_id, "
        r"amount, status, note, updated_at \(the column comes from the source or a transform\)$"
    )):
        sink_for(db_url, ("id", "amount_cents"))


def test_unique_by_must_be_written(sqlite_db: str) -> None:
    make_fact(sqlite_db)
    with pytest.raises(ConnectorError, match=r"^spec\.sink\.uniqueBy\[0\]: column 'id' is not among the columns the "
                                             r"flow writes \(status\)$"):
        sink_for(sqlite_db, ("status",), mode="upsert", uniqueBy=["id"])


def test_update_only_must_exist(sqlite_db: str) -> None:
    make_fact(sqlite_db)
    with pytest.raises(ConnectorError, match=r"^spec\.sink\.updateOnly\[0\]: column 'stat' not found in table"):
        sink_for(sqlite_db, mode="upsert", uniqueBy=["id"], updateOnly=["stat"])


def test_a_column_the_flow_writes_twice_is_refused(sqlite_db: str) -> None:
    make_fact(sqlite_db)
    with pytest.raises(ConnectorError, match=r"^spec\.sink\.table: the flow writes column\(s\) id, note twice$"):
        sink_for(sqlite_db, ("id", "note", "customer_id", "note", "id", "updated_at"))


def test_update_only_must_be_written(sqlite_db: str) -> None:
    make_fact(sqlite_db)
    with pytest.raises(ConnectorError, match=r"^spec\.sink\.updateOnly\[0\]: column 'note' is not among the columns "
                                             r"the flow writes \(id, customer_id, updated_at\)$"):
        sink_for(sqlite_db, ("id", "customer_id", "updated_at"), mode="upsert", uniqueBy=["id"], updateOnly=["note"])


def test_upsert_is_refused_on_a_database_without_a_native_upsert() -> None:
    table = orders_table(sa.MetaData(), "fact_orders")
    target = SinkTarget(table, COLUMNS, "upsert", ("id",), ("note",), "oracle")
    assert isinstance(build_write_statement(dataclasses.replace(target, mode="insert")), sa.Insert)
    with pytest.raises(ConnectorError, match=r"^spec\.sink\.mode: upsert is not supported on oracle \(SQLite, "
                                             r"PostgreSQL and MySQL are\)$"):
        build_write_statement(target)


def test_unreachable_sink_names_the_address_not_the_password() -> None:
    url = "mysql+pymysql://app:s3cr3t-pw@127.0.0.1:1/dw"
    with pytest.raises(ConnectorError, match=r"^spec\.sink\.connection: cannot connect to 127\.0\.0\.1:1/dw: ") as e:
        sink_for(url)
    assert "s3cr3t" not in str(e.value)


# --------------------------------------------------------------------------- write strategies


def test_the_generic_statement_is_prepared_once_for_all_batches(db_url: str, generic_sql: None) -> None:
    make_fact(db_url)
    sink = sink_for(db_url, mode="upsert", uniqueBy=["id"], batchSize=2)
    strategy = sink.strategy
    assert isinstance(strategy, ExecutemanyStrategy)
    statement = strategy.statement
    sink.write([fact(i) for i in range(1, 8)])
    sink.commit()
    sink.close()
    assert strategy.statement is statement
    assert ids(db_url) == list(range(1, 8))


class CountingStrategy(ExecutemanyStrategy):
    """A dialect's own strategy: here, executemany that records the size of every buffer it is handed."""

    sizes: list[int] = []

    def write(self, conn: sa.Connection, rows: Sequence[Row]) -> None:
        CountingStrategy.sizes.append(len(rows))
        super().write(conn, rows)


def test_a_registered_strategy_writes_for_its_dialect(sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_fact(sqlite_db)
    sink_for(sqlite_db).close()  # the fast paths are installed by now; this test's strategy replaces them
    monkeypatch.setitem(sqlmod.sink._STRATEGIES, "sqlite", CountingStrategy)
    monkeypatch.setattr(CountingStrategy, "sizes", [])
    sink = sink_for(sqlite_db, batchSize=3, maxFailedRecords=1)
    assert isinstance(sink.strategy, CountingStrategy)
    assert isinstance(sink.target, SinkTarget) and sink.target.columns == COLUMNS
    sink.write([fact(1), fact(2), fact(3, customer_id=None), fact(4)])
    sink.commit()
    sink.close()
    # 3 rows failed as one buffer, then halves until the bad row was alone; then the last row
    assert CountingStrategy.sizes == [3, 1, 2, 1, 1, 1]
    assert ids(sqlite_db) == [1, 2, 4]
