"""The codec's own mappings: ISO 8601 intervals PostgreSQL reads back exactly, JSON text, encoders per column."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
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
