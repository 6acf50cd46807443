"""The SQL source: keyset pages, bound-parameter filters, incremental resume, clear errors.

Every behaviour runs on SQLite, PostgreSQL and MariaDB (``db_url``); the
property tests on SQLite and PostgreSQL (``db_url_fast``).
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from activedataflow.errors import ConfigError, ConnectorError
from activedataflow.runner.connectors import open_source
from activedataflow.runner.connectors import sql as sqlmod
from activedataflow.runner.connectors.sql import SqlSourceReader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.runner.connectors.tables import T0, TIMESTAMP, create, insert, make_orders, order, sql_source

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def read_all(url: str, cursor: Any = None, **fields: Any) -> tuple[list[tuple[Any, ...]], list[Any]]:
    reader = open_source(sql_source(url, **fields), url)
    try:
        reader.open(cursor)
        rows: list[tuple[Any, ...]] = []
        cursors: list[Any] = []
        for batch in reader.batches():
            rows.extend(batch.rows)
            cursors.append(batch.cursor)
        return rows, cursors
    finally:
        reader.close()


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every SQL statement any engine sends while the test runs."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(sa.Engine, "before_cursor_execute", record)


# --------------------------------------------------------------------------- keyset pagination


@PROPERTY
@given(
    customers=st.lists(st.integers(0, 3), max_size=30),
    batch_size=st.integers(1, 7),
)
def test_keyset_pages_return_every_row_once_in_order(db_url_fast: str, customers: list[int], batch_size: int) -> None:
    # orderBy a column full of duplicates: the primary key is appended so pages never skip or repeat a row
    make_orders(db_url_fast, [order(i + 1, customer_id=c) for i, c in enumerate(customers)])
    rows, _ = read_all(db_url_fast, orderBy=["customer_id"], columns=["id", "customer_id"], batchSize=batch_size)
    assert rows == sorted(((i + 1, c) for i, c in enumerate(customers)), key=lambda r: (r[1], r[0]))


def test_keyset_pages_use_limit_and_row_comparison_never_offset(db_url: str, statements: list[str]) -> None:
    make_orders(db_url, [order(i) for i in range(1, 11)])
    rows, _ = read_all(db_url, orderBy=["customer_id"], batchSize=3)
    selects = [s for s in statements if "FROM orders" in s and "ORDER BY" in s]
    assert len(rows) == 10
    assert len(selects) == 4  # 3 + 3 + 3 + 1
    # SQLAlchemy's SQLite compiler always appends "OFFSET ?" bound to 0 after LIMIT; nothing else may use OFFSET
    assert all("LIMIT" in s and "OFFSET" not in s.upper().replace("LIMIT ? OFFSET ?", "") for s in selects)
    assert all(">" in s.split("WHERE", 1)[1] for s in selects[1:])


def test_default_order_is_the_primary_key_and_columns_default_to_all(db_url: str) -> None:
    make_orders(db_url, [order(i) for i in (5, 3, 9, 1)])
    reader = open_source(sql_source(db_url, batchSize=2), db_url)
    assert reader.open() == ("id", "customer_id", "amount", "status", "note", "updated_at")
    ids = [r[0] for b in reader.batches() for r in b.rows]
    reader.close()
    assert ids == [1, 3, 5, 9]


def test_values_keep_their_types(db_url: str) -> None:
    make_orders(db_url, [order(1, amount=Decimal("12.30"))])
    rows, _ = read_all(db_url, columns=["amount", "updated_at", "status"])
    amount, updated_at, status = rows[0]
    assert isinstance(amount, Decimal) and amount == Decimal("12.30")
    assert updated_at == T0.replace(second=1)
    assert status == "paid"


def test_columns_select_and_order_the_output(db_url: str) -> None:
    make_orders(db_url, [order(1), order(2)])
    rows, _ = read_all(db_url, columns=["status", "id"], orderBy=["id"])
    assert rows == [("paid", 1), ("open", 2)]


def test_limit_caps_the_rows_read_across_pages(db_url: str) -> None:
    make_orders(db_url, [order(i) for i in range(1, 21)])
    rows, _ = read_all(db_url, columns=["id"], batchSize=3, limit=7)
    assert rows == [(i,) for i in range(1, 8)]


def test_table_in_a_schema(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as c:
        c.execute(sa.text("CREATE SCHEMA shop"))
    engine.dispose()
    make_orders(pg_url, [order(1), order(2)], schema="shop")
    rows, _ = read_all(pg_url, schema="shop", columns=["id"])
    assert rows == [(1,), (2,)]


# --------------------------------------------------------------------------- where


WHERE_CASES = [
    ({"column": "status", "op": "=", "value": "paid"}, [1, 3, 5]),
    ({"column": "status", "op": "!=", "value": "paid"}, [2, 4, 6]),
    ({"column": "id", "op": "<", "value": 3}, [1, 2]),
    ({"column": "id", "op": "<=", "value": 3}, [1, 2, 3]),
    ({"column": "id", "op": ">", "value": 4}, [5, 6]),
    ({"column": "id", "op": ">=", "value": 4}, [4, 5, 6]),
    ({"column": "id", "op": "in", "value": [2, 5, 99]}, [2, 5]),
    ({"column": "id", "op": "not in", "value": [2, 5]}, [1, 3, 4, 6]),
    ({"column": "note", "op": "is null"}, [6]),
    ({"column": "note", "op": "is not null"}, [1, 2, 3, 4, 5]),
    ({"column": "note", "op": "like", "value": "note 1%"}, [1]),
    ({"column": "amount", "op": ">", "value": "1.00"}, [4, 5, 6]),  # a string coerced to the column's Decimal
    ({"column": "updated_at", "op": ">=", "value": "2024-03-31T01:30:05.123456"}, [5, 6]),
]


@pytest.mark.parametrize(("cond", "expected"), WHERE_CASES, ids=[c["op"] for c, _ in WHERE_CASES])
def test_where_operators(db_url: str, cond: dict[str, Any], expected: list[int]) -> None:
    make_orders(db_url, [order(i) for i in range(1, 6)] + [order(6, note=None)])
    rows, _ = read_all(db_url, columns=["id"], where=[cond])
    assert [r[0] for r in rows] == expected


def test_where_conditions_are_anded(db_url: str) -> None:
    make_orders(db_url, [order(i) for i in range(1, 10)])
    rows, _ = read_all(db_url, columns=["id"], where=[{"column": "status", "value": "paid"},
                                                       {"column": "id", "op": ">", "value": 4}])
    assert [r[0] for r in rows] == [5, 7, 9]


def test_where_values_are_bound_parameters_never_sql(db_url: str, statements: list[str]) -> None:
    evil = "x'; DROP TABLE orders; --"
    make_orders(db_url, [order(1, status=evil), order(2, status="paid")])
    rows, _ = read_all(db_url, columns=["id", "status"], where=[{"column": "status", "value": evil}])
    assert rows == [(1, evil)]
    assert not any("DROP" in s for s in statements)
    rows, _ = read_all(db_url, columns=["id"])
    assert rows == [(1,), (2,)]  # the table is still there


def test_where_value_of_the_wrong_type_names_the_field(sqlite_db: str) -> None:
    make_orders(sqlite_db, [order(1)])
    with pytest.raises(ConfigError, match=r"spec\.source\.where\[0\]\.value: 'soon' is not a valid datetime"):
        read_all(sqlite_db, where=[{"column": "updated_at", "op": ">", "value": "soon"}])


def test_a_where_number_on_a_decimal_column_compares_as_the_decimal_it_reads_as(db_url: str) -> None:
    make_orders(db_url, [order(i) for i in range(1, 5)])  # amounts 0.26, 0.51, 0.76, 1.01
    rows, _ = read_all(db_url, columns=["id"], where=[{"column": "amount", "op": "=", "value": 0.51}])
    assert rows == [(2,)]


def test_a_where_text_on_a_time_column_is_a_time_of_day(db_url: str) -> None:
    create(db_url, sa.Table("orders", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                            sa.Column("opens", sa.Time, nullable=False)))
    insert(db_url, "orders", [{"id": i, "opens": dt.time(8 + i)} for i in range(4)])  # 08:00 .. 11:00
    rows, _ = read_all(db_url, columns=["id"], where=[{"column": "opens", "op": ">=", "value": "09:30:00"}])
    assert rows == [(2,), (3,)]


# --------------------------------------------------------------------------- incremental


@PROPERTY
@given(
    stamps=st.lists(st.integers(0, 4), min_size=1, max_size=25),
    batch_size=st.integers(1, 6),
    stop_after=st.integers(0, 10),
)
def test_resuming_from_any_batch_cursor_reads_exactly_the_rest(
    db_url_fast: str, stamps: list[int], batch_size: int, stop_after: int
) -> None:
    # many rows share one cursor value: the cursor (updated_at, id) still resumes exactly after the last row read
    make_orders(db_url_fast, [order(i + 1, updated_at=T0 + dt.timedelta(minutes=s)) for i, s in enumerate(stamps)])
    spec = {"columns": ["id"], "batchSize": batch_size, "incremental": {"cursorColumn": "updated_at"}}
    expected = [(i + 1,) for i, _ in sorted(enumerate(stamps), key=lambda p: (p[1], p[0]))]
    reader = open_source(sql_source(db_url_fast, **spec), db_url_fast)
    reader.open()
    first: list[tuple[Any, ...]] = []
    cursor = None
    for n, batch in enumerate(reader.batches()):
        if n == stop_after:
            break
        first.extend(batch.rows)
        cursor = json.loads(json.dumps(batch.cursor))  # as the store keeps it
    reader.close()
    rest, _ = read_all(db_url_fast, cursor, **spec)
    assert first + rest == expected


def test_incremental_reads_only_rows_past_the_committed_cursor(db_url: str) -> None:
    make_orders(db_url, [order(i) for i in range(1, 6)])
    spec = {"columns": ["id"], "batchSize": 2, "incremental": {"cursorColumn": "updated_at"}}
    rows, cursors = read_all(db_url, **spec)
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    cursor = cursors[-1]
    if db_url.startswith("sqlite"):  # SQLite's dates are text, and the keyset keeps the text (see below)
        assert cursor == {"updated_at": "2024-03-31 01:30:05.123456", "id": 5}
    else:
        assert cursor == {"updated_at": {"$datetime": "2024-03-31T01:30:05.123456"}, "id": 5}
    # a new row, a row updated later, and a row with the same cursor value as the last one read but a higher key
    insert(db_url, "orders", [order(6), order(7, updated_at=T0 + dt.timedelta(seconds=5))])
    engine = sa.create_engine(db_url)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE orders SET updated_at = :t WHERE id = 2"), {"t": T0 + dt.timedelta(hours=1)})
    engine.dispose()
    rows, cursors = read_all(db_url, cursor, **spec)
    assert [r[0] for r in rows] == [7, 6, 2]
    rows, _ = read_all(db_url, cursors[-1], **spec)
    assert rows == []


def test_incremental_initial_value_starts_there(db_url: str) -> None:
    make_orders(db_url, [order(i) for i in range(1, 6)])
    rows, _ = read_all(db_url, columns=["id"], incremental={
        "cursorColumn": "updated_at", "initialValue": "2024-03-31T01:30:04.123456"})
    assert [r[0] for r in rows] == [4, 5]


def test_incremental_initial_value_as_a_date_starts_at_its_midnight(db_url: str) -> None:
    """YAML reads ``initialValue: 2024-01-03`` as a date; on a timestamp column it is that day's 00:00."""
    make_orders(db_url, [order(i, updated_at=dt.datetime(2024, 1, i, 12)) for i in range(1, 6)])
    rows, _ = read_all(db_url, columns=["id"], incremental={"cursorColumn": "updated_at",
                                                            "initialValue": dt.date(2024, 1, 3)})
    assert [r[0] for r in rows] == [3, 4, 5]


