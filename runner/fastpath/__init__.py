"""Fast paths: driver-speed sink strategies per dialect, a raw-cursor PostgreSQL/SQLite source, SQL push-down.

:func:`install` registers the sink write strategies with the SQL connector
(:func:`activedataflow.runner.connectors.sql.register_write_strategy`):

* PostgreSQL (psycopg 3): :class:`~.pg.PgCopyStrategy`, COPY into a staging table + one merge per flush;
* SQLite and MySQL/MariaDB: :class:`~.dbapi.PreparedExecutemanyStrategy`, the sink's one statement
  compiled once by SQLAlchemy and run with the driver's ``executemany``.

Set ``ADF_FASTPATH=off`` to use the generic SQLAlchemy paths (for comparison and bisecting problems).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...model import SqlSource
    from ..connectors.sql import SqlSourceReader

__all__ = ["enabled", "install", "sql_source_reader"]

_installed = False


def enabled() -> bool:
    return os.environ.get("ADF_FASTPATH", "on").lower() not in ("off", "0", "false", "no")


def install() -> None:
    """Register the sink strategies (idempotent; a no-op with ``ADF_FASTPATH=off``)."""
    global _installed
    if _installed or not enabled():
        return
    from ..connectors.sql import register_write_strategy
    from .dbapi import PreparedExecutemanyStrategy
    from .pg import PgCopyStrategy

    register_write_strategy("postgresql", PgCopyStrategy)
    register_write_strategy("sqlite", PreparedExecutemanyStrategy)
    register_write_strategy("mysql", PreparedExecutemanyStrategy)
    register_write_strategy("mariadb", PreparedExecutemanyStrategy)
    _installed = True


def sql_source_reader(spec: SqlSource, url: str, *, field: str = "spec.source") -> SqlSourceReader:
    """The SQL source reader for ``url``: raw-tuple pages on PostgreSQL (read ahead by a thread) and SQLite."""
    from ..connectors.sql import SqlSourceReader

    if not enabled():
        return SqlSourceReader(spec, url, field=field)
    from .source import RawFetchSourceReader

    if url.startswith(("postgresql+psycopg:", "postgresql:", "postgres:")):
        return RawFetchSourceReader(spec, url, field=field)
    if url.startswith("sqlite"):
        reader = RawFetchSourceReader(spec, url, field=field)
        reader.read_ahead = False
        return reader
    return SqlSourceReader(spec, url, field=field)
