"""Statements compiled once by SQLAlchemy and run on the raw DBAPI cursor.

SQLAlchemy builds and types the statement (identifiers, dialect syntax, the
bind and result processors of every column type) exactly once; each batch then
goes straight to the driver: ``cursor.executemany`` of positional tuples for
writes, ``cursor.execute`` + ``fetchall`` for reads. Only the columns whose type
has a processor (SQLite DateTime and Numeric, for instance) are converted, so
values are the ones the generic SQLAlchemy path would produce, at the driver's
speed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from ..connectors.sql import SinkTarget, WriteStrategy, build_write_statement

Processor = Callable[[Any], Any]

__all__ = ["PreparedExecutemanyStrategy", "RawQuery", "RawWrite", "as_sqlalchemy_error"]


def as_sqlalchemy_error(err: Exception, statement: str, dialect: Dialect) -> Exception:
    """The exception SQLAlchemy would have raised for ``err`` (so callers classify data errors as usual)."""
    dbapi = dialect.loaded_dbapi
    if isinstance(err, dbapi.Error):
        return sa.exc.DBAPIError.instance(statement, None, err, dbapi.Error, hide_parameters=True, dialect=dialect)
    if isinstance(err, TypeError | ValueError | ArithmeticError):
        return sa.exc.StatementError(str(err), statement, None, err, hide_parameters=True)
    return err


def _bind_processors(compiled: Any, names: Sequence[str], dialect: Dialect) -> list[Processor | None]:
    binds = compiled.binds  # type: ignore[attr-defined]
    return [binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]


class RawWrite:
    """One INSERT/upsert compiled for ``columns``, run with the driver's ``executemany``.

    Positional paramstyles (pysqlite's ``?``) get tuples; named ones (PyMySQL's
    ``%(name)s``) get dicts. Bind processors run only for the columns that have one.
    """

    def __init__(self, statement: sa.Insert, columns: Sequence[str], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(columns))
        self.sql = compiled.string
        self.positional = compiled.positiontup is not None  # type: ignore[attr-defined]
        order = list(compiled.positiontup if self.positional else compiled.binds)  # type: ignore[attr-defined]
        missing = [n for n in order if n not in columns]
        if missing:
            raise ValueError(f"statement needs parameters {missing} not among the written columns")
        self.names = order
        self.positions = [list(columns).index(n) for n in order]
        procs = _bind_processors(compiled, order, dialect)
        self.processors = [(i, p) for i, p in enumerate(procs) if p is not None]
        self.identity = self.positional and self.positions == list(range(len(columns))) and not self.processors

    def params(self, rows: Sequence[tuple[Any, ...]]) -> Sequence[Any]:
        if self.identity:
            return rows
        pos, procs, names = self.positions, self.processors, self.names
        out: list[Any] = []
        append = out.append
        for row in rows:
            values = [row[i] for i in pos]
            for i, proc in procs:
                v = values[i]
                if v is not None:
                    values[i] = proc(v)
            append(values if self.positional else dict(zip(names, values, strict=True)))
        return out

    def executemany(self, dbapi_cursor: Any, rows: Sequence[tuple[Any, ...]], dialect: Dialect) -> None:
        try:
            dbapi_cursor.executemany(self.sql, self.params(rows))
        except Exception as err:
            raise as_sqlalchemy_error(err, self.sql, dialect) from err


class RawQuery:
    """A SELECT compiled once; ``fetch(conn, params)`` returns plain tuples typed as SQLAlchemy would type them."""

    def __init__(self, statement: sa.Select[Any], dialect: Dialect) -> None:
        self.dialect = dialect
        compiled = statement.compile(dialect=dialect)
        self.compiled = compiled
        self.sql = compiled.string
        self.positional = compiled.positiontup is not None  # type: ignore[attr-defined]
        names = list(compiled.positiontup or compiled.binds)  # type: ignore[attr-defined]
        self.names = names
        self.bind_procs = {n: p for n, p in zip(names, _bind_processors(compiled, names, dialect), strict=True) if p}
        self.columns = list(statement.selected_columns)
        self.result_procs: list[tuple[int, Processor]] | None = None  # from the first cursor.description

    def _result_processors(self, description: Sequence[Any]) -> list[tuple[int, Processor]]:
        procs = []
        for i, (col, desc) in enumerate(zip(self.columns, description, strict=True)):
            proc = col.type.dialect_impl(self.dialect).result_processor(self.dialect, desc[1])
            if proc is not None:
                procs.append((i, proc))
        return procs

    def _params(self, params: dict[str, Any]) -> Any:
        values = self.compiled.construct_params(params)
        for name, proc in self.bind_procs.items():
            if values.get(name) is not None:
                values[name] = proc(values[name])
        if self.positional:
            return tuple(values[n] for n in self.names)
        return values

    def fetch(self, conn: sa.Connection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run on ``conn``'s DBAPI connection (inside its current transaction)."""
        cursor = conn.connection.cursor()
        try:
            try:
                cursor.execute(self.sql, self._params(params))
                rows = cursor.fetchall()
                if self.result_procs is None:
                    self.result_procs = self._result_processors(cursor.description)
            except Exception as err:
                raise as_sqlalchemy_error(err, self.sql, conn.dialect) from err
        finally:
            cursor.close()
        if not self.result_procs or not rows:
            return rows if not rows or type(rows[0]) is tuple else [tuple(r) for r in rows]
        # column-wise: map() each processor over its column, zip back into tuples (C speed, no per-row Python)
        columns: list[Any] = list(zip(*rows, strict=True))
        for i, proc in self.result_procs:
            columns[i] = map(proc, columns[i])
        return list(zip(*columns, strict=True))


class PreparedExecutemanyStrategy(WriteStrategy):
    """SQLite and MySQL sinks: the sink's one statement, prepared once, ``executemany`` on the raw cursor.

    pysqlite re-uses the prepared statement for every row; PyMySQL rewrites an
    ``INSERT ... VALUES`` executemany into multi-row ``VALUES`` statements.
    """

    def __init__(self, target: SinkTarget) -> None:
        super().__init__(target)
        self.statement = build_write_statement(target)
        self._raw: RawWrite | None = None

    def write(self, conn: sa.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        if self._raw is None:
            self._raw = RawWrite(self.statement, self.target.columns, conn.dialect)
        cursor = conn.connection.cursor()
        try:
            self._raw.executemany(cursor, rows, conn.dialect)
        finally:
            cursor.close()