def test_a_bare_committed_cursor_value_rereads_the_rows_equal_to_it(db_url: str) -> None:
    """A cursor that is the cursor column's value alone (not the keyset's object) resumes at that value,
    inclusive: rows equal to it are read again rather than skipped."""
    make_orders(db_url, [order(i) for i in range(1, 6)])
    rows, cursors = read_all(db_url, 3, columns=["id"], incremental={"cursorColumn": "id"})
    assert rows == [(3,), (4,), (5,)]
    assert cursors == [{"id": 5}]


def short_timestamps(url: str, n: int) -> None:
    """Orders 1..n whose updated_at is the text CURRENT_TIMESTAMP writes, three rows per second."""
    make_orders(url, [order(i) for i in range(1, n + 1)])
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE orders SET updated_at = '2024-03-31 01:30:0' || ((id - 1) / 3)"))
    engine.dispose()


def test_sqlite_timestamps_written_by_other_programs_page_and_resume_exactly(sqlite_db: str) -> None:
    """'2024-03-31 01:30:00' is not the text SQLAlchemy binds for that datetime ('... .000000').

    Bound as datetimes, a page ending inside one second skipped the rest of that second.
    """
    short_timestamps(sqlite_db, 9)
    spec = {"columns": ["id"], "batchSize": 2, "incremental": {"cursorColumn": "updated_at"}}
    rows, cursors = read_all(sqlite_db, **spec)
    assert [r[0] for r in rows] == list(range(1, 10))
    assert cursors[0] == {"updated_at": "2024-03-31 01:30:00", "id": 2}  # the text the row holds
    rest, _ = read_all(sqlite_db, json.loads(json.dumps(cursors[0])), **spec)
    assert [r[0] for r in rest] == list(range(3, 10))
    insert(sqlite_db, "orders", [order(10)])
    engine = sa.create_engine(sqlite_db)
    with engine.begin() as c:  # another row in the last second read, with a higher key
        c.execute(sa.text("UPDATE orders SET updated_at = '2024-03-31 01:30:02' WHERE id = 10"))
    engine.dispose()
    more, _ = read_all(sqlite_db, cursors[-1], **spec)
    assert [r[0] for r in more] == [10]


