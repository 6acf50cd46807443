"""Engines for a source or sink URL: URL parsing and display, connect arguments, sessions (read-only,
SQLite's explicit BEGIN), the run's deadline as the database's statement timeout, and driver errors
as :class:`ConnectorError` naming the address (never the password)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from ....errors import ConnectorError, redact
from ....store.engine import DEFAULT_PORTS, SQLITE_BUSY_TIMEOUT_SECONDS, create_engine, normalize_url
from ...deadline import REFRESH_SECONDS, Deadline, current_deadline
from ..common import CONNECT_TIMEOUT_SECONDS
from ..engines import engine_for

__all__ = ["connect", "create_sql_engine", "display_url", "lost", "talking"]

SQLITE_PROGRESS_STEPS = 10_000  # SQLite VM steps between two looks at the run's deadline (about a millisecond)


def _parse_url(url: str, field: str) -> URL:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ConnectorError(f"not a database URL: {redact(url)!r}", field=field) from None
    return normalize_url(parsed)


def display_url(url: URL) -> str:
    return redact(url.render_as_string(hide_password=True))


def _address(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database or ':memory:'}"
    port = url.port or DEFAULT_PORTS.get(url.get_backend_name()) or ""
    return f"{url.host or 'localhost'}:{port}" + (f"/{url.database}" if url.database else "")


def create_sql_engine(url: str, *, field: str, readonly: bool = False) -> sa.Engine:
    """An engine for a source or sink URL (the store's factory, :func:`activedataflow.store.engine.create_engine`),
    with clear errors.

    ``readonly``: every transaction is read-only (PostgreSQL ``postgresql_readonly``,
    SQLite ``PRAGMA query_only``, MySQL ``SET SESSION TRANSACTION READ ONLY``).
    A SQLite file that does not exist is an error (it would be created empty).
    Inside a run with ``runtime.timeoutSeconds`` its statements get the time left (:func:`_obey_deadline`).
    Within an attempt (:func:`..engines.attempt_engines`) callers asking for the same database with the same
    options share one engine: give it back with :func:`..engines.release`, never ``dispose()``.
    """
    parsed = _parse_url(url, field)
    deadline = current_deadline()
    # PostgreSQL sessions are made read-only per connection (postgresql_readonly, reset when it goes back to
    # the pool): its readers and writers share an engine; SQLite's and MySQL's are read-only per engine
    readonly_engine = readonly and parsed.get_backend_name() != "postgresql"
    key = (parsed.render_as_string(hide_password=False), readonly_engine, id(deadline) if deadline else None)
    return engine_for(key, lambda: _new_engine(parsed, field, readonly=readonly, deadline=deadline))


def _new_engine(parsed: URL, field: str, *, readonly: bool, deadline: Deadline | None) -> sa.Engine:
    try:
        engine = create_engine(
            parsed, connect_timeout=CONNECT_TIMEOUT_SECONDS, sqlite_timeout=_sqlite_timeout(parsed, deadline, field),
            sqlite_pragmas=["PRAGMA query_only = ON"] if readonly else (),
            pool_pre_ping=True,  # a connection reused within the attempt is checked first (a fresh one never is)
        )
    except sa.exc.NoSuchModuleError:
        raise ConnectorError(
            f"unsupported database URL scheme {parsed.drivername!r} "
            "(expected sqlite:///, postgresql+psycopg://, mysql+pymysql://)",
            field=field,
        ) from None
    except ImportError as err:
        raise ConnectorError(f"the driver for {parsed.drivername!r} is not installed ({err.name})",
                             field=field) from None
    engine.update_execution_options(adf_display_url=display_url(parsed), adf_address=_address(parsed))
    if readonly and parsed.get_backend_name() in ("mysql", "mariadb"):
        _mysql_readonly(engine)
    if deadline is not None:
        _obey_deadline(engine, deadline)
    return engine


def _sqlite_timeout(parsed: URL, deadline: Deadline | None, field: str) -> float:
    """SQLite's busy timeout: waiting for another writer's lock, within the run's time left (the file must exist)."""
    if parsed.get_backend_name() != "sqlite":
        return SQLITE_BUSY_TIMEOUT_SECONDS
    db = parsed.database
    if db and db != ":memory:" and not db.startswith("file:") and not Path(db).is_file():
        raise ConnectorError(f"SQLite database file {db} does not exist", field=field)
    return min(SQLITE_BUSY_TIMEOUT_SECONDS, deadline.statement_seconds() if deadline else math.inf)


def _mysql_readonly(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _readonly(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION READ ONLY")


def _obey_deadline(engine: sa.Engine, deadline: Deadline) -> None:
    """Give every statement of ``engine`` no more than the run's time left, enforced by the database.

    Before a statement, once the connection's setting is :data:`REFRESH_SECONDS` old (or was undone by a
    rollback), it is set to the time left: PostgreSQL ``statement_timeout`` (covers lock waits), MariaDB
    ``max_statement_time`` / MySQL ``max_execution_time`` (SELECTs) with the lock wait timeouts, SQLite
    ``busy_timeout``; SQLite's progress handler interrupts a statement running past the deadline. Raw
    driver statements (the COPY fast path) run under the setting of the SAVEPOINT before them.
    """
    backend = engine.dialect.name

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _set_timeout(conn: sa.Connection, cursor: Any, *_args: Any) -> None:
        info = conn.info
        now = time.monotonic()
        if now - info.get("adf_timeout_set", -math.inf) < REFRESH_SECONDS:
            return
        info["adf_timeout_set"] = now
        if backend == "postgresql":
            cursor.execute(f"SET statement_timeout = {deadline.statement_ms()}")
        elif backend in ("mysql", "mariadb"):
            locks = max(1, math.ceil(deadline.statement_seconds()))
            mariadb = getattr(conn.dialect, "is_mariadb", False)
            limit = (f"max_statement_time = {deadline.statement_seconds():.3f}" if mariadb
                     else f"max_execution_time = {deadline.statement_ms()}")
            cursor.execute(f"SET SESSION {limit}, lock_wait_timeout = {locks}, innodb_lock_wait_timeout = {locks}")
        elif backend == "sqlite":  # pragma: no branch - no other dialect has its driver installed
            cursor.execute(f"PRAGMA busy_timeout = {deadline.statement_ms()}")

    def _undone(conn: sa.Connection, *_args: Any) -> None:  # a rollback also undoes SETs made in it
        conn.info.pop("adf_timeout_set", None)

    sa.event.listen(engine, "rollback", _undone)
    sa.event.listen(engine, "rollback_savepoint", _undone)

    if backend == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _sqlite_interrupt(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.set_progress_handler(lambda: 1 if deadline.expired() else 0, SQLITE_PROGRESS_STEPS)


def connect(engine: sa.Engine, *, field: str) -> sa.Connection:
    """Connect, or raise ConnectorError naming the address (never the password), within the connect timeout."""
    try:
        return engine.connect()
    except sa.exc.DBAPIError as err:
        raise ConnectorError(
            f"cannot connect to {engine.get_execution_options()['adf_address']}: {_db_message(err)}", field=field
        ) from None


def lost(conn: sa.Connection | sa.Engine, doing: str, err: BaseException, *, field: str) -> ConnectorError:
    """A failure talking to the database (a cut connection, a server gone) as ConnectorError naming the
    address it talked to (never the password) and what it was doing."""
    address = conn.get_execution_options().get("adf_address", "the database")
    return ConnectorError(f"{doing} at {address} failed: {_db_message(err)}", field=field)


@contextlib.contextmanager
def talking(conn: sa.Connection | sa.Engine, doing: str, *, field: str) -> Iterator[None]:
    """Driver errors inside the block become :func:`lost`'s ConnectorError (ConnectorError passes)."""
    try:
        yield
    except sa.exc.DBAPIError as err:
        raise lost(conn, doing, err, field=field) from None


def _db_message(err: BaseException, limit: int = 300) -> str:
    """The driver's message, on one line, without secrets or SQLAlchemy's SQL/background-link noise."""
    orig = getattr(err, "orig", None)
    text = str(orig if orig is not None else err)
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


