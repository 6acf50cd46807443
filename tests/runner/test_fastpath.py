"""Fast paths give exactly the generic paths' results: PostgreSQL COPY sink, prepared executemany, raw-cursor source."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from activedataflow.model import SqlSink, SqlSource
from activedataflow.runner.connectors import open_sink, open_source
from activedataflow.runner.connectors import sql as sqlmod
from activedataflow.runner.connectors.sql import ExecutemanyStrategy, SqlSinkWriter, SqlSourceReader
from activedataflow.runner.fastpath.dbapi import PreparedExecutemanyStrategy
from activedataflow.runner.fastpath.pg import SMALL_BATCH, PgCopyStrategy, fold_duplicates
from activedataflow.runner.fastpath.source import RawFetchSourceReader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.timeout(120)

T0 = dt.datetime(2024, 3, 31, 1, 30, 0, 123456)
COLS = ("id", "n", "small", "amount", "ratio", "label", "at", "flag")


def fact_table(md: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(
        name, md,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("n", sa.BigInteger),
        sa.Column("small", sa.Integer),
        sa.Column("amount", sa.Numeric(14, 4)),
        sa.Column("ratio", sa.Float),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime),
        sa.Column("flag", sa.Boolean),
    )


def make_tables(url: str, *names: str) -> None:
    engine = sa.create_engine(url)
    md = sa.MetaData()
    with engine.begin() as c:
        for name in names:
            t = fact_table(md, name)
            t.drop(c, checkfirst=True)
            t.create(c)
    engine.dispose()


def rows_of(url: str, table: str) -> list[tuple[Any, ...]]:
    """All rows of ``table`` as the database stores them (no SQLAlchemy types: SQLite's text stays text)."""
    engine = sa.create_engine(url)
    with engine.connect() as c:
        rows = [tuple(r) for r in c.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))]
    engine.dispose()
    return rows


def sink_spec(url: str, table: str, **fields: Any) -> SqlSink:
    doc = {"type": "sql", "connection": {"url": url}, "table": table, "batchSize": 50, **fields}
    return SqlSink.model_validate(doc)


@pytest.fixture
def strategies() -> Iterator[dict[str, Any]]:
    """The registered strategies, restored after the test."""
    saved = dict(sqlmod.sink._STRATEGIES)
    yield sqlmod.sink._STRATEGIES
    sqlmod.sink._STRATEGIES.clear()
    sqlmod.sink._STRATEGIES.update(saved)


def write_all(url: str, table: str, rows: Sequence[tuple[Any, ...]], *, generic: bool, strategies: dict[str, Any],
              **fields: Any) -> SqlSinkWriter:
    dialect = sa.make_url(url).get_backend_name()
    sink = open_sink(sink_spec(url, table, **fields), url)  # installs the fast strategies
    assert isinstance(sink, SqlSinkWriter)
    if generic:
        strategies[dialect] = ExecutemanyStrategy
    try:
        sink.open(COLS)
        for i in range(0, len(rows), 37):  # batches unaligned with batchSize
            sink.write(list(rows[i:i + 37]))
            sink.checkpoint()
        sink.commit()
    finally:
        sink.close()
        strategies.pop(dialect, None)
    return sink


# --------------------------------------------------------------------------- the strategies in place


def test_open_sink_uses_copy_on_postgresql_and_prepared_executemany_on_sqlite(pg_url: str, sqlite_url: str) -> None:
    sa.create_engine(sqlite_url).connect().close()
    for url, cls in ((pg_url, PgCopyStrategy), (sqlite_url, PreparedExecutemanyStrategy)):
        make_tables(url, "fact")
        sink = open_sink(sink_spec(url, "fact"), url)
        assert isinstance(sink, SqlSinkWriter)
        sink.open(COLS)
        assert type(sink.strategy) is cls
        sink.close()
    spec = SqlSource.model_validate({"type": "sql", "connection": {"url": pg_url}, "table": "fact"})
    assert type(open_source(spec, pg_url)) is RawFetchSourceReader
    sqlite_reader = open_source(spec.model_copy(update={"connection": {"url": sqlite_url}}), sqlite_url)
    assert type(sqlite_reader) is RawFetchSourceReader and not sqlite_reader.read_ahead


# --------------------------------------------------------------------------- PostgreSQL COPY: same as executemany

texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
rows_strategy = st.lists(
    st.tuples(
        st.integers(1, 40),  # few keys: duplicates within and across batches
        st.none() | st.integers(-(2**62), 2**62),
        st.none() | st.integers(-(2**31), 2**31 - 1),
        st.none() | st.decimals(min_value=-10**9, max_value=10**9, places=4, allow_nan=False),
        st.none() | st.floats(allow_nan=False, allow_infinity=False, width=64),
        texts | st.sampled_from(["\\N", "a\tb", "line\nbreak", "back\\slash", "\r", ",", '"q"']),
        st.none() | st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)),
        st.none() | st.booleans(),
    ),
    max_size=120,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, update_only=st.sampled_from([None, ["amount", "label"], []]))