def test_sqlite_initial_value_includes_its_own_second(sqlite_db: str) -> None:
    short_timestamps(sqlite_db, 9)
    rows, _ = read_all(sqlite_db, columns=["id"], incremental={
        "cursorColumn": "updated_at", "initialValue": "2024-03-31T01:30:01"})
    assert [r[0] for r in rows] == [4, 5, 6, 7, 8, 9]


def test_a_datetime_cursor_committed_before_keys_were_text_still_resumes(sqlite_db: str) -> None:
    make_orders(sqlite_db, [order(i) for i in range(1, 6)])
    old = {"updated_at": {"$datetime": "2024-03-31T01:30:03.123456"}, "id": 3}
    rows, _ = read_all(sqlite_db, old, columns=["id"], incremental={"cursorColumn": "updated_at"})
    assert [r[0] for r in rows] == [4, 5]


def test_non_incremental_batches_carry_no_cursor(db_url: str) -> None:
    make_orders(db_url, [order(1), order(2)])
    _, cursors = read_all(db_url, batchSize=1)
    assert cursors == [None, None]


def test_decimal_and_datetime_cursors_round_trip_through_json(db_url: str) -> None:
    # cursor column a NUMERIC with cents, tie-broken by a composite key of a date and a text
    md = sa.MetaData()
    table = sa.Table(
        "ledger", md,
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("account", sa.String(20), primary_key=True),
        sa.Column("balance", sa.Numeric(14, 4), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
    )
    create(db_url, table)
    day = dt.date(2024, 2, 29)
    rows = [{"day": day + dt.timedelta(days=i % 3), "account": f"acc-{i}", "balance": Decimal("10.0001") * (i % 4),
             "at": T0} for i in range(12)]
    insert(db_url, "ledger", rows)
    spec = {"table": "ledger", "batchSize": 5, "columns": ["account"], "incremental": {"cursorColumn": "balance"}}
    reader = open_source(sql_source(db_url, **spec), db_url)
    reader.open()
    batches = list(reader.batches())
    reader.close()
    cursor = json.loads(json.dumps(batches[0].cursor))
    assert set(cursor) == {"balance", "day", "account"}
    assert isinstance(sqlmod.decode_cursor_value(cursor["balance"]), Decimal)
    days = [day + dt.timedelta(days=i) for i in range(3)]
    assert sqlmod.decode_cursor_value(cursor["day"]) in (days if not db_url.startswith("sqlite") else map(str, days))
    rest, _ = read_all(db_url, cursor, **spec)
    assert [r for b in batches[1:] for r in b.rows] == rest


JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(), st.floats(allow_nan=True),
    st.decimals(allow_nan=False, allow_infinity=False), st.datetimes(), st.datetimes(timezones=st.timezones()),
    st.dates(), st.times(), st.timedeltas(), st.binary(), st.uuids(),
)


