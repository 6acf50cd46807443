"""The one SQLAlchemy engine factory, shared by the store (:mod:`.sql`) and the SQL connectors.

What both need: the driver we ship for a bare scheme (``postgres://``, ``postgresql://`` -> psycopg,
``mysql://`` -> PyMySQL), a connect timeout unless the URL sets one (an unreachable server is reported,
never waited for), and on SQLite a busy timeout and a BEGIN of our own (pysqlite never emits one, so
SAVEPOINTs work). What differs stays with each caller: the store's pragmas, ``BEGIN IMMEDIATE`` and
pool settings; the connectors' read-only sessions and the run's deadline
(``runner/connectors/sql/engine.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

__all__ = ["DEFAULT_PORTS", "DRIVER_FOR_BARE_SCHEME", "SQLITE_BUSY_TIMEOUT_SECONDS", "create_engine", "normalize_url"]

DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}
DRIVER_FOR_BARE_SCHEME = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
SQLITE_BUSY_TIMEOUT_SECONDS = 30  # a writer waits this long for SQLite's write lock


def normalize_url(url: sa.URL) -> sa.URL:
    """``url`` with the driver we ship for a bare scheme (:data:`DRIVER_FOR_BARE_SCHEME`)."""
    driver = DRIVER_FOR_BARE_SCHEME.get(url.drivername)
    return url if driver is None else url.set(drivername=driver)


def _plain_begin(_conn: sa.Connection) -> str:
    return "BEGIN"


def create_engine(
    url: sa.URL,
    *,
    connect_timeout: float,
    sqlite_timeout: float = SQLITE_BUSY_TIMEOUT_SECONDS,
    sqlite_pragmas: Sequence[str] = (),
    sqlite_begin: Callable[[sa.Connection], str] = _plain_begin,
    connect_args: dict[str, Any] | None = None,
    **options: Any,
) -> sa.Engine:
    """An engine for ``url`` (normalised): SQLite waits ``sqlite_timeout`` seconds for a lock, runs
    ``sqlite_pragmas`` on each new connection and begins each transaction with ``sqlite_begin(conn)``;
    other databases get ``connect_timeout`` unless the URL names one. ``connect_args`` and ``options``
    go to :func:`sqlalchemy.create_engine` as they are."""
    url = normalize_url(url)
    args = dict(connect_args or {})
    sqlite = url.get_backend_name() == "sqlite"
    if sqlite:
        args["timeout"] = sqlite_timeout
    elif "connect_timeout" not in url.query:
        args["connect_timeout"] = connect_timeout
    engine = sa.create_engine(url, connect_args=args, **options)
    if sqlite:
        _explicit_begin(engine, tuple(sqlite_pragmas), sqlite_begin)
    return engine


def _explicit_begin(engine: sa.Engine, pragmas: tuple[str, ...], begin: Callable[[sa.Connection], str]) -> None:
    """pysqlite must not emit BEGIN itself (the SQLAlchemy documentation's recipe): we do, on ``begin``."""

    @sa.event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        if pragmas:
            cur = dbapi_connection.cursor()
            for pragma in pragmas:
                cur.execute(pragma)
            cur.close()

    @sa.event.listens_for(engine, "begin")
    def _sqlite_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql(begin(conn))
