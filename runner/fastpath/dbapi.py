"""Statements built and executed by SQLAlchemy, rows moved at the driver's speed.

Reads: SQLAlchemy executes the SELECT (bound parameters, ``IN`` expansion,
events, error wrapping) and the rows are taken straight from the DBAPI cursor
as tuples; only the columns whose type has a result processor are converted,
column-wise. Writes: the sink's one statement is compiled once and each batch
is handed to the driver's ``executemany`` as plain tuples (``exec_driver_sql``,
so events and error classes stay SQLAlchemy's), with bind processors applied
only to the columns that have one. Values are the ones the generic SQLAlchemy
path produces.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from ..connectors.sql import ExecutemanyStrategy, SinkTarget

Processor = Callable[[Any], Any]

__all__ = ["PreparedExecutemanyStrategy", "RawRows", "RawWrite", "as_sqlalchemy_error"]


def as_sqlalchemy_error(err: Exception, statement: str, dialect: Dialect) -> Exception:
    """The exception SQLAlchemy would have raised for ``err`` (so callers classify data errors as usual)."""
    dbapi = dialect.loaded_dbapi
    if isinstance(err, dbapi.Error):
        return sa.exc.DBAPIError.instance(statement, None, err, dbapi.Error, hide_parameters=True, dialect=dialect)
    if isinstance(err, TypeError | ValueError | ArithmeticError):
        return sa.exc.StatementError(str(err), statement, None, err, hide_parameters=True)
    return err


_DATETIME_SAMPLES = (dt.datetime(2024, 3, 31, 1, 2, 3), dt.datetime(987, 12, 1, 23, 59, 59, 999))


def _bind_processor(type_: sa.types.TypeEngine[Any], dialect: Dialect) -> Processor | None:
    """The type's bind processor; a DateTime one that renders ``isoformat(" ")`` (SQLite's default) as that.

    SQLite's DATETIME processor formats ``%04d-%02d-%02d %02d:%02d:%02d.%06d`` from a dict, about
    4 us a value; ``datetime.isoformat`` gives the same text for naive datetimes in a quarter of that.
    The substitution is made only if the processor renders sample values exactly so.
    """
    impl = type_.dialect_impl(dialect)
    proc = impl.bind_processor(dialect)
    if proc is None or not isinstance(impl, sa.DateTime):
        return proc
    try:
        if any(proc(v) != v.isoformat(" ", "microseconds") for v in _DATETIME_SAMPLES):
            return proc
    except Exception:
        return proc
    slow = proc
    datetime_type = dt.datetime

    def datetime_text(value: Any) -> Any:
        if type(value) is datetime_type and value.tzinfo is None:
            return value.isoformat(" ", "microseconds")
        return slow(value)  # dates, aware datetimes, subclasses: as SQLAlchemy renders them

    return datetime_text


class RawWrite:
    """One INSERT/upsert compiled for ``columns``, each batch run with the driver's ``executemany``.

    Positional paramstyles (pysqlite's ``?``) get tuples; named ones (PyMySQL's
    ``%(name)s``) get dicts.
    """

    def __init__(self, statement: sa.Insert, columns: Sequence[str], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(columns))
        self.sql = compiled.string
        binds: dict[str, Any] = compiled.binds
        positiontup = compiled.positiontup
        self.positional = positiontup is not None
        order = list(binds) if positiontup is None else list(positiontup)
        missing = [n for n in order if n not in columns]
        if missing:
            raise ValueError(f"statement needs parameters {missing} not among the written columns")
        self.names = order
        self.positions = [list(columns).index(n) for n in order]
        procs = [_bind_processor(binds[n].type, dialect) for n in order]
        self.processors = [(i, p) for i, p in enumerate(procs) if p is not None]
        self.identity = self.positional and self.positions == list(range(len(columns))) and not self.processors

    def params(self, rows: Sequence[tuple[Any, ...]]) -> Sequence[Any]:
        if self.identity:
            return rows if isinstance(rows, list) else list(rows)
        columns: list[Any] = list(zip(*rows, strict=True))
        values: list[Any] = [columns[i] for i in self.positions]
        for i, proc in self.processors:
            values[i] = [None if v is None else proc(v) for v in values[i]]
        if self.positional:
            return list(zip(*values, strict=True))
        return [dict(zip(self.names, r, strict=True)) for r in zip(*values, strict=True)]

    def executemany(self, conn: sa.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        try:
            params = self.params(rows)
        except Exception as err:  # a bind processor refused a value: a bad row, as on the generic path
            raise as_sqlalchemy_error(err, self.sql, conn.dialect) from err
        conn.exec_driver_sql(self.sql, params)


class RawRows:
    """Rows of SELECTs run by SQLAlchemy, fetched as plain tuples from the DBAPI cursor."""

    def __init__(self, statement: sa.Select[Any]) -> None:
        self.types = [c.type for c in statement.selected_columns]
        self.processors: list[tuple[int, Processor]] | None = None  # from the first cursor.description

    def fetch(self, conn: sa.Connection, statement: sa.Select[Any], params: dict[str, Any]) -> list[tuple[Any, ...]]:
        result = conn.execute(statement, params)
        try:
            cursor = result.cursor
            rows = cursor.fetchall()
            if self.processors is None:
                dialect = conn.dialect
                self.processors = [
                    (i, proc)
                    for i, (t, desc) in enumerate(zip(self.types, cursor.description, strict=True))
                    if (proc := t.dialect_impl(dialect).result_processor(dialect, desc[1])) is not None
                ]
        finally:
            result.close()
        if not rows:
            return []
        if not self.processors:
            # the DBAPI's fetchall() gives a list (typed as a Sequence)
            return cast("list[tuple[Any, ...]]", rows) if type(rows[0]) is tuple else [tuple(r) for r in rows]
        # column-wise: map() each processor over its column, zip back into tuples (no per-row Python frame)
        columns: list[Any] = list(zip(*rows, strict=True))
        for i, process in self.processors:
            columns[i] = map(process, columns[i])
        return list(zip(*columns, strict=True))


class PreparedExecutemanyStrategy(ExecutemanyStrategy):
    """SQLite and MySQL sinks: the sink's one statement, compiled once, ``executemany`` of plain tuples.

    pysqlite re-uses the prepared statement for every row; PyMySQL rewrites an
    ``INSERT ... VALUES`` executemany into multi-row ``VALUES`` statements. The
    generic strategy builds a dict per row and lets SQLAlchemy process each.
    """

    def __init__(self, target: SinkTarget) -> None:
        super().__init__(target)
        self._raw: RawWrite | None = None

    def write(self, conn: sa.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        if self._raw is None:
            self._raw = RawWrite(self.statement, self.target.columns, conn.dialect)
        self._raw.executemany(conn, rows)