@settings(max_examples=50, deadline=None)
@given(JSON_VALUES)
def test_cursor_values_survive_json_exactly(value: Any) -> None:
    back = sqlmod.decode_cursor_value(json.loads(json.dumps(sqlmod.encode_cursor_value(value))))
    assert type(back) is type(value)
    if isinstance(value, float) and value != value:
        assert back != back
    else:
        assert back == value
        assert str(back) == str(value)  # same Decimal exponent, same datetime offset


# --------------------------------------------------------------------------- read-only


def test_a_value_with_no_json_form_cannot_be_a_cursor() -> None:
    with pytest.raises(TypeError, match=r"^a list value cannot be used as a cursor$"):
        sqlmod.encode_cursor_value([1, 2])


def test_a_one_key_object_whose_key_is_no_tag_decodes_as_itself() -> None:
    assert sqlmod.decode_cursor_value({"id": 5}) == {"id": 5}


def test_source_transactions_are_read_only(db_url: str) -> None:
    make_orders(db_url, [order(1)])
    reader = SqlSourceReader(sql_source(db_url), db_url)
    reader.open()
    conn = reader._conn
    assert conn is not None
    with pytest.raises(sa.exc.DBAPIError, match=r"(?i)read.only|readonly"), conn.begin():
        conn.execute(sa.text("DELETE FROM orders"))
    reader.close()
    rows, _ = read_all(db_url, columns=["id"])
    assert rows == [(1,)]


