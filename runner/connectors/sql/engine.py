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
from ...deadline import REFRESH_SECONDS, Deadline, current_deadline

__all__ = ["connect", "create_sql_engine", "display_url", "lost", "talking"]

CONNECT_TIMEOUT_SECONDS = 10
SQLITE_BUSY_TIMEOUT_SECONDS = 30
SQLITE_PROGRESS_STEPS = 10_000  # SQLite VM steps between two looks at the run's deadline (about a millisecond)

DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}
DRIVER_FOR_BARE_SCHEME = {"postgres": "postgresql+psycopg", "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}


def _parse_url(url: str, field: str) -> URL:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ConnectorError(f"not a database URL: {redact(url)!r}", field=field) from None
    if parsed.drivername in DRIVER_FOR_BARE_SCHEME:
        parsed = parsed.set(drivername=DRIVER_FOR_BARE_SCHEME[parsed.drivername])
    return parsed


def display_url(url: URL) -> str:
    return redact(url.render_as_string(hide_password=True))


def _address(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database or ':memory:'}"
    port = url.port or DEFAULT_PORTS.get(url.get_backend_name()) or ""
    return f"{url.host or 'localhost'}:{port}" + (f"/{url.database}" if url.database else "")


def create_sql_engine(url: str, *, field: str, readonly: bool = False) -> sa.Engine:
    """An engine for a source or sink URL, with a connect timeout and clear errors.

    ``readonly``: every transaction is read-only (PostgreSQL ``postgresql_readonly``,
    SQLite ``PRAGMA query_only``, MySQL ``SET SESSION TRANSACTION READ ONLY``).
    Writers on SQLite get explicit ``BEGIN`` so SAVEPOINTs work with pysqlite.
    A SQLite file that does not exist is an error (it would be created empty).
    Inside a run with ``runtime.timeoutSeconds`` its statements get the time left (:func:`_obey_deadline`).
    """
    parsed = _parse_url(url, field)
    deadline = current_deadline()
    try:
        engine = sa.create_engine(parsed, connect_args=_connect_args(parsed, deadline, field), pool_pre_ping=False)
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
    _set_up_sessions(engine, parsed.get_backend_name(), readonly=readonly)
    if deadline is not None:
        _obey_deadline(engine, deadline)
    return engine


def _connect_args(parsed: URL, deadline: Deadline | None, field: str) -> dict[str, Any]:
    """The DBAPI connect() arguments: SQLite's busy timeout (the file must exist), else a connect timeout."""
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:" and not db.startswith("file:") and not Path(db).is_file():
            raise ConnectorError(f"SQLite database file {db} does not exist", field=field)
        busy = deadline.statement_seconds() if deadline else math.inf  # waiting for another writer's lock
        return {"timeout": min(SQLITE_BUSY_TIMEOUT_SECONDS, busy)}
    if "connect_timeout" not in parsed.query:
        return {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    return {}


def _set_up_sessions(engine: sa.Engine, backend: str, *, readonly: bool) -> None:
    """SQLite: explicit BEGIN (so SAVEPOINTs work with pysqlite) and query_only; MySQL: read-only sessions."""
    if backend == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (savepoints work)
            if readonly:
                dbapi_conn.execute("PRAGMA query_only = ON")

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN")

    elif backend in ("mysql", "mariadb") and readonly:

        @sa.event.listens_for(engine, "connect")
        def _mysql_readonly(dbapi_conn: Any, _record: Any) -> None:
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
        elif backend == "sqlite":
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