def test_copy_upsert_equals_executemany(pg_url: str, strategies: dict[str, Any], rows: list[tuple[Any, ...]],
                                        update_only: list[str] | None) -> None:
    make_tables(pg_url, "fast", "slow")
    fields: dict[str, Any] = {"mode": "upsert", "uniqueBy": ["id"]}
    if update_only is not None:
        fields["updateOnly"] = update_only
    fast = write_all(pg_url, "fast", rows, generic=False, strategies=strategies, **fields)
    slow = write_all(pg_url, "slow", rows, generic=True, strategies=strategies, **fields)
    assert rows_of(pg_url, "fast") == rows_of(pg_url, "slow")
    assert (fast.stats.written, fast.stats.failed) == (slow.stats.written, slow.stats.failed)


def test_copy_sends_text_when_binary_refuses_a_python_type(pg_url: str, strategies: dict[str, Any]) -> None:
    make_tables(pg_url, "fast")
    rows = [(i, str(i), i, 1.25 if i == 30 else Decimal("1.2345"), Decimal(2), "x", "2024-01-02 03:04:05", 1)
            for i in range(1, 60)]
    sink = write_all(pg_url, "fast", rows, generic=False, strategies=strategies)
    assert isinstance(sink.strategy, PgCopyStrategy) and sink.strategy.binary is False
    got = rows_of(pg_url, "fast")
    assert len(got) == 59 and sink.stats.failed == 0
    assert got[29] == (30, 30, 30, Decimal("1.2500"), 2.0, "x", dt.datetime(2024, 1, 2, 3, 4, 5), True)
    assert got[0][3] == Decimal("1.2345")


def test_copy_isolates_bad_rows_exactly(pg_url: str, strategies: dict[str, Any]) -> None:
    """A NOT NULL violation and an int4 overflow (which binary COPY into int4 would wrap silently) fail one row each."""
    make_tables(pg_url, "fast")
    rows = [(i, i, i, Decimal(i), 0.5, f"r{i}", T0, True) for i in range(1, 101)]
    rows[10] = (11, 11, 11, Decimal(11), 0.5, None, T0, True)
    rows[70] = (71, 71, 2**40, Decimal(71), 0.5, "big", T0, True)
    sink = write_all(pg_url, "fast", rows, generic=False, strategies=strategies, maxFailedRecords=5)
    got = rows_of(pg_url, "fast")
    assert [r[0] for r in got] == [i for i in range(1, 101) if i not in (11, 71)]
    assert (sink.stats.written, sink.stats.failed) == (98, 2)
    assert any("row 11" in e or "id=11" in e for e in sink.stats.errors)


def test_copy_honours_transaction_run(pg_url: str) -> None:
    make_tables(pg_url, "fast")
    sink = open_sink(sink_spec(pg_url, "fast", transaction="run", batchSize=SMALL_BATCH * 4), pg_url)
    sink.open(COLS)
    sink.write([(i, i, i, Decimal(i), 0.5, "x", T0, True) for i in range(1, 200)])
    assert sink.checkpoint() is False
    sink.rollback()
    sink.close()
    assert rows_of(pg_url, "fast") == []


def test_copy_batch_commits_at_each_checkpoint(pg_url: str) -> None:
    make_tables(pg_url, "fast")
    sink = open_sink(sink_spec(pg_url, "fast", transaction="batch", batchSize=100), pg_url)
    sink.open(COLS)
    sink.write([(i, i, i, Decimal(i), 0.5, "x", T0, True) for i in range(1, 151)])
    assert sink.checkpoint() is True
    sink.write([(i, i, i, Decimal(i), 0.5, "x", T0, True) for i in range(151, 301)])
    sink.rollback()  # the second batch is lost, the first was committed
    sink.close()
    assert [r[0] for r in rows_of(pg_url, "fast")] == list(range(1, 151))


# --------------------------------------------------------------------------- SQLite prepared executemany


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, mode=st.sampled_from(["insert", "upsert"]))
def test_sqlite_prepared_executemany_equals_generic(sqlite_url: str, strategies: dict[str, Any],
                                                    rows: list[tuple[Any, ...]], mode: str) -> None:
    sa.create_engine(sqlite_url).connect().close()
    make_tables(sqlite_url, "fast", "slow")
    fields: dict[str, Any] = {"mode": mode, "maxFailedRecords": 1000}
    if mode == "upsert":
        fields.update(uniqueBy=["id"], updateOnly=["amount", "at"])
    fast = write_all(sqlite_url, "fast", rows, generic=False, strategies=strategies, **fields)
    slow = write_all(sqlite_url, "slow", rows, generic=True, strategies=strategies, **fields)
    assert rows_of(sqlite_url, "fast") == rows_of(sqlite_url, "slow")
    assert (fast.stats.written, fast.stats.failed) == (slow.stats.written, slow.stats.failed)
    assert [e.replace("fast", "t") for e in fast.stats.errors] == [e.replace("slow", "t") for e in slow.stats.errors]