# --------------------------------------------------------------------------- errors


def test_unknown_table_lists_the_tables_without_the_password(pg_url: str) -> None:
    make_orders(pg_url, [])
    make_orders(pg_url, [], name="customers")
    with pytest.raises(ConnectorError) as err:
        read_all(pg_url, table="ordrs")
    msg = str(err.value)
    assert msg.startswith("spec.source.table: table 'ordrs' not found in postgresql+psycopg://postgres:***@127.0.0.1:")
    assert msg.endswith("; tables: customers, orders")
    assert "adf-test-pw" not in msg


def test_unknown_table_on_every_dialect(db_url: str) -> None:
    make_orders(db_url, [])
    with pytest.raises(ConnectorError, match=r"^spec\.source\.table: table 'ordrs' not found in .*; tables: orders$"):
        read_all(db_url, table="ordrs")


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"columns": ["id", "amout"]}, r"spec\.source\.columns\[1\]"),
        ({"where": [{"column": "amout", "value": 1}]}, r"spec\.source\.where\[0\]\.column"),
        ({"orderBy": ["amout"]}, r"spec\.source\.orderBy\[0\]"),
        ({"incremental": {"cursorColumn": "amout"}}, r"spec\.source\.incremental\.cursorColumn"),
    ],
    ids=["columns", "where", "orderBy", "cursorColumn"],
)
def test_unknown_column_names_it_and_lists_the_columns(db_url: str, fields: dict[str, Any], path: str) -> None:
    make_orders(db_url, [])
    with pytest.raises(ConnectorError, match=(
        rf"^{path}: column 'amout' not found in table orders; columns: id, customer_id, amount, status, note, "
        "updated_at$"
    )):
        read_all(db_url, **fields)


def test_table_without_a_unique_key_needs_an_order(sqlite_db: str) -> None:
    create(sqlite_db, sa.Table("events", sa.MetaData(), sa.Column("name", sa.Text)))
    with pytest.raises(ConnectorError, match=r"^spec\.source\.orderBy: table events has no primary key or unique"):
        read_all(sqlite_db, table="events")


def test_an_unknown_schema_lists_the_schemas(pg_url: str) -> None:
    make_orders(pg_url, [])
    with pytest.raises(ConnectorError, match=r"^spec\.source\.schema: schema 'shop' not found in "
                                             r"postgresql\+psycopg://postgres:\*\*\*@.*; schemas: .*\bpublic\b") as err:
        read_all(pg_url, schema="shop")
    assert sa.make_url(pg_url).password not in str(err.value)


