"""The SQL source: a reflected table read in keyset pages (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

from ....errors import ConnectorError
from ....model import SqlSource, Where
from .. import codec
from ..base import Batch, Row
from ..common import ClosingSourceReader
from ..engines import release
from .cursor import decode_cursor_value, encode_cursor_value
from .engine import connect, create_sql_engine, lost, talking
from .reflect import _coerce, check_column, reflect_with_keys

__all__ = ["SQLITE_TEXT_TEMPORAL", "SqlSourceReader"]


SQLITE_TEXT_TEMPORAL: tuple[type[sa.types.TypeEngine[Any]], ...] = (sa.DateTime, sa.Date, sa.Time)  # text in SQLite


def _where_clause(table: sa.Table, i: int, cond: Where, prefix: str) -> sa.ColumnElement[bool]:
    col = check_column(table, cond.column, field=f"{prefix}.where[{i}].column")
    vfield = f"{prefix}.where[{i}].value"
    op = cond.op
    if op == "is null":
        return col.is_(None)
    if op == "is not null":
        return col.is_not(None)
    if op in ("in", "not in"):
        values = [_coerce(v, col, field=vfield) for v in cond.value]
        return col.in_(values) if op == "in" else col.not_in(values)
    value = _coerce(cond.value, col, field=vfield)
    if op == "like":
        return col.like(sa.bindparam(None, str(value), type_=sa.String()))
    comparisons: dict[str, Callable[[Any], sa.ColumnElement[bool]]] = {
        "=": col.__eq__, "!=": col.__ne__, "<": col.__lt__, "<=": col.__le__, ">": col.__gt__, ">=": col.__ge__,
    }
    return comparisons[op](value)


class SqlSourceReader(ClosingSourceReader):
    """Reads a table in keyset pages of ``batchSize`` rows (see the module docstring)."""

    def __init__(self, spec: SqlSource, url: str, *, field: str = "spec.source") -> None:
        self.spec = spec
        self.url = url
        self.field = field
        self.columns: tuple[str, ...] = ()
        self.keys: tuple[str, ...] = ()  # the keyset, in order
        self.incremental = spec.incremental is not None
        self._engine: sa.Engine | None = None
        self._conn: sa.Connection | None = None
        self._first: sa.Select[Any] | None = None
        self._after: sa.Select[Any] | None = None
        self._start: dict[str, Any] = {}
        self._start_inclusive = False
        self._key_positions: list[int] = []
        self.key_names: tuple[str, ...] = ()  # each key's name in the query's select list
        self._trim = False
        self.raw_keys: frozenset[str] = frozenset()  # keys read and bound as the text SQLite holds

    def key_expression(self, col: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """``col`` as the keyset reads and binds it: raw text for SQLite dates and times (see the module docstring)."""
        return sa.type_coerce(col, sa.String()) if col.name in self.raw_keys else col

    # -- setup
    def _open(self, cursor: Any) -> tuple[str, ...]:
        spec, f = self.spec, self.field
        self._engine = create_sql_engine(self.url, field=f"{f}.connection", readonly=True)
        self._conn = connect(self._engine, field=f"{f}.connection")
        if self._engine.dialect.name == "postgresql":
            self._conn = self._conn.execution_options(postgresql_readonly=True)
        with talking(self._conn, f"reading the table {spec.table}", field=f"{f}.table"), self._conn.begin():
            table, unique_keys = reflect_with_keys(self._conn, spec.table, spec.schema_, field=f"{f}.table")
            codec.read_faithfully(self._conn, table)  # JSON as its text, PostgreSQL interval as ISO 8601
        out = [check_column(table, c, field=f"{f}.columns[{i}]").name for i, c in enumerate(spec.columns or [])]
        if not out:
            out = list(table.c.keys())
        self.columns = tuple(out)
        self.keys = self._keyset(table, unique_keys)
        if self._engine.dialect.name == "sqlite":
            self.raw_keys = frozenset(k for k in self.keys if isinstance(table.c[k].type, SQLITE_TEXT_TEMPORAL))
        key_cols = [self.key_expression(table.c[k]) for k in self.keys]
        fetch: list[sa.ColumnElement[Any]] = [table.c[c] for c in out]
        self._key_positions, key_names = [], []
        for i, (k, expr) in enumerate(zip(self.keys, key_cols, strict=True)):
            if k in out and k not in self.raw_keys:
                self._key_positions.append(out.index(k))
                key_names.append(k)
            else:
                self._key_positions.append(len(fetch))
                key_names.append(f"adf_key_{i}")
                fetch.append(expr.label(key_names[-1]))
        self.key_names = tuple(key_names)
        self._trim = len(fetch) > len(out)

        conditions = [_where_clause(table, i, w, f) for i, w in enumerate(spec.where)]
        if spec.incremental is not None and table.c[spec.incremental.cursorColumn].nullable:
            # a row without a cursor value cannot be placed after a cursor: never read incrementally
            conditions.append(table.c[spec.incremental.cursorColumn].is_not(None))
        base = sa.select(*fetch).where(*conditions).order_by(*(table.c[k] for k in self.keys))
        limit = sa.bindparam("adf_limit", type_=sa.Integer())
        self._first = base.limit(limit)
        self._after = base.where(self._after_clause(key_cols, len(key_cols), inclusive=False)).limit(limit)
        self._start, self._start_inclusive = self._resume_point(table, cursor)
        if self._start:
            n = len(self._start)
            self._first = base.where(self._after_clause(key_cols, n, inclusive=self._start_inclusive)).limit(limit)
        return self.columns

    def _keyset(self, table: sa.Table, unique_keys: list[tuple[str, ...]]) -> tuple[str, ...]:
        spec, f = self.spec, self.field
        keys = [check_column(table, c, field=f"{f}.orderBy[{i}]").name for i, c in enumerate(spec.orderBy)]
        if spec.incremental is not None:
            cur = check_column(table, spec.incremental.cursorColumn, field=f"{f}.incremental.cursorColumn").name
            keys = [cur, *(k for k in keys if k != cur)]
        pk = {c.name for c in table.primary_key.columns}
        if not any(set(u) <= set(keys) for u in unique_keys):
            if not unique_keys:
                raise ConnectorError(
                    f"table {table.fullname} has no primary key or unique key; keyset pagination needs orderBy "
                    "columns that end in a unique key",
                    field=f"{f}.orderBy",
                )
            keys += [k for k in unique_keys[0] if k not in keys]
        cursor_col = spec.incremental.cursorColumn if spec.incremental else None
        for k in keys:
            if k != cursor_col and k not in pk and table.c[k].nullable:
                raise ConnectorError(
                    f"column {k!r} is nullable; keyset pagination needs NOT NULL order columns "
                    "(order by the primary key, or a unique key)",
                    field=f"{f}.orderBy",
                )
        return tuple(keys)

    def _resume_point(self, table: sa.Table, cursor: Any) -> tuple[dict[str, Any], bool]:
        """Where reading starts: strictly after a full committed cursor, or from a prefix / initialValue (inclusive)."""
        inc = self.spec.incremental
        if inc is None:
            return {}, False
        if isinstance(cursor, dict) and cursor:
            values: dict[str, Any] = {}
            for k in self.keys:
                if k not in cursor:
                    break
                values[k] = self._key_value(table.c[k], decode_cursor_value(cursor[k]), read=True,
                                            field=f"{self.field}.incremental")
            if values:  # a cursor of an older keyset (orderBy changed): re-read its last rows, skip none
                return values, len(values) < len(self.keys)
        elif cursor is not None:  # a bare value of the cursor column: re-read rows equal to it, skip none
            col = table.c[self.keys[0]]
            value = self._key_value(col, decode_cursor_value(cursor), field=f"{self.field}.incremental")
            return {col.name: value}, True
        if inc.initialValue is not None:
            col = table.c[inc.cursorColumn]
            value = self._key_value(col, inc.initialValue, field=f"{self.field}.incremental.initialValue")
            return {col.name: value}, True
        return {}, False

    def _key_value(self, col: sa.Column[Any], value: Any, *, field: str, read: bool = False) -> Any:
        """A cursor or initialValue as the keyset binds it (``read``: a key value as this reader read it)."""
        coerced = _coerce(value, col, field=field)  # also checks that it is a value of the column's type
        if col.name not in self.raw_keys:
            return coerced
        if read and isinstance(value, str):
            return value  # the text the row held: resume exactly after it
        if read:  # a datetime committed before keys were read as text: the text SQLAlchemy writes
            assert self._engine is not None
            dialect = self._engine.dialect
            process = col.type.dialect_impl(dialect).bind_processor(dialect)
            return process(coerced) if process is not None else str(coerced)
        # written by a user: ISO text with a space, no zero microseconds, which sorts at or before every
        # form SQLite tables hold for the same instant ('2024-01-01 00:00:00', '... .000000')
        return str(coerced)

    @staticmethod
    def _after_clause(key_cols: list[sa.ColumnElement[Any]], n: int, *, inclusive: bool) -> sa.ColumnElement[bool]:
        params = [sa.bindparam(f"adf_k{i}", type_=c.type) for i, c in enumerate(key_cols[:n])]
        if n == 1:
            return key_cols[0] >= params[0] if inclusive else key_cols[0] > params[0]
        left, right = sa.tuple_(*key_cols[:n]), sa.tuple_(*params)
        return left >= right if inclusive else left > right

    # -- reading
    def batches(self) -> Iterator[Batch]:
        assert self._conn is not None and self._first is not None and self._after is not None, "open() first"
        remaining = self.spec.limit
        stmt = self._first
        params: dict[str, Any] = {f"adf_k{i}": v for i, v in enumerate(self._start.values())}
        batch_size = self.spec.batchSize
        while remaining is None or remaining > 0:
            page = batch_size if remaining is None else min(batch_size, remaining)
            params["adf_limit"] = page
            rows = self._fetch(stmt, params)
            if not rows:
                return
            last = rows[-1]
            key_values = [last[p] for p in self._key_positions]
            params = {f"adf_k{i}": v for i, v in enumerate(key_values)}
            stmt = self._after
            if remaining is not None:
                remaining -= len(rows)
            out = [r[: len(self.columns)] for r in rows] if self._trim else rows
            cursor = (
                {k: encode_cursor_value(v) for k, v in zip(self.keys, key_values, strict=True)}
                if self.incremental else None
            )
            yield Batch(self.columns, out, cursor)
            if len(rows) < page:
                return

    def _fetch(self, stmt: sa.Select[Any], params: dict[str, Any]) -> list[Row]:
        """One page, in its own short read-only transaction."""
        assert self._conn is not None
        try:
            with self._conn.begin():
                return [tuple(r) for r in self._conn.execute(stmt, params)]
        except sa.exc.DBAPIError as err:
            raise lost(self._conn, f"reading {self.spec.table}", err, field=self.field) from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._engine is not None:
            release(self._engine)
            self._engine = None
