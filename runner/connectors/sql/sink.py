"""The SQL sink: the target and its write statement, the write strategies, and the writer (see the package
docstring)."""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from ....errors import ConnectorError
from ....model import SqlSink
from .. import codec
from ..base import Row
from ..common import BufferedSinkWriter
from ..engines import release
from .engine import _db_message, connect, create_sql_engine, lost, talking
from .reflect import _not_found, check_column, reflect_with_keys

if TYPE_CHECKING:  # the dialects' own modules load when a flow writes to that database
    from sqlalchemy.dialects import postgresql, sqlite

__all__ = [
    "ExecutemanyStrategy",
    "SinkTarget",
    "SqlSinkWriter",
    "WriteStrategy",
    "build_write_statement",
    "register_write_strategy",
    "write_strategy_for",
]

log = logging.getLogger("activedataflow.connectors.sql")

_Insert = TypeVar("_Insert", bound=sa.Insert)


@dataclass(frozen=True)
class SinkTarget:
    """Everything a write strategy needs to know about the target, resolved and checked at open."""

    table: sa.Table
    columns: tuple[str, ...]  # the row tuples' positions
    mode: str  # insert | upsert
    unique_by: tuple[str, ...]
    update_columns: tuple[str, ...]  # set on conflict (upsert)
    dialect: str


def build_write_statement(target: SinkTarget, *, table: sa.Table | None = None,
                          source: tuple[list[str], sa.Select[Any]] | None = None) -> sa.Insert:
    """The one INSERT (or native upsert) statement for ``target``, with a bound parameter per column.

    ``table`` replaces the target's table object (the same table named another way); with ``source``
    (column names, SELECT) the rows come from the SELECT instead (push-down's INSERT ... SELECT).
    """
    table = target.table if table is None else table

    def insert(ins: _Insert) -> _Insert:
        return ins if source is None else ins.from_select(*source)

    if target.mode == "insert":
        return insert(sa.insert(table))
    if target.dialect in ("postgresql", "sqlite"):
        ins: postgresql.Insert | sqlite.Insert
        if target.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql as pg

            ins = insert(pg.insert(table))
        else:
            from sqlalchemy.dialects import sqlite as lite

            ins = insert(lite.insert(table))
        if not target.update_columns:
            return ins.on_conflict_do_nothing(index_elements=list(target.unique_by))
        return ins.on_conflict_do_update(
            index_elements=list(target.unique_by), set_={c: ins.excluded[c] for c in target.update_columns}
        )
    if target.dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects import mysql

        my = mysql.insert(table)
        if not target.update_columns:  # keep the row: assign a key column to itself
            return my.on_duplicate_key_update({target.unique_by[0]: table.c[target.unique_by[0]]})
        return my.on_duplicate_key_update({c: my.inserted[c] for c in target.update_columns})
    raise ConnectorError(f"upsert is not supported on {target.dialect} (SQLite, PostgreSQL and MySQL are)",
                         field="spec.sink.mode")


class WriteStrategy(abc.ABC):
    """How one buffer of rows reaches the table, inside the sink's transaction and SAVEPOINT.

    ``write`` must write all rows or raise (the sink rolls back the SAVEPOINT and
    isolates bad rows by calling ``write`` on smaller slices). Fast paths per
    dialect (COPY into a staging table...) register with :func:`register_write_strategy`.
    """

    def __init__(self, target: SinkTarget) -> None:
        self.target = target

    @abc.abstractmethod
    def write(self, conn: sa.Connection, rows: Sequence[Row]) -> None: ...

    def close(self, conn: sa.Connection) -> None:  # noqa: B027 - optional hook
        """Release what the strategy created (staging tables, prepared statements)."""


class ExecutemanyStrategy(WriteStrategy):
    """One prepared statement, built once, run with the driver's executemany."""

    def __init__(self, target: SinkTarget) -> None:
        super().__init__(target)
        self.statement = build_write_statement(target)

    def write(self, conn: sa.Connection, rows: Sequence[Row]) -> None:
        cols = self.target.columns
        conn.execute(self.statement, [dict(zip(cols, r, strict=True)) for r in rows])


_STRATEGIES: dict[str, Callable[[SinkTarget], WriteStrategy]] = {}


def register_write_strategy(dialect: str, factory: Callable[[SinkTarget], WriteStrategy]) -> None:
    """Use ``factory`` for sinks on ``dialect`` (``postgresql``, ``sqlite``, ``mysql``) instead of executemany."""
    _STRATEGIES[dialect] = factory