def test_a_unique_index_on_an_expression_is_no_keyset(pg_url: str) -> None:
    create(pg_url, sa.Table("events", sa.MetaData(), sa.Column("name", sa.Text, nullable=False)))
    engine = sa.create_engine(pg_url)
    with engine.begin() as c:
        c.execute(sa.text("CREATE UNIQUE INDEX events_lower_name ON events (lower(name))"))
    engine.dispose()
    with pytest.raises(ConnectorError, match=r"^spec\.source\.orderBy: table events has no primary key or unique"):
        read_all(pg_url, table="events")

def test_a_unique_index_serves_as_the_keyset(db_url: str) -> None:
    table = sa.Table("events", sa.MetaData(), sa.Column("code", sa.String(10), nullable=False, unique=True),
                     sa.Column("n", sa.Integer))
    create(db_url, table)
    insert(db_url, "events", [{"code": c, "n": i} for i, c in enumerate("dcba")])
    rows, _ = read_all(db_url, table="events", orderBy=["code"], batchSize=3)
    assert rows == [("a", 3), ("b", 2), ("c", 1), ("d", 0)]


def test_nullable_order_column_is_refused(db_url: str) -> None:
    make_orders(db_url, [])
    with pytest.raises(ConnectorError, match=r"^spec\.source\.orderBy: column 'note' is nullable"):
        read_all(db_url, orderBy=["note"])


def test_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path) -> None:
    path = tmp_path / "nope.db"
    with pytest.raises(ConnectorError, match=rf"^spec\.source\.connection: SQLite database file {path} does not"):
        read_all(f"sqlite:///{path}")
    assert not path.exists()


def test_unreachable_database_names_the_address_not_the_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://app:s3cr3t-pw@127.0.0.1:{port}/shop"
    started = time.monotonic()
    with pytest.raises(ConnectorError) as err:
        read_all(url)
    assert time.monotonic() - started < 5
    msg = str(err.value)
    assert msg.startswith(f"spec.source.connection: cannot connect to 127.0.0.1:{port}/shop: ")
    assert "s3cr3t" not in msg


def test_a_server_that_never_answers_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlmod.engine, "CONNECT_TIMEOUT_SECONDS", 1)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    port = listener.getsockname()[1]
    started = time.monotonic()
    try:
        with pytest.raises(ConnectorError, match=rf"cannot connect to 127\.0\.0\.1:{port}/shop"):
            read_all(f"postgresql+psycopg://app:s3cr3t-pw@127.0.0.1:{port}/shop")
        assert time.monotonic() - started < 5
    finally:
        for s in [*accepted, listener]:
            s.close()


def test_wrong_password_is_reported_without_it(pg_url: str) -> None:
    url = sa.make_url(pg_url).set(password="wrong-pw-123").render_as_string(hide_password=False)
    with pytest.raises(ConnectorError) as err:
        read_all(url)
    assert "password authentication failed" in str(err.value)
    assert "wrong-pw-123" not in str(err.value)


def test_unsupported_url_scheme(tmp_path) -> None:
    with pytest.raises(ConnectorError, match=r"^spec\.source\.connection: unsupported database URL scheme 'oracle"):
        read_all("oracle+nothing://u:pw@h/db")


def test_a_url_that_is_not_a_database_url_is_refused_naming_the_field() -> None:
    with pytest.raises(ConnectorError, match=r"^spec\.source\.connection: not a database URL: 'orders-db'$"):
        read_all("orders-db")


def test_a_driver_that_is_not_installed_is_named() -> None:
    with pytest.raises(ConnectorError, match=r"^spec\.source\.connection: the driver for 'mysql\+mysqldb' is not "
                                             r"installed \(MySQLdb\)$"):
        read_all("mysql+mysqldb://app:pw@127.0.0.1/shop")


def test_a_failed_open_leaves_no_connection_behind(pg_url: str) -> None:
    make_orders(pg_url, [])
    reader = open_source(sql_source(pg_url, table="ordrs"), pg_url)
    with pytest.raises(ConnectorError, match="table 'ordrs' not found"):
        reader.open()  # and no close()
    engine = sa.create_engine(pg_url)
    with engine.connect() as c:
        others = c.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )).scalar_one()
    engine.dispose()
    assert others == 0
