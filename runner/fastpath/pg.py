"""PostgreSQL sink fast path: COPY into a temporary staging table, then one merge statement per batch.

For every flush of the sink (``batchSize`` rows, inside the sink's transaction
and SAVEPOINT, so ``transaction: batch | run | none`` behave as with any
strategy):

1. ``COPY adf_stage_xxx (cols) FROM STDIN`` streams the rows (psycopg 3, binary
   when every column has a type whose binary dumper checks its Python value,
   text otherwise; Decimal stays exact either way);
2. ``INSERT INTO target (cols) SELECT cols FROM adf_stage_xxx [ON CONFLICT (uniqueBy)
   DO UPDATE SET c = EXCLUDED.c ... | DO NOTHING]``;
3. ``TRUNCATE adf_stage_xxx`` (temporary tables are never vacuumed: no dead rows pile up).

The staging table has no constraints: it takes the target's column types, with
every integer widened to ``bigint`` (the binary int4 dumper wraps around
silently; the merge's assignment cast checks the range instead). Binary COPY
refuses Python values of another type (a float for a numeric column...): that
batch is re-sent as text inside a SAVEPOINT and the rest of the run stays text.

Failures caused by the data (a constraint, a value PostgreSQL cannot parse)
are raised as SQLAlchemy's DataError/IntegrityError; the sink then isolates the
bad rows by halving the batch, and slices of at most :data:`SMALL_BATCH` rows go
through the generic executemany statement, so row-failure accounting is the
generic path's.

Upserts with several rows for one key in a batch behave as the sequential
executemany does (first row inserted, later rows update ``updateOnly``): the
batch is folded in Python before COPY, since ``ON CONFLICT DO UPDATE`` cannot
touch one row twice in one statement.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from ..connectors.sql import ExecutemanyStrategy, SinkTarget
from .dbapi import as_sqlalchemy_error

__all__ = ["SMALL_BATCH", "PgCopyStrategy", "fold_duplicates"]

SMALL_BATCH = 16

# Target type (as ``regtype``) -> staging type, for types whose binary dumper
# rejects a Python value of another type instead of mangling it.
_BINARY_SAFE = {
    "bigint": "int8",
    "integer": "int8",
    "smallint": "int8",
    "numeric": "numeric",
    "double precision": "float8",
    "real": "float8",
    "text": "text",
    "character varying": "text",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
    "date": "date",
    "boolean": "bool",
}


def fold_duplicates(
    rows: Sequence[tuple[Any, ...]], key_positions: Sequence[int], update_positions: Sequence[int]
) -> Sequence[tuple[Any, ...]]:
    """Rows with one row per key, as the sequential upsert of ``rows`` would leave them.

    The first row of a key is the inserted one; each later row of the key
    overwrites the ``update_positions`` (none: ``DO NOTHING``, the first row wins).
    Rows whose key has a NULL never conflict and are kept as they are.
    """
    keyf: Callable[[tuple[Any, ...]], Any]
    if len(key_positions) == 1:
        k = key_positions[0]
        if len({r[k] for r in rows}) == len(rows):
            return rows
        keyf = lambda r: r[k]  # noqa: E731
    else:
        keys = [tuple(r[i] for i in key_positions) for r in rows]
        if len(set(keys)) == len(rows):
            return rows
        keyf = lambda r: tuple(r[i] for i in key_positions)  # noqa: E731
    out: list[tuple[Any, ...]] = []
    where: dict[Any, int] = {}
    for row in rows:
        key = keyf(row)
        if key is None or (isinstance(key, tuple) and None in key):
            out.append(row)
            continue
        at = where.get(key)
        if at is None:
            where[key] = len(out)
            out.append(row)
        elif update_positions:
            merged = list(out[at])
            for i in update_positions:
                merged[i] = row[i]
            out[at] = tuple(merged)
    return out


class PgCopyStrategy(ExecutemanyStrategy):
    """COPY into a staging table + one ``INSERT ... SELECT ... ON CONFLICT`` per flush (psycopg 3 only)."""

    def __init__(self, target: SinkTarget) -> None:
        super().__init__(target)  # the generic executemany: small slices and other drivers
        self.stage = f"adf_stage_{uuid.uuid4().hex[:10]}"
        self.binary: bool | None = None  # decided from the target's column types at the first write
        self._types: list[str] = []
        self._create = self._copy = self._merge = ""
        cols = target.columns
        self._key_positions = [cols.index(c) for c in target.unique_by]
        self._update_positions = [cols.index(c) for c in target.update_columns]

    # -- setup (first write)
    def _prepare(self, conn: sa.Connection, cur: Any) -> None:
        t = self.target
        prep = conn.dialect.identifier_preparer
        table = prep.format_table(t.table)
        cur.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid::regtype::text "
            "FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            (table,),
        )
        types = {name: (full, base) for name, full, base in cur.fetchall()}
        self.binary = all(types[c][1] in _BINARY_SAFE for c in t.columns)
        self._types = [_BINARY_SAFE.get(types[c][1], types[c][0]) for c in t.columns]
        stage = prep.quote(self.stage)
        cols = ", ".join(prep.quote(c) for c in t.columns)
        defs = ", ".join(f"{prep.quote(c)} {typ}" for c, typ in zip(t.columns, self._types, strict=True))
        self._create = f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ({defs})"
        self._copy = f"COPY {stage} ({cols}) FROM STDIN"
        merge = f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage}"
        if t.mode == "upsert":
            keys = ", ".join(prep.quote(c) for c in t.unique_by)
            if t.update_columns:
                sets = ", ".join(f"{prep.quote(c)} = EXCLUDED.{prep.quote(c)}" for c in t.update_columns)
                merge += f" ON CONFLICT ({keys}) DO UPDATE SET {sets}"
            else:
                merge += f" ON CONFLICT ({keys}) DO NOTHING"
        self._merge = f"{merge}; TRUNCATE {stage}"

    # -- writing
    def write(self, conn: sa.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        if conn.dialect.driver != "psycopg" or len(rows) <= SMALL_BATCH:
            super().write(conn, rows)
            return
        if self.target.mode == "upsert":
            rows = fold_duplicates(rows, self._key_positions, self._update_positions)
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            if self.binary is None:
                with _as_sqlalchemy_errors(conn, "staging table"):
                    self._prepare(conn, cur)
            with _as_sqlalchemy_errors(conn, self._create):
                cur.execute(self._create)
            if self.binary:
                self._copy_binary(conn, cur, rows)
            else:
                with _as_sqlalchemy_errors(conn, self._copy):
                    self._copy_rows(cur, rows, binary=False)
            with _as_sqlalchemy_errors(conn, self._merge):
                cur.execute(self._merge)

    def _copy_binary(self, conn: sa.Connection, cur: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        with _as_sqlalchemy_errors(conn, self._copy):
            cur.execute("SAVEPOINT adf_copy")
            try:
                self._copy_rows(cur, rows, binary=True)
            except (TypeError, ValueError, OverflowError):
                # a Python value the binary dumper refuses (a float for a numeric...): text from now on
                self.binary = False
                cur.execute("ROLLBACK TO SAVEPOINT adf_copy")
                self._copy_rows(cur, rows, binary=False)
            cur.execute("RELEASE SAVEPOINT adf_copy")

    def _copy_rows(self, cur: Any, rows: Sequence[tuple[Any, ...]], *, binary: bool) -> None:
        with cur.copy(self._copy + (" (FORMAT BINARY)" if binary else "")) as copy:
            if binary:
                copy.set_types(self._types)
            write_row = copy.write_row
            for row in rows:
                write_row(row)


@contextlib.contextmanager
def _as_sqlalchemy_errors(conn: sa.Connection, statement: str) -> Iterator[None]:
    try:
        yield
    except Exception as err:
        raise as_sqlalchemy_error(err, statement, conn.dialect) from err