# --------------------------------------------------------------------------- raw-cursor source


@pytest.mark.parametrize("incremental", [False, True])
def test_raw_fetch_source_reads_what_the_sqlalchemy_reader_reads(pg_url: str, incremental: bool) -> None:
    make_tables(pg_url, "src")
    engine = sa.create_engine(pg_url)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO src VALUES (:id, :n, 1, :amount, 0.25, :label, :at, true)"), [
            {"id": i, "n": i % 3, "amount": Decimal(i) / 8, "label": f"l{i}", "at": T0 + dt.timedelta(seconds=i // 2)}
            for i in range(1, 301)
        ])
    engine.dispose()
    doc: dict[str, Any] = {"type": "sql", "connection": {"url": pg_url}, "table": "src", "batchSize": 40,
                           "where": [{"column": "n", "op": "in", "value": [0, 2]}]}
    if incremental:
        doc["incremental"] = {"cursorColumn": "at"}
    spec = SqlSource.model_validate(doc)
    results = []
    for cls in (SqlSourceReader, RawFetchSourceReader):
        reader = cls(spec, pg_url)
        reader.open({"at": {"$datetime": (T0 + dt.timedelta(seconds=20)).isoformat()}, "id": 41} if incremental
                    else None)
        results.append([(b.columns, b.rows, b.cursor) for b in reader.batches()])
        reader.close()
    assert results[0] == results[1]
    assert sum(len(rows) for _, rows, _ in results[0]) > 100
    assert all(type(r[3]) is Decimal and type(r[6]) is dt.datetime for _, rows, _ in results[1] for r in rows)


# --------------------------------------------------------------------------- folding duplicate keys


def test_fold_duplicates_keeps_the_sequential_upsert_result() -> None:
    rows = [(1, "a", 10), (2, "b", 20), (1, "c", 11), (None, "n", 0), (None, "m", 1), (1, "d", 12)]
    # updateOnly = column 2: the first row of a key is inserted, later rows update column 2 only
    assert fold_duplicates(rows, [0], [2]) == [(1, "a", 12), (2, "b", 20), (None, "n", 0), (None, "m", 1)]
    # DO NOTHING: the first row of a key wins
    assert fold_duplicates(rows, [0], []) == [(1, "a", 10), (2, "b", 20), (None, "n", 0), (None, "m", 1)]
    unique = [(1, "a"), (2, "b")]
    assert fold_duplicates(unique, [0], [1]) is unique
    assert fold_duplicates([(1, 1, "x"), (1, 2, "y"), (1, 1, "z")], [0, 1], [2]) == [(1, 1, "z"), (1, 2, "y")]


# --------------------------------------------------------------------------- read-ahead


def test_prefetcher_keeps_order_raises_in_the_consumer_and_stops_when_closed() -> None:
    import threading

    from activedataflow.runner.fastpath.prefetch import Prefetcher

    assert list(Prefetcher(iter(range(50)))) == list(range(50))

    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("boom")

    got: list[int] = []
    with pytest.raises(ValueError, match="boom"):
        for x in Prefetcher(failing()):
            got.append(x)
    assert got == [1]

    produced: list[int] = []
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            closed.set()

    pre = Prefetcher(endless(), depth=1)
    it = iter(pre)
    assert [next(it), next(it)] == [0, 1]
    time.sleep(0.2)  # time enough to read far ahead, if it were allowed to
    assert produced == [0, 1, 2]  # one page ahead of the one in use: two pages alive at most
    pre.close()
    assert closed.is_set() and produced == [0, 1, 2]  # the source generator was closed
    assert not pre._thread.is_alive()


def test_source_reader_closed_mid_iteration_stops_reading(pg_url: str) -> None:
    make_tables(pg_url, "src")
    engine = sa.create_engine(pg_url)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO src (id, label) SELECT g, 'x' FROM generate_series(1, 500) g"))
    engine.dispose()
    spec = SqlSource.model_validate({"type": "sql", "connection": {"url": pg_url}, "table": "src", "batchSize": 10})
    reader = open_source(spec, pg_url)
    reader.open()
    batches = reader.batches()
    assert [r[0] for r in next(batches).rows] == list(range(1, 11))
    reader.close()  # as the executor does after a failed write, with the generator left suspended
    assert isinstance(reader, RawFetchSourceReader) and reader._prefetch is None
