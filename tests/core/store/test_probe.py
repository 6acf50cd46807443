"""The heartbeat's probe (store/probe.py) says "nothing due" exactly when the SQLite store would find nothing to do."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from activedataflow.store import open_store
from activedataflow.store.probe import nothing_due, sqlite_path
from activedataflow.store.schema import flows, runs
from activedataflow.store.sql import SqlStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NOW = datetime(2026, 3, 29, 1, 0, 0, 500_000, tzinfo=UTC)
NAMESPACES = ("shop", "ops")

# A time near NOW (equal included: due means next_run_at <= now, lapsed means lease_expires_at <= now).
near = st.sampled_from([-3600.0, -1.0, -0.000001, 0.0, 0.000001, 1.0, 3600.0]).map(lambda s: NOW + timedelta(seconds=s))
flow_rows = st.lists(
    st.tuples(st.booleans(), st.none() | near, st.sampled_from(NAMESPACES)), max_size=6)
run_rows = st.lists(
    st.tuples(st.sampled_from(["pending", "in_progress", "success", "failed"]), st.none() | near), max_size=4)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path_factory.mktemp('probe') / 'adf.db'}")
    assert isinstance(s, SqlStore)
    yield s
    s.close()


def url_of(store: SqlStore) -> str:
    return store.url.render_as_string(hide_password=False)


def fill(store: SqlStore, flow_specs: list[tuple[bool, datetime | None, str]],
         run_specs: list[tuple[str, datetime | None]]) -> None:
    rows = [
        {"id": i + 1, "name": f"flow-{i}", "namespace": ns, "description": "", "spec": {}, "enabled": enabled,
         "schedule": "*/5 * * * *", "concurrency_policy": "Forbid", "next_run_at": next_run_at,
         "created_at": NOW, "updated_at": NOW}
        for i, (enabled, next_run_at, ns) in enumerate(flow_specs)
    ]
    run_list: list[dict[str, Any]] = [
        {"flow_id": 1, "status": status, "trigger": "schedule", "attempt": 1, "run_name": f"r{k}",
         "records_read": 0, "records_written": 0, "records_failed": 0, "lease_expires_at": lease, "created_at": NOW}
        for k, (status, lease) in enumerate(run_specs)
    ] if rows else []
    with store._engine.begin() as c:
        c.execute(runs.delete())
        c.execute(flows.delete())
        if rows:
            c.execute(flows.insert(), rows)
        if run_list:
            c.execute(runs.insert(), run_list)


def store_has_work(store: SqlStore, namespace: str | None) -> bool:
    lapsed = [r for f in store.list_flows() for r in store.active_runs(f.name, f.namespace)
              if r.lease_expires_at is not None and r.lease_expires_at <= NOW]
    return bool(store.due_flows(NOW, namespace)) or bool(lapsed)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flow_specs=flow_rows, run_specs=run_rows, namespace=st.none() | st.sampled_from(NAMESPACES))
def test_nothing_due_agrees_with_the_store(
    store: SqlStore, flow_specs: list[tuple[bool, datetime | None, str]],
    run_specs: list[tuple[str, datetime | None]], namespace: str | None,
) -> None:
    fill(store, flow_specs, run_specs)
    assert nothing_due(url_of(store), NOW, namespace) is (not store_has_work(store, namespace))


def test_a_store_not_at_the_head_revision_is_left_to_the_store(store: SqlStore) -> None:
    fill(store, [], [])
    assert nothing_due(url_of(store), NOW)
    path = sqlite_path(url_of(store))
    assert path is not None
    with sqlite3.connect(path) as db:
        db.execute("UPDATE adf_alembic_version SET version_num = '0002'")
    try:
        assert not nothing_due(url_of(store), NOW)
    finally:
        with sqlite3.connect(path) as db:
            db.execute("UPDATE adf_alembic_version SET version_num = '0003'")


def test_a_missing_file_is_left_to_the_store_and_not_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert not nothing_due(url, NOW)
    assert not (tmp_path / "none.db").exists()


def test_a_directory_at_the_path_is_left_to_the_store(tmp_path: Path) -> None:
    (tmp_path / "adf.db").mkdir()
    assert not nothing_due(f"sqlite:///{tmp_path / 'adf.db'}", NOW)


@pytest.mark.parametrize("content", [
    pytest.param(b"not a database, a text file", id="not-sqlite"),
    pytest.param(b"", id="empty-file"),
])
def test_a_file_that_is_no_store_is_left_to_the_store(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "adf.db").write_bytes(content)
    assert not nothing_due(f"sqlite:///{tmp_path / 'adf.db'}", NOW)
    assert (tmp_path / "adf.db").read_bytes() == content  # read-only: left as found


def test_a_sqlite_database_never_migrated_is_left_to_the_store(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "adf.db") as db:
        db.execute("CREATE TABLE other (id INTEGER)")
    assert not nothing_due(f"sqlite:///{tmp_path / 'adf.db'}", NOW)


def test_a_store_locked_by_a_writer_is_left_to_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'adf.db'}"
    open_store(url).close()
    writer = sqlite3.connect(tmp_path / "adf.db", isolation_level=None)
    try:
        writer.execute("PRAGMA journal_mode=DELETE")  # WAL readers never wait; a rollback journal's do
        assert nothing_due(url, NOW)
        writer.execute("BEGIN EXCLUSIVE")
        assert not nothing_due(url, NOW)
    finally:
        writer.close()


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://u:p@127.0.0.1/db", "redis://127.0.0.1:6379/0", "memory://", "sqlite://",
    "sqlite:///:memory:", "sqlite:///adf.db?mode=ro",
])
def test_other_stores_are_left_to_the_store(url: str) -> None:
    assert not nothing_due(url, NOW)