def write_strategy_for(target: SinkTarget) -> WriteStrategy:
    return _STRATEGIES.get(target.dialect, ExecutemanyStrategy)(target)


# MySQL/MariaDB errors caused by a row's values that PyMySQL reports as OperationalError/InternalError:
# NULL into NOT NULL, duplicate key, out of range, truncated, incorrect datetime/value, too long, no default,
# foreign key, CHECK constraint (MySQL 3819, MariaDB 4025)
MYSQL_DATA_ERROR_CODES = frozenset({1048, 1062, 1264, 1265, 1292, 1364, 1366, 1406, 1451, 1452, 3819, 4025})


def _is_data_error(err: BaseException) -> bool:
    """A failure caused by the rows (constraint, type, value), not by the connection or the schema."""
    if isinstance(err, sa.exc.IntegrityError | sa.exc.DataError):
        return True
    orig_args = getattr(getattr(err, "orig", None), "args", ())
    code = orig_args[0] if orig_args else None
    if isinstance(err, sa.exc.DBAPIError) and isinstance(code, int) and code in MYSQL_DATA_ERROR_CODES:
        return True
    if isinstance(err, sa.exc.StatementError) and not isinstance(err, sa.exc.DBAPIError):
        return isinstance(err.orig, TypeError | ValueError | ArithmeticError)
    if isinstance(err, sa.exc.ProgrammingError):  # psycopg: a value it cannot adapt
        return "cannot adapt" in str(err.orig) or "can't adapt" in str(err.orig)
    return False


