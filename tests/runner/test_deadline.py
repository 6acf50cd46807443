"""``runtime.timeoutSeconds`` enforced by the runner: a run stuck in the source or the sink ends failed, in
bounded time, with the reason, its sink rolled back as its ``transaction`` mode says; the next run succeeds.

The hangs are real: another session holds a lock the runner's statement waits for (PostgreSQL, MariaDB,
SQLite), or a SQLite statement never ends. Deadlines below are guards, not measurements.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from activedataflow.model import DataFlow
from activedataflow.runner.connectors.sql import create_sql_engine
from activedataflow.runner.deadline import CLEANUP_SECONDS, run_deadline
from activedataflow.runner.executor import FlowExecutor
from activedataflow.store import open_store

from tests import services
from tests.flows import dataflow, sql_sink, sql_source

TIMEOUT = 3  # runtime.timeoutSeconds of the stuck runs: ample for planning and a batch on a busy machine
GUARD_SECONDS = 30.0  # a stuck run ends long before this (without the timeout: never)
ROWS = 20


def flow(src: str, dst: str, *, timeout: int | None, transaction: str = "batch", name: str = "stuck",
         batch: int = 5) -> DataFlow:
    return dataflow(name=name, namespace="test", runtime={"timeoutSeconds": timeout} if timeout else {},
                    source=sql_source(src, batchSize=batch),
                    sink=sql_sink(dst, mode="upsert", batchSize=batch, transaction=transaction))


def run(executor: FlowExecutor, df: DataFlow) -> tuple[Any, float]:
    record = executor.register(df)
    started = time.monotonic()
    outcome = executor.run(record, force=True)
    return outcome.run, time.monotonic() - started


def fill(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text("CREATE TABLE src (id INTEGER PRIMARY KEY, v VARCHAR(20) NOT NULL)"))
        c.execute(sa.text("CREATE TABLE dst (id INTEGER PRIMARY KEY, v VARCHAR(20) NOT NULL)"))
        c.execute(sa.text("INSERT INTO src VALUES (:id, :v)"), [{"id": i, "v": f"new{i}"} for i in range(1, ROWS + 1)])
    engine.dispose()


def rows(url: str, table: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    with engine.connect() as c:
        out = [tuple(r) for r in c.execute(sa.text(f"SELECT id, v FROM {table} ORDER BY id"))]
    engine.dispose()
    return out


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[FlowExecutor]:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield FlowExecutor(store)
    store.close()


def assert_timed_out(run_record: Any, elapsed: float, *, doing: str, url: str, seconds: int = TIMEOUT) -> None:
    assert run_record.status == "failed"
    message = run_record.error_message
    assert message.startswith(f"timed out after {seconds} s (runtime.timeoutSeconds) while " + doing), message
    assert address(url) in message
    assert services.PG_PASSWORD not in message and services.MYSQL_PASSWORD not in message
    assert elapsed < GUARD_SECONDS


def address(url: str) -> str:
    u = sa.make_url(url)
    return f"{u.host}:{u.port}/{u.database}" if u.host else f"SQLite database {u.database}"


def test_a_source_locked_by_another_session_fails_the_run_with_the_reason_then_the_next_run_succeeds(
    pg_url: str, tmp_path: Path, executor: FlowExecutor
) -> None:
    fill(pg_url)
    dst = tmp_path / "dst.db"
    with sqlite3.connect(dst) as db:
        db.execute("CREATE TABLE dst (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    sink = f"sqlite:///{dst}"
    locker = sa.create_engine(pg_url)
    with locker.connect() as c, c.begin():
        c.execute(sa.text("LOCK TABLE src IN ACCESS EXCLUSIVE MODE"))
        failed, elapsed = run(executor, flow(pg_url, sink, timeout=TIMEOUT))
        assert_timed_out(failed, elapsed, doing="reading src at", url=pg_url)
        assert rows(sink, "dst") == []
    locker.dispose()
    ok, _ = run(executor, flow(pg_url, sink, timeout=None))
    assert ok.status == "success"
    assert rows(sink, "dst") == rows(pg_url, "src")


@pytest.mark.parametrize(("transaction", "batch"), [("batch", 5), ("run", 5), ("batch", ROWS)])
def test_a_sink_row_locked_mid_run_keeps_only_what_the_transaction_mode_committed(
    pg_url: str, tmp_path: Path, executor: FlowExecutor, transaction: str, batch: int
) -> None:
    """Batches of 5 go through executemany, of 20 through COPY and the merge (runner/fastpath/pg.py)."""
    fill(pg_url)
    src = tmp_path / "src.db"
    with sqlite3.connect(src) as db:
        db.execute("CREATE TABLE src (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        db.executemany("INSERT INTO src VALUES (?, ?)", [(i, f"new{i}") for i in range(1, ROWS + 1)])
    source = f"sqlite:///{src}"
    locker = sa.create_engine(pg_url)
    with locker.begin() as c:
        c.execute(sa.text("INSERT INTO dst VALUES (7, 'old7')"))
    with locker.connect() as c, c.begin():
        c.execute(sa.text("SELECT * FROM dst WHERE id = 7 FOR UPDATE"))  # the batch holding id 7 waits
        failed, elapsed = run(executor, flow(source, pg_url, timeout=TIMEOUT, transaction=transaction, batch=batch))
        assert_timed_out(failed, elapsed, doing="writing to dst at", url=pg_url)
    locker.dispose()
    left = rows(pg_url, "dst")
    assert (7, "old7") in left  # the batch that waited for the lock was rolled back
    first_batch = [(i, f"new{i}") for i in range(1, 6)]
    # batch: whole batches before the stuck one are committed (the first, unless the time ran out before its
    # checkpoint on a busy machine); run: nothing
    allowed = [[], first_batch] if transaction == "batch" and batch < 7 else [[]]
    assert [r for r in left if r != (7, "old7")] in allowed
    ok, _ = run(executor, flow(source, pg_url, timeout=None, transaction=transaction, batch=batch))
    assert ok.status == "success"
    assert rows(pg_url, "dst") == rows(source, "src")


def test_a_push_down_waiting_on_a_lock_is_stopped_and_not_retried_on_the_row_path(
    pg_url: str, executor: FlowExecutor
) -> None:
    fill(pg_url)
    locker = sa.create_engine(pg_url)
    with locker.connect() as c, c.begin():
        c.execute(sa.text("LOCK TABLE src IN ACCESS EXCLUSIVE MODE"))
        failed, elapsed = run(executor, flow(pg_url, pg_url, timeout=TIMEOUT))
        assert_timed_out(failed, elapsed, doing="running the push-down statement in dst at", url=pg_url)
    locker.dispose()
    assert rows(pg_url, "dst") == []
    ok, _ = run(executor, flow(pg_url, pg_url, timeout=None))
    assert ok.status == "success"
    assert rows(pg_url, "dst") == rows(pg_url, "src")


def test_a_mariadb_source_locked_by_another_session_fails_the_run_with_the_reason(
    mysql_url: str, tmp_path: Path, executor: FlowExecutor
) -> None:
    fill(mysql_url)
    dst = tmp_path / "dst.db"
    with sqlite3.connect(dst) as db:
        db.execute("CREATE TABLE dst (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    sink = f"sqlite:///{dst}"
    locker = sa.create_engine(mysql_url)
    with locker.connect() as c:
        c.exec_driver_sql("LOCK TABLES src WRITE")
        try:
            failed, elapsed = run(executor, flow(mysql_url, sink, timeout=TIMEOUT))
        finally:
            c.exec_driver_sql("UNLOCK TABLES")
    locker.dispose()
    assert_timed_out(failed, elapsed, doing="reading src at", url=mysql_url)
    assert rows(sink, "dst") == []
    ok, _ = run(executor, flow(mysql_url, sink, timeout=None))
    assert ok.status == "success"
    assert rows(sink, "dst") == rows(mysql_url, "src")


def test_a_sqlite_sink_locked_by_another_writer_fails_the_run_before_its_busy_timeout(
    tmp_path: Path, executor: FlowExecutor
) -> None:
    src, dst = f"sqlite:///{tmp_path / 'src.db'}", f"sqlite:///{tmp_path / 'dst.db'}"
    for url in (src, dst):
        sqlite3.connect(sa.make_url(url).database or "").close()
        fill(url)
    other = sqlite3.connect(tmp_path / "dst.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another program writing: the runner's BEGIN waits for it
    try:
        failed, elapsed = run(executor, flow(src, dst, timeout=TIMEOUT))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert_timed_out(failed, elapsed, doing="planning the run", url=dst)  # push-down looks at dst first
    assert rows(dst, "dst") == []
    ok, _ = run(executor, flow(src, dst, timeout=None))
    assert ok.status == "success"
    assert rows(dst, "dst") == rows(src, "src")


def test_a_sqlite_statement_that_never_ends_is_interrupted_at_the_deadline(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    sqlite3.connect(path).close()
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    with run_deadline(0.5) as deadline:
        engine = create_sql_engine(f"sqlite:///{path}", field="spec.source.connection")
        started = time.monotonic()
        with engine.connect() as c, pytest.raises(sa.exc.OperationalError, match="interrupted"):
            c.exec_driver_sql(endless)
    engine.dispose()
    assert deadline is not None and deadline.expired()
    assert time.monotonic() - started < GUARD_SECONDS


def test_statements_after_the_deadline_get_the_cleanup_time() -> None:
    with run_deadline(0.001) as deadline:
        assert deadline is not None
        while not deadline.expired():
            pass
        assert deadline.statement_seconds() == CLEANUP_SECONDS
        assert deadline.statement_ms() == CLEANUP_SECONDS * 1000


def test_a_redis_source_that_never_answers_fails_the_run_at_the_timeout(
    tmp_path: Path, executor: FlowExecutor
) -> None:
    """A server that accepts the connection and never replies (a stopped or partitioned Redis): the client's
    socket timeout is the time left, not its default minute."""
    import socket
    import threading

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(silent.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    port = silent.getsockname()[1]
    dst = tmp_path / "dst.db"
    with sqlite3.connect(dst) as db:
        db.execute("CREATE TABLE dst (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    silent_redis = dataflow(
        name="silent-redis", namespace="test", runtime={"timeoutSeconds": TIMEOUT},
        source={"type": "redis", "connection": {"url": f"redis://127.0.0.1:{port}/0"}, "keyPattern": "order:*"},
        sink=sql_sink(f"sqlite:///{dst}"),
    )
    try:
        failed, elapsed = run(executor, silent_redis)
    finally:
        stop.set()
        for conn in accepted:
            conn.close()
        silent.close()
    assert failed.status == "failed"
    assert failed.error_message.startswith(f"timed out after {TIMEOUT} s (runtime.timeoutSeconds) while ")
    assert f"Redis at 127.0.0.1:{port}/0" in failed.error_message
    assert elapsed < GUARD_SECONDS
