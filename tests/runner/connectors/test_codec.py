"""The codec's own mappings: ISO 8601 intervals PostgreSQL reads back exactly, JSON text, encoders per column."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from activedataflow.model import SqlSource
from activedataflow.runner.connectors import open_source
from activedataflow.runner.connectors.codec import JsonText, interval_iso, json_text, sink_encoder
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def pg(pg_server: str) -> Iterator[sa.Connection]:
    engine = sa.create_engine(pg_server, poolclass=sa.pool.NullPool)
    with engine.connect() as c:
        yield c
    engine.dispose()


@pytest.mark.postgres
@settings(max_examples=100, deadline=None)
@given(st.timedeltas(min_value=dt.timedelta(days=-10**6), max_value=dt.timedelta(days=10**6)))
def test_postgresql_reads_an_iso_interval_back_as_the_same_duration(pg: sa.Connection, td: dt.timedelta) -> None:
    text = interval_iso(td)
    # interval equality is exact to the microsecond (days as 24 h: a timedelta has no months)
    assert pg.exec_driver_sql("SELECT %(t)s::interval = %(td)s", {"t": text, "td": td}).scalar_one(), text


@pytest.mark.parametrize(("td", "text"), [
    (dt.timedelta(0), "PT0S"),
    (dt.timedelta(days=428), "P428D"),
    (dt.timedelta(seconds=-1.5), "PT-1.5S"),
    (dt.timedelta(days=3, hours=4, minutes=5, seconds=6), "P3DT4H5M6S"),
    (dt.timedelta(days=-2, hours=1), "P-1DT-23H"),
    (dt.timedelta(microseconds=10), "PT0.00001S"),
])
def test_interval_iso_writes_what_postgresql_iso_8601_style_writes(td: dt.timedelta, text: str) -> None:
    assert interval_iso(td) == text


def test_json_text_keeps_unicode_and_refuses_nan() -> None:
    assert json_text(["é", None, 1, {"a": uuid.UUID(int=1)}]) == (
        '["é",null,1,{"a":"00000000-0000-0000-0000-000000000001"}]')
    with pytest.raises(ValueError):
        json_text([float("nan")])


def test_an_encoder_touches_only_the_columns_that_need_it_and_names_the_column_of_a_bad_value() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.BigInteger, primary_key=True), sa.Column("s", sa.Text),
                     sa.Column("x", sa.Float), sa.Column("j", sa.JSON), sa.Column("at", sa.DateTime))
    encoder = sink_encoder(table, ["id", "s", "x", "j", "at"], "sqlite")
    assert encoder is not None and [pos for pos, *_ in encoder.encoders] == [1, 2, 3, 4]
    aware = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    rows, failed = encoder.encode([
        (1, uuid.UUID(int=2), 1.5, JsonText('{"a":  1}'), aware),
        (2, [1, 2], float("nan"), None, None),
        (3, None, None, "not json", dt.datetime(2024, 1, 1)),
    ])
    assert rows[0] == (1, "00000000-0000-0000-0000-000000000002", 1.5, '{"a":  1}', dt.datetime(2024, 1, 1, 10))
    assert rows[1][1] == "[1,2]"
    assert failed == {1: "column x: NaN cannot be stored in a SQLite REAL column (SQLite would store NULL)",
                      2: "column j: 'not json' is not JSON text"}
    assert sink_encoder(sa.Table("u", sa.MetaData(), sa.Column("id", sa.Integer)), ["id"], "sqlite") is None


def test_json_writes_an_interval_as_iso_8601_and_refuses_a_type_it_has_no_form_for() -> None:
    assert json_text({"wait": dt.timedelta(hours=1, minutes=30)}) == '{"wait":"PT1H30M"}'
    with pytest.raises(TypeError, match=r"^a set value cannot be written as JSON$"):
        json_text({"tags": {"a"}})


def test_into_a_text_column_an_interval_is_iso_8601_and_into_a_json_column_a_value_is_its_json() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("s", sa.Text),
                     sa.Column("j", sa.JSON))
    encoder = sink_encoder(table, ["id", "s", "j"], "postgresql")
    assert encoder is not None
    rows, failed = encoder.encode([(1, dt.timedelta(days=2, seconds=5), {"a": [1, 2.5], "b": None}),
                                   (2, 42, [True])])
    # a number into a text column is left to the database's own text of it
    assert rows == [(1, "P2DT5S", '{"a": [1, 2.5], "b": null}'), (2, 42, "[true]")]
    assert failed == {}



@pytest.fixture
def sqlite_docs(sqlite_db: str) -> str:
    """A SQLite table with a JSON column holding a document, a number, a BLOB and NULL (SQLite keeps any value)."""
    engine = sa.create_engine(sqlite_db)
    with engine.begin() as c:
        c.execute(sa.text("CREATE TABLE docs (id INTEGER PRIMARY KEY, doc JSON)"))
        c.execute(sa.text("INSERT INTO docs VALUES (1, '{\"a\": 1}'), (2, 42), (3, CAST('[1, 2]' AS BLOB)), (4, NULL)"))
    engine.dispose()
    return sqlite_db


def read_docs(url: str, **fields: Any) -> list[tuple[Any, ...]]:
    spec = SqlSource.model_validate({"type": "sql", "connection": {"url": url}, "table": "docs", **fields})
    reader = open_source(spec, url)
    try:
        reader.open()
        return [r for b in reader.batches() for r in b.rows]
    finally:
        reader.close()


def test_a_json_column_is_read_as_its_text_whatever_sqlite_holds_in_it(sqlite_docs: str) -> None:
    """The driver hands back a number as a number and a BLOB as bytes: both arrive as the document's text."""
    rows = read_docs(sqlite_docs)
    assert rows == [(1, '{"a": 1}'), (2, "42"), (3, "[1, 2]"), (4, None)]
    assert [type(doc) for _, doc in rows[:3]] == [JsonText] * 3


def test_a_where_value_on_a_json_column_is_compared_as_the_documents_text(sqlite_docs: str) -> None:
    assert read_docs(sqlite_docs, where=[{"column": "doc", "op": "=", "value": '{"a": 1}'}]) == [(1, '{"a": 1}')]