class SqlSinkWriter(BufferedSinkWriter):
    """Insert or upsert into a table; ``transaction: batch | run | none`` (see runner/connectors/base.py).

    * ``batch``: everything written since the last checkpoint commits at the checkpoint;
    * ``run``: one transaction for the run, committed by :meth:`commit`;
    * ``none``: every flush commits on its own.
    """

    def __init__(self, spec: SqlSink, url: str, *, field: str = "spec.sink") -> None:
        super().__init__(field=field, batch_size=spec.batchSize, max_failed=spec.maxFailedRecords)
        self.spec = spec
        self.url = url
        self.target: SinkTarget | None = None
        self.strategy: WriteStrategy | None = None
        self.encoder: codec.RowEncoder | None = None  # the values' mappings into the target's column types
        self._engine: sa.Engine | None = None
        self._conn: sa.Connection | None = None
        self._tx: sa.RootTransaction | None = None
        self._committed_written = 0

    def open(self, columns: Sequence[str]) -> None:
        spec, f = self.spec, self.field
        self._engine = create_sql_engine(self.url, field=f"{f}.connection")
        self._conn = connect(self._engine, field=f"{f}.connection")
        try:
            with talking(self._conn, f"reading the table {spec.table}", field=f"{f}.table"), self._conn.begin():
                table, unique_keys = reflect_with_keys(self._conn, spec.table, spec.schema_, field=f"{f}.table")
            self.target = self._target(codec.sink_table(table), tuple(columns), unique_keys)
            self.encoder = codec.sink_encoder(self.target.table, self.target.columns, self.target.dialect)
            self.strategy = write_strategy_for(self.target)
        except BaseException:
            self.close()
            raise

    def _target(self, table: sa.Table, columns: tuple[str, ...], unique_keys: list[tuple[str, ...]]) -> SinkTarget:
        spec, f = self.spec, self.field
        if len(set(columns)) != len(columns):
            dup = sorted({c for c in columns if columns.count(c) > 1})
            raise ConnectorError(f"the flow writes column(s) {', '.join(dup)} twice", field=f"{f}.table")
        for c in columns:
            if c not in table.c:
                raise ConnectorError(
                    _not_found("column", c, f"table {table.fullname}", list(table.c.keys()))
                    + " (the column comes from the source or a transform)",
                    field=f"{f}.table",
                )
        written = ", ".join(columns)
        for i, c in enumerate(spec.uniqueBy):
            check_column(table, c, field=f"{f}.uniqueBy[{i}]")
            if c not in columns:
                raise ConnectorError(f"column {c!r} is not among the columns the flow writes ({written})",
                                     field=f"{f}.uniqueBy[{i}]")
        if spec.updateOnly is not None:
            for i, c in enumerate(spec.updateOnly):
                check_column(table, c, field=f"{f}.updateOnly[{i}]")
                if c not in columns:
                    raise ConnectorError(f"column {c!r} is not among the columns the flow writes ({written})",
                                         field=f"{f}.updateOnly[{i}]")
            update = tuple(spec.updateOnly)
        else:
            update = tuple(c for c in columns if c not in spec.uniqueBy)
        if spec.mode == "upsert" and not any(set(u) == set(spec.uniqueBy) for u in unique_keys):
            existing = "; ".join("(" + ", ".join(u) + ")" for u in unique_keys) or "none"
            raise ConnectorError(
                f"table {table.fullname} has no primary key or unique index on ({', '.join(spec.uniqueBy)}); "
                f"upsert needs one to detect existing rows (create a unique index on those columns). "
                f"Unique keys: {existing}",
                field=f"{f}.uniqueBy",
            )
        assert self._engine is not None
        return SinkTarget(table, columns, spec.mode, tuple(spec.uniqueBy), update, self._engine.dialect.name)

    # -- writing
    def _flush(self, rows: list[Row], first_row: int) -> None:
        conn = self._conn
        assert conn is not None, "open() first"
        if self._tx is None:
            self._tx = conn.begin()
        if self.encoder is None:
            self._write_isolating(conn, rows, first_row)
        else:
            self._write_encoded(conn, rows, first_row)
        if self.spec.transaction == "none":
            self._commit_tx()

    def _write_encoded(self, conn: sa.Connection, rows: list[Row], first_row: int) -> None:
        """Rows through the codec's mappings; a row with a value its column cannot hold fails, naming the column."""
        assert self.encoder is not None
        encoded, failed = self.encoder.encode(rows)
        start = 0
        for i in sorted(failed):
            if i > start:
                self._write_isolating(conn, encoded[start:i], first_row + start)
            self._row_failed(f"row {first_row + i} ({self._identify(rows[i])}): {failed[i]}")
            start = i + 1
        if start < len(encoded):
            self._write_isolating(conn, encoded[start:], first_row + start)

    def _write_isolating(self, conn: sa.Connection, rows: list[Row], first_row: int) -> None:
        """Write ``rows`` in a SAVEPOINT; on a data error split them until the bad rows are found."""
        assert self.strategy is not None
        try:
            with conn.begin_nested():
                self.strategy.write(conn, rows)
        except sa.exc.StatementError as err:
            if not _is_data_error(err):
                raise lost(conn, f"writing to {self.spec.table}", err, field=self.field) from None
            if len(rows) == 1:
                self._row_failed(f"row {first_row} ({self._identify(rows[0])}): {_db_message(err, 240)}")
                return
            mid = len(rows) // 2
            self._write_isolating(conn, rows[:mid], first_row)
            self._write_isolating(conn, rows[mid:], first_row + mid)
            return
        self.stats.written += len(rows)

    def _identify(self, row: Row) -> str:
        """``id=42``: the row's uniqueBy values (or its first column), for error messages."""
        assert self.target is not None
        cols = self.target.columns
        return ", ".join(f"{c}={row[cols.index(c)]!r}" for c in self.target.unique_by or cols[:1])

    def _commit_tx(self) -> None:
        if self._tx is not None:
            try:
                self._tx.commit()
            except sa.exc.DBAPIError as err:
                assert self._conn is not None
                raise lost(self._conn, f"commit to {self.spec.table}", err, field=self.field) from None
            finally:
                self._tx = None
        self._committed_written = self.stats.written

    def checkpoint(self) -> bool:
        self._flush_buffer()
        if self.spec.transaction == "run":
            return False
        self._commit_tx()
        return True

    def commit(self) -> None:
        self._flush_buffer()
        self._commit_tx()

    def rollback(self) -> None:
        self._drop_buffer()
        if self._tx is not None:
            tx, self._tx = self._tx, None
            # inactive only once its connection was lost mid-run (tests/faults cuts connections, but a cut
            # during a write surfaces first as that write's error, whose handling rolls back already)
            if tx.is_active:  # pragma: no branch
                tx.rollback()
        self.stats.written = self._committed_written

    def close(self) -> None:
        if self._conn is not None:
            if self._tx is not None:
                self.rollback()
            if self.strategy is not None:
                try:
                    self.strategy.close(self._conn)
                except sa.exc.DBAPIError as err:  # pragma: no cover - a connection lost just before close
                    log.warning("closing the write strategy failed: %s", _db_message(err))
            self._conn.close()
            self._conn = None
        if self._engine is not None:
            release(self._engine)
            self._engine = None
