"""Engines shared within one run attempt (runner/connectors/engines.py), disposed at its end."""

from __future__ import annotations

import contextvars
import sqlite3
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from activedataflow.runner.connectors.engines import attempt_engines, release
from activedataflow.runner.connectors.sql import create_sql_engine
from activedataflow.runner.executor import FlowExecutor
from activedataflow.store import open_store

from tests.flows import dataflow, sql_sink, sql_source

SINK = "spec.sink.connection"
SOURCE = "spec.source.connection"
PG = "postgresql+psycopg://u:pw@127.0.0.1:1/x"  # never connected to: engines connect lazily


def open_connection(engine: sa.Engine) -> sqlite3.Connection:
    """A SQLite connection ``engine`` made and took back into its pool."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw


def is_closed(raw: sqlite3.Connection) -> bool:
    try:
        raw.execute("SELECT 1")
    except sqlite3.ProgrammingError:  # "Cannot operate on a closed database."
        return True
    return False


def test_an_attempt_shares_one_engine_per_database_and_options(sqlite_db: str) -> None:
    with attempt_engines() as engines:
        sink = create_sql_engine(sqlite_db, field=SINK)
        assert create_sql_engine(sqlite_db, field=SINK) is sink
        assert create_sql_engine(sqlite_db, field=SOURCE, readonly=True) is not sink  # SQLite: query_only
        pg = create_sql_engine(PG, field=SINK)
        assert create_sql_engine(PG, field=SOURCE, readonly=True) is pg  # PostgreSQL: read-only per connection
        assert create_sql_engine(PG.replace("/x", "/y"), field=SINK) is not pg
        assert len(engines) == 4  # SQLite writer and reader, the two PostgreSQL databases


def test_a_released_engine_stays_open_until_the_attempt_ends(sqlite_db: str) -> None:
    with attempt_engines():
        engine = create_sql_engine(sqlite_db, field=SINK)
        raw = open_connection(engine)
        release(engine)
        assert not is_closed(raw)
        assert open_connection(create_sql_engine(sqlite_db, field=SINK)) is raw  # the pooled connection, again
    assert is_closed(raw)


def test_the_attempt_disposes_its_engines_when_it_fails(sqlite_db: str) -> None:
    with pytest.raises(RuntimeError), attempt_engines():
        raw = open_connection(create_sql_engine(sqlite_db, field=SINK))
        raise RuntimeError("the run failed")
    assert is_closed(raw)


def test_outside_an_attempt_every_engine_is_its_own_and_release_disposes_it(sqlite_db: str) -> None:
    engine = create_sql_engine(sqlite_db, field=SINK)
    assert create_sql_engine(sqlite_db, field=SINK) is not engine
    raw = open_connection(engine)
    release(engine)
    assert is_closed(raw)


def test_two_attempts_do_not_share_engines(sqlite_db: str) -> None:
    with attempt_engines():
        first = create_sql_engine(sqlite_db, field=SINK)
    with attempt_engines():
        assert create_sql_engine(sqlite_db, field=SINK) is not first


@pytest.mark.parametrize("context", ["fresh", "copied"])
def test_another_thread_gets_an_engine_of_its_own(sqlite_db: str, context: str) -> None:
    """A thread's SQLite connections are its own (pysqlite refuses another thread's): never the attempt's,
    even when the thread runs in a copy of the attempt's context."""
    got: list[sa.Engine] = []

    def make() -> None:
        engine = create_sql_engine(sqlite_db, field=SINK)
        got.append(engine)
        release(engine)

    with attempt_engines() as engines:
        mine = create_sql_engine(sqlite_db, field=SINK)
        target: Any = make if context == "fresh" else contextvars.copy_context().run
        thread = threading.Thread(target=target, args=() if context == "fresh" else (make,))
        thread.start()
        thread.join()
        assert got and got[0] is not mine
        assert len(engines) == 1


@pytest.mark.postgres
def test_a_same_database_postgresql_run_connects_once(pg_url: str) -> None:
    """Planning (both tables reflected), the push-down statement and its bookkeeping: one engine, one
    connection to the server, closed when the attempt ends."""
    with sa.create_engine(pg_url).begin() as c:
        c.execute(sa.text("CREATE TABLE src (id INTEGER PRIMARY KEY, amount NUMERIC(12,2))"))
        c.execute(sa.text("INSERT INTO src VALUES (1, 1.50), (2, 2.25)"))
        c.execute(sa.text("CREATE TABLE dst (id INTEGER PRIMARY KEY, amount NUMERIC(12,2))"))
    connections: list[Any] = []

    def count(dbapi_connection: Any, _record: Any) -> None:
        if not isinstance(dbapi_connection, sqlite3.Connection):
            connections.append(dbapi_connection)

    flow = dataflow(source=sql_source(pg_url), sink=sql_sink(pg_url, mode="upsert"))
    store = open_store("memory://")
    sa.event.listen(sa.pool.Pool, "connect", count)
    try:
        executor = FlowExecutor(store)
        outcome = executor.run(executor.register(flow), trigger="manual", force=True)
    finally:
        sa.event.remove(sa.pool.Pool, "connect", count)
        store.close()
    assert outcome.run is not None and outcome.run.status == "success" and outcome.run.records_written == 2
    assert len(connections) == 1
    assert connections[0].closed
