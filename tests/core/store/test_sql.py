"""The SQL backend's own details (core/store/sql.py); the store contract is test_conformance.py's."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from activedataflow.store import FlowUpsert, open_store, sql_url
from activedataflow.store.schema import flows
from activedataflow.store.sql import SqlStore

from tests.core.store.conftest import url_of

NOW = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)


def test_repr_names_the_address_without_the_password() -> None:
    store = SqlStore(sql_url("postgresql://adf:secret@db.example:5432/adf"))
    assert repr(store) == "SqlStore('postgresql+psycopg://adf:***@db.example:5432/adf')"
    store.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_store_is_one_database_for_all_its_threads(url: str) -> None:
    store = open_store(url)
    other = open_store(url)
    try:
        store.upsert_flow(FlowUpsert(name="orders", namespace="shop", spec={}))
        seen: list[list[str]] = []
        reader = threading.Thread(target=lambda: seen.append([f.name for f in store.list_flows()]))
        reader.start()
        reader.join()
        assert seen == [["orders"]]  # another thread, the same database
        assert other.list_flows() == []  # another store, another database
    finally:
        store.close()
        other.close()


def test_a_store_once_migrated_asks_the_database_nothing_more_to_migrate(sqlite_url: str) -> None:
    store = open_store(sqlite_url)  # migrated
    assert isinstance(store, SqlStore)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(store._engine, "before_cursor_execute", record)
    try:
        store.migrate()
        assert statements == []
        store.ping()
        assert "SELECT 1" in statements  # the listener does see the store's statements
    finally:
        sa.event.remove(store._engine, "before_cursor_execute", record)
        store.close()


LOCKING = [
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]

BLOCKED = {  # whether another session of this database waits for a row lock
    "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                  " AND wait_event_type = 'Lock'",
    "mysql": "SELECT count(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'",
}


@pytest.mark.parametrize("backend", LOCKING)
def test_an_upsert_that_loses_the_race_to_insert_a_new_flow_updates_it(
    request: pytest.FixtureRequest, backend: str
) -> None:
    """Two first applies of one flow (two operators, an operator and ``adf apply``): both find no row, both
    insert; the second insert waits for the first on the unique key, fails when it commits, and the upsert
    then updates the row it now finds."""
    url = url_of(request, backend)
    store = open_store(url)
    rival = sa.create_engine(url)
    watcher = sa.create_engine(url)
    try:
        with rival.connect() as r:
            first = r.begin()
            r.execute(flows.insert().values(
                name="orders", namespace="shop", description="first", spec={}, enabled=True,
                concurrency_policy="Forbid", created_at=NOW, updated_at=NOW))
            results: list[Any] = []
            upsert = threading.Thread(target=lambda: results.append(store.upsert_flow(
                FlowUpsert(name="orders", namespace="shop", spec={"v": 2}, description="second"))), daemon=True)
            upsert.start()
            deadline = time.monotonic() + 60
            with watcher.connect() as w:
                while not w.execute(sa.text(BLOCKED[backend])).scalar():  # the upsert's INSERT waits for ours
                    assert upsert.is_alive() and time.monotonic() < deadline, "the upsert never waited"
                    upsert.join(0.01)
                    w.rollback()
            first.commit()
            upsert.join(60)
        assert len(results) == 1
        record = results[0]
        assert (record.description, record.spec, record.created_at) == ("second", {"v": 2}, NOW)
        assert [(f.name, f.description) for f in store.list_flows()] == [("orders", "second")]
    finally:
        rival.dispose()
        watcher.dispose()
        store.close()
