"""PostgreSQL -> PostgreSQL between two databases: binary COPY out of the source, binary COPY into staging.

A flow whose transform SQL computes entirely (:meth:`Pipeline.to_sql`) runs, when source and sink
are two PostgreSQL databases, as::

    source (REPEATABLE READ, read only; one snapshot for all three):
        SELECT <keyset> FROM <source query> ORDER BY <keyset> DESC LIMIT 1   -- incremental: the new cursor
        SELECT count(*) FROM <source query>                                  -- only with filter steps
        COPY (SELECT CAST(<expr> AS <staging type>) ... FROM <source query> WHERE <filters>)
            TO STDOUT (FORMAT binary)
    sink (one transaction):
        CREATE TEMPORARY TABLE adf_stream_xxx (<staging types>) ON COMMIT DROP
        COPY adf_stream_xxx (cols) FROM STDIN (FORMAT binary)   -- the source's bytes, as they arrive
        INSERT INTO sink (cols) SELECT cols FROM adf_stream_xxx [ON CONFLICT ...]   -- the sink's merge

The bytes are forwarded in chunks of about :data:`CHUNK` bytes; no row is decoded into Python
objects, and memory stays bounded by the chunk whatever the number of rows.

Binary COPY needs the source column's type to be the staging column's exactly. The staging
types are the ones the row path's COPY strategy (:mod:`.pg`) stages into (integers as ``int8``,
``varchar`` as ``text``, ``numeric`` without modifier...), so that the merge's assignment casts
(range checks, rounding to the declared scale, length checks) are the row path's. Each source
expression is cast to its staging type in the SELECT only where that cast is lossless
(:data:`_LOSSLESS`: ``int4 -> int8``, ``int -> numeric``, ``varchar -> text``, a NULL literal);
any other pair (``float8 -> int8``, which the row path refuses, ``float4 -> float8``, which it reads
as text, ``bpchar``, ``json``, an enum...) is not streamed: :func:`describe` says why, and the flow
runs with the source query feeding the row path instead.
"""

from __future__ import annotations

import select
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..connectors.sql import SinkTarget, build_write_statement
from .pg import _BINARY_SAFE

__all__ = ["CHUNK", "StreamColumns", "describe", "query_text", "stream_copy"]

CHUNK = 256 * 1024

# staging type -> the source types whose values CAST to it exactly as the row path writes them
_LOSSLESS: dict[str, frozenset[str]] = {
    "int8": frozenset({"smallint", "integer", "bigint"}),
    "numeric": frozenset({"smallint", "integer", "bigint", "numeric"}),
    "float8": frozenset({"double precision"}),
    "text": frozenset({"text", "character varying"}),
    "timestamp": frozenset({"timestamp without time zone"}),
    "timestamptz": frozenset({"timestamp with time zone"}),
    "date": frozenset({"date"}),
    "bool": frozenset({"boolean"}),
}
# what the source says for an untyped NULL literal (``None``)
_NULL_TYPES = frozenset({"text", "unknown"})


@dataclass(frozen=True)
class StreamColumns:
    """The staging types of the sink's columns, in order, and what to cast each source expression to."""

    staging: tuple[str, ...]
    casts: tuple[str | None, ...]  # what each source expression is cast to in the SELECT


def sink_types(conn: sa.Connection, target: SinkTarget) -> dict[str, str]:
    """The sink columns' base types (``regtype`` text) by name."""
    prep = conn.dialect.identifier_preparer
    rows = conn.exec_driver_sql(
        "SELECT a.attname, a.atttypid::regtype::text FROM pg_attribute a "
        "WHERE a.attrelid = %(t)s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        {"t": prep.format_table(target.table)},
    )
    return {name: base for name, base in rows}


def source_types(conn: sa.Connection, select: sa.Select[Any], params: dict[str, Any]) -> list[str]:
    """The types PostgreSQL gives the SELECT's columns, for the very text the COPY sends (:func:`query_text`)."""
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:  # type: ignore[union-attr]
        cur.execute(f"SELECT * FROM ({query_text(select, conn.dialect, params, raw)}) AS adf_probe LIMIT 0")
        oids = [d.type_code for d in cur.description]
        cur.execute("SELECT t.oid, t.oid::regtype::text FROM pg_type t WHERE t.oid = ANY(%s)", (list(set(oids)),))
        names: dict[int, str] = {oid: name for oid, name in cur.fetchall()}
    return [names.get(o, f"oid {o}") for o in oids]


def describe(names: Sequence[str], source: Sequence[str], sink: dict[str, str],
             null_columns: frozenset[str]) -> StreamColumns | str:
    """The staging columns for streaming ``names`` (source types ``source``, sink base types ``sink``), or why not."""
    staging: list[str] = []
    casts: list[str | None] = []
    for name, src in zip(names, source, strict=True):
        base = sink[name]
        stage = _BINARY_SAFE.get(base)
        if stage is None:
            return (f"sink column '{name}' is {base}: binary COPY is streamed into integer, numeric, float, "
                    "text, timestamp, date and boolean columns only")
        if src in _LOSSLESS[stage] or (name in null_columns and src in _NULL_TYPES):
            casts.append(stage)  # a no-op where the type is the staging one: binary COPY then needs no luck
        else:
            return (f"column '{name}' is {src} in the source query and {base} in the sink: binary COPY needs one "
                    "type, and casting it in SQL would not write what the row path writes")
        staging.append(stage)
    return StreamColumns(tuple(staging), tuple(casts))


def cast_outputs(select_list: Sequence[sa.ColumnElement[Any]], casts: Sequence[str | None]
                 ) -> list[sa.ColumnElement[Any]]:
    """The SELECT's labelled columns, cast where :func:`describe` said (the label kept)."""
    out: list[sa.ColumnElement[Any]] = []
    for col, cast in zip(select_list, casts, strict=True):
        if cast is None:
            out.append(col)
            continue
        assert isinstance(col, sa.sql.elements.Label)
        out.append(sa.cast(col.element, _type_of(cast)).label(col.name))
    return out


def _type_of(staging: str) -> sa.types.TypeEngine[Any]:
    from sqlalchemy.dialects import postgresql

    types: dict[str, sa.types.TypeEngine[Any]] = {
        "int8": sa.BigInteger(), "numeric": sa.Numeric(), "float8": postgresql.DOUBLE_PRECISION(), "text": sa.Text(),
        "timestamp": postgresql.TIMESTAMP(), "timestamptz": postgresql.TIMESTAMP(timezone=True),
        "date": sa.Date(), "bool": sa.Boolean(),
    }
    return types[staging]


def query_text(stmt: sa.Select[Any], dialect: sa.engine.Dialect, params: dict[str, Any], raw: Any) -> str:
    """``stmt`` with its parameters merged in as SQL literals (COPY takes no bound parameters).

    psycopg binds a float as ``float8``, but writes it as a bare literal, which PostgreSQL reads as
    ``numeric`` (``0.1 + 0.2`` would be exact): float placeholders get ``::float8``, so the query
    computes what the bound statement computes."""
    import psycopg

    compiled = stmt.compile(dialect=dialect)
    values = dict(compiled.construct_params(params))
    text = compiled.string
    for name, bind in compiled.binds.items():
        value = values.get(name)
        if value is None:
            continue
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            values[name] = value = process(value)
        if isinstance(value, float):
            text = text.replace(f"%({name})s", f"%({name})s::float8")
    return psycopg.ClientCursor(raw).mogrify(text, values)


def stage_name() -> str:
    return f"adf_stream_{uuid.uuid4().hex[:10]}"


def merge_statement(target: SinkTarget, stage: str) -> sa.Insert:
    """The sink's INSERT/upsert with its rows from the staging table."""
    cols = list(target.columns)
    staged = sa.table(stage, *(sa.column(c) for c in cols))
    return build_write_statement(target, source=(cols, sa.select(*(staged.c[c] for c in cols))))


def create_stage(stage: str, target: SinkTarget, types: StreamColumns, quote: Any) -> str:
    defs = ", ".join(f"{quote(c)} {t}" for c, t in zip(target.columns, types.staging, strict=True))
    return f"CREATE TEMPORARY TABLE {quote(stage)} ({defs}) ON COMMIT DROP"


def stream_copy(src_raw: Any, query: str, dst_raw: Any, copy_in: str) -> int:
    """Forward the bytes of ``query`` (``COPY ... TO STDOUT``, parameters merged) into ``copy_in``, in chunks
    of about :data:`CHUNK`; the rows staged.

    ``src_raw``/``dst_raw`` are psycopg 3 connections. The source side is read straight from libpq
    (``PGconn.get_copy_data``: one C call per row, where :meth:`psycopg.Copy.read` runs a generator
    and a wait per row, ~1.5 us of 2); the sink side is psycopg's COPY writer.
    """
    with dst_raw.cursor() as dc:
        _forward(src_raw, query, dc, copy_in)
        return int(dc.rowcount)


def _forward(src_raw: Any, query: str, dc: Any, copy_in: str) -> None:
    import psycopg

    pg = src_raw.pgconn
    with dc.copy(copy_in) as into:
        write = into.write
        pg.send_query(query.encode(src_raw.info.encoding))  # raises if it cannot
        while pg.flush() == 1:  # the connection is non-blocking: send all of the query
            pass
        started = pg.get_result()
        if started is None or started.status != psycopg.pq.ExecStatus.COPY_OUT:
            _drain(pg, copying=False)
            raise _error(started, pg)
        try:
            get = pg.get_copy_data
            buf = bytearray()
            while True:
                nbytes, data = get(1)
                if nbytes > 0:
                    buf += data
                    if len(buf) >= CHUNK:
                        write(buf)
                        buf = bytearray()
                    continue
                if nbytes == 0:  # nothing buffered: wait for the source
                    _wait_readable(pg)
                    continue
                if nbytes == -1:
                    break
                raise psycopg.OperationalError(pg.get_error_message())
            if buf:
                write(buf)
        except BaseException:
            src_raw.cancel_safe()
            _drain(pg)
            raise
        done = pg.get_result()
        _drain(pg, copying=False)
        if done is None or done.status != psycopg.pq.ExecStatus.COMMAND_OK:
            raise _error(done, pg)


def _drain(pg: Any, *, copying: bool = True) -> None:
    """Read what the source still sends of a COPY and its results, so the connection is usable again."""
    import psycopg

    while copying:
        try:
            nbytes, _ = pg.get_copy_data(1)
        except psycopg.OperationalError:  # the COPY is over (or failed): its result follows
            break
        if nbytes == 0:
            _wait_readable(pg)
        elif nbytes < 0:
            break
    while pg.get_result() is not None:
        pass


def _wait_readable(pg: Any) -> None:
    select.select([pg.socket], [], [])
    pg.consume_input()


def _error(result: Any, pg: Any) -> Exception:
    import psycopg

    if result is not None and result.status == psycopg.pq.ExecStatus.FATAL_ERROR:
        return psycopg.errors.error_from_result(result, encoding="utf-8")
    return psycopg.OperationalError(pg.get_error_message())
