"""How a flow runs: pushed down to one SQL statement, or row by row through the runner.

:func:`plan_flow` decides. A flow is **pushed down** when

* source and sink are SQL tables in the same database (same server, port,
  database and user; or two SQLite files, the source ATTACHed to the sink's
  connection), on PostgreSQL or SQLite;
* every transform step can be computed by SQL with exactly the row path's
  results (:meth:`Pipeline.to_sql` refuses otherwise and names the step);
* ``ADF_PUSHDOWN`` is not ``off``.

The pushed-down run is, in one transaction (PostgreSQL: REPEATABLE READ, so
both statements see one snapshot)::

    SELECT <keyset> FROM <source query> ORDER BY <keyset> DESC LIMIT 1   -- incremental only: the new cursor
    INSERT INTO sink (cols) SELECT <exprs> FROM (<source query>) AS src WHERE <filters>
        [ON CONFLICT (uniqueBy) DO UPDATE SET c = excluded.c ... | DO NOTHING]   -- rowcount: records written
    SELECT count(*) FROM <source query>   -- records read; only with filter steps (else read == written)

where ``<source query>`` is the SQL connector's own query (the ``where``
conditions, the incremental resume condition after the committed cursor,
``limit``), so the rows read are exactly those the row path would read. The
cursor is committed by the executor after this transaction commits.

When the statement fails (a constraint violated by some rows, a key produced
twice for PostgreSQL's ON CONFLICT...), the transaction is rolled back and the
run continues on the row path, which isolates and counts the bad rows.

SQLite NUMERIC(p,s) columns (Decimal on the row path) are computed in SQL as
exact scaled integers (see :mod:`activedataflow.expressions`); a column written
to the sink gets the double nearest the row path's Decimal, which is what the
sink's Numeric/Float bind processor stores, so such a value may only go into a
NUMERIC/REAL column (the row path cannot bind a Decimal to any other). A stored
value with more decimals or digits than its column declares makes the statement
fail ("integer overflow", see ``SQLITE_GUARD_ERROR``): that run, too, continues
on the row path.

SQLite keeps DATETIME, DATE and TIME values as the text they were written as
(``CURRENT_TIMESTAMP`` writes '2024-01-01 00:00:01'); the row path reads them with
``fromisoformat`` and writes SQLAlchemy's storage format ('2024-01-01 00:00:01.000000').
Push-down rewrites the usual ISO shapes (date; date and time to the minute, second,
millisecond or microsecond; ' ' or 'T' between) into that format, so both paths leave
the same text; any other text fails the statement and the run continues on the row
path. The shape is checked, not the calendar: an impossible '2024-02-30' stops the
row path with an error and is copied as written by push-down. Such a value is copied
only between columns of one type (DATETIME to DATETIME...).

Between two databases (or when a step cannot be pushed down), the source still does what SQL can:

* **stream** (PostgreSQL -> PostgreSQL, two databases, every step SQL-computable, each output column's
  type streamable into its sink column): binary ``COPY (SELECT ...) TO STDOUT`` of the source query
  with the transform, forwarded byte for byte into ``COPY <staging> FROM STDIN`` on the sink, then the
  sink's merge, in one sink transaction, the cursor and count from the source's snapshot
  (:mod:`.fastpath.stream`). No row is decoded in Python. When it fails (a constraint, a key produced
  twice, an overflow), everything is rolled back and the run continues on the row path, as above;
* **source** (a PostgreSQL source otherwise): the longest prefix of the steps that SQL computes
  (:meth:`Pipeline.sql_prefix`) runs in the source query, page by page on the row path's keyset
  pages (:class:`.fastpath.source.PushedSourceReader`), and Python takes over at the first step it
  cannot compute (a python step, a division...), or only writes the rows (PostgreSQL -> SQLite/MySQL,
  through the sink's fast write strategy). Pages are the row path's pages, so counts, cursors,
  ``transaction`` modes and row failures are the row path's; a page the database fails to compute
  is read as plain rows and those steps run in Python.

``adf run --explain`` prints the source query and where Python takes over.

Otherwise the flow runs on the **row path** and :attr:`Plan.reason` says why.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import URL

from ..errors import redact
from ..expressions.sqlcodegen import sqlite_decimal_output
from ..expressions.sqlite import SQLITE_GUARD_ERROR, sqlite_fail
from ..expressions.sqltypes import PUSHDOWN_DIALECTS, Scaled, sql_kind
from ..model import DataFlow, SqlSink, SqlSource
from ..store.engine import DEFAULT_PORTS
from .connectors.engines import release
from .connectors.sql import (
    SQLITE_TEXT_TEMPORAL,
    SinkTarget,
    SqlSinkWriter,
    SqlSourceReader,
    build_write_statement,
    connect,
    create_sql_engine,
    encode_cursor_value,
)
from .transforms import NotPushable, SqlPlan, compile_transforms

if TYPE_CHECKING:
    from .fastpath.source import PushedSourceReader

__all__ = [
    "ATTACHED_SCHEMA",
    "Plan",
    "PushdownFailed",
    "PushdownResult",
    "explain_flow",
    "plan_flow",
    "pushdown_enabled",
]

log = logging.getLogger("activedataflow.runner.plan")

ATTACHED_SCHEMA = "adf_src"


def pushdown_enabled() -> bool:
    return os.environ.get("ADF_PUSHDOWN", "on").lower() not in ("off", "0", "false", "no")


class PushdownFailed(Exception):
    """The pushed-down statement failed and was rolled back; run the flow on the row path."""


@dataclass
class PushdownResult:
    read: int
    written: int
    cursor: Any  # JSON-safe keyset position after the last row read (incremental flows), else None


@dataclass
class Plan:
    """``kind`` "pushdown" (same database, with ``sql``), "stream" (two PostgreSQL databases, binary COPY:
    ``source_sql`` and ``sql``, see :mod:`.fastpath.stream`) or "rows" (with ``reason``)."""

    kind: Literal["pushdown", "stream", "source", "rows"]
    reason: str
    sql: str | None = None  # the INSERT ... SELECT (stream: the COPY into staging and the merge), placeholders
    count_sql: str | None = None
    source_sql: str | None = None  # stream: the query run on the source database; source: its first page
    pushed_steps: int = 0  # source: the transform steps the source query computes (the rest run in Python)
    python_from: str | None = None  # source: why Python takes over at step ``pushed_steps`` (None: no step left)
    _run: _Pushdown | _Stream | None = field(default=None, repr=False)

    def explain(self) -> str:
        if self.kind == "rows":
            return f"row path: {self.reason}"
        if self.kind == "source":
            python = (f"Python takes over at {self.python_from}" if self.python_from else
                      "Python takes over: only to write the rows (every step runs in the source query)")
            return (f"source push-down ({self.reason}):\non the source, page by page "
                    f"(spec.transform.0-{self.pushed_steps - 1} in SQL):\n{self.source_sql}\n{python}")
        if self.kind == "stream":
            return (f"source push-down, binary COPY between databases ({self.reason}):\n"
                    f"on the source:\n{self.source_sql}\non the sink:\n{self.sql}\n"
                    "Python takes over: nowhere (every step runs in the source query; rows are never decoded)")
        return f"push-down ({self.reason}):\n{self.sql}"

    def source_reader(self, flow: DataFlow, url: str) -> PushedSourceReader:
        """source: the reader whose query computes the first :attr:`pushed_steps` steps of ``flow``."""
        from .fastpath.source import PushedSourceReader

        assert self.kind == "source" and isinstance(flow.spec.source, SqlSource)
        return PushedSourceReader(flow.spec.source, url, flow.spec.transform[: self.pushed_steps])

    def execute(self) -> PushdownResult:
        """Run the pushed-down statement (see the module docstring). Raises :class:`PushdownFailed`."""
        assert self._run is not None, "only a push-down plan executes"
        return self._run.execute()


def _rows(reason: str) -> Plan:
    return Plan("rows", reason)


# --------------------------------------------------------------------------- where the tables live


def _db_url(url: str) -> URL | None:
    try:
        return sa.make_url(url)
    except sa.exc.ArgumentError:
        return None


def _sqlite_file(url: URL) -> Path | None:
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:") or url.query:
        return None
    return Path(db).resolve()


def _placement(src: URL, dst: URL) -> tuple[str | None, str]:
    """("same" | "attach" | None, explanation)."""
    sb, db = src.get_backend_name(), dst.get_backend_name()
    if sb != db:
        return None, f"source ({sb}) and sink ({db}) are different databases"
    if sb not in PUSHDOWN_DIALECTS:
        return None, f"push-down is implemented for PostgreSQL and SQLite, not {sb}"
    if sb == "sqlite":
        sf, df = _sqlite_file(src), _sqlite_file(dst)
        if sf is None or df is None:
            return None, "in-memory or URI SQLite databases cannot be shared between source and sink"
        if sf == df:
            return "same", "source and sink are the same SQLite database"
        return "attach", "the source SQLite file is ATTACHed to the sink's"

    def where(u: URL) -> tuple[Any, ...]:
        return (u.host or "localhost", u.port or DEFAULT_PORTS.get(sb), u.database, u.username,
                u.query.get("host"))

    if where(src) != where(dst):
        return None, "source and sink are different databases (PostgreSQL cannot write across databases)"
    return "same", "source and sink are the same PostgreSQL database"


# --------------------------------------------------------------------------- the statements


class _PushdownSource(SqlSourceReader):
    """The SQL connector's reader, asked for its query instead of its pages (same where, resume, limit)."""

    def query(self) -> tuple[sa.Subquery, dict[str, Any]]:
        """The rows the row path would read, as a subquery, and its bound parameters."""
        first = self._first
        assert first is not None, "open() first"
        params = {f"adf_k{i}": v for i, v in enumerate(self._start.values())}
        if self.spec.limit is None:
            return first.limit(None).order_by(None).subquery("src"), params
        params["adf_limit"] = self.spec.limit
        return first.subquery("src"), params

    def probe(self, fn: Callable[[sa.Connection], Any]) -> Any:
        """``fn(connection)`` on the open reader's connection, in a read-only transaction."""
        assert self._conn is not None, "open() first"
        with self._conn.begin():
            return fn(self._conn)

    def key_columns(self, subquery: sa.Subquery) -> list[sa.ColumnElement[Any]]:
        """The keyset's columns of :meth:`query`, as the row path reads them (SQLite dates: their text)."""
        return [subquery.c[name] for name in self.key_names]


class _Pushdown:
    """Everything to run one pushed-down flow; built by :func:`plan_flow`."""

    def __init__(
        self,
        *,
        sink_url: str,
        placement: str,
        source_file: Path | None,
        insert: sa.Insert,
        count: sa.Select[Any] | None,
        last: sa.Select[Any] | None,
        written_count: sa.Select[Any] | None,
        keys: tuple[str, ...],
        params: dict[str, Any],
        guards: dict[str, str] | None = None,
    ) -> None:
        self.sink_url = sink_url
        self.placement = placement
        self.source_file = source_file
        self.insert, self.count, self.last, self.written_count = insert, count, last, written_count
        self.keys = keys
        self.params = params
        self.guards = guards or {}  # SQLite column -> what SQL checks of its values (see SQLITE_GUARD_ERROR)

    @property
    def translate(self) -> dict[str | None, str] | None:
        return {None: ATTACHED_SCHEMA} if self.placement == "attach" else None

    def execute(self) -> PushdownResult:
        engine = create_sql_engine(self.sink_url, field="spec.sink.connection")
        try:
            conn = connect(engine, field="spec.sink.connection")
            try:
                return self._execute(conn)
            finally:
                conn.close()
        finally:
            release(engine)

    def _execute(self, conn: sa.Connection) -> PushdownResult:
        if self.placement == "attach":
            # ATTACH is refused inside a transaction: on the raw connection, before SQLAlchemy's BEGIN
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute(f"ATTACH DATABASE ? AS {ATTACHED_SCHEMA}", (str(self.source_file),))
            conn = conn.execution_options(schema_translate_map=self.translate)
        elif conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        try:
            with conn.begin():
                cursor = None
                if self.last is not None:
                    row = conn.execute(self.last, self.params).first()
                    if row is not None:
                        cursor = {k: encode_cursor_value(v) for k, v in zip(self.keys, row, strict=True)}
                result = conn.execute(self.insert, self.params, execution_options={"preserve_rowcount": True})
                rowcount = max(int(result.rowcount), 0)
                if self.written_count is not None:
                    written = int(conn.execute(self.written_count, self.params).scalar_one())
                else:
                    written = rowcount
                read = written if self.count is None else int(conn.execute(self.count, self.params).scalar_one())
        except sa.exc.DBAPIError as err:
            orig = getattr(err, "orig", None) or err
            message = redact(" ".join(str(orig).split()))[:300]
            if self.guards and SQLITE_GUARD_ERROR in message:
                checks = "; ".join(f"{', '.join(n for n, w in self.guards.items() if w == what)}: {what}"
                                   for what in dict.fromkeys(self.guards.values()))
                message += (f" (a value is not what its SQLite column declares: {checks}; "
                            "the row path reads it as SQLAlchemy does)")
            raise PushdownFailed(message) from err
        finally:
            if self.placement == "attach":
                with contextlib.suppress(Exception):
                    conn.connection.driver_connection.execute(f"DETACH DATABASE {ATTACHED_SCHEMA}")  # type: ignore[union-attr]
        return PushdownResult(read, written, cursor)


def _upsert(target: SinkTarget, select: sa.Select[Any], names: list[str], placement: str) -> sa.Insert:
    table = target.table
    if placement == "attach":
        # the source tables are translated to the ATTACHed schema (schema None -> adf_src); the sink table
        # must stay in the sink's own file, so it is named main.<table> explicitly
        table = table.to_metadata(sa.MetaData(), schema="main")
    return build_write_statement(target, table=table, source=(names, select))


def _sink_target(spec: SqlSink, url: str, columns: tuple[str, ...],
                 probe: Callable[[sa.Connection, SinkTarget], Any] | None = None) -> SinkTarget:
    """The sink connector's checked target (columns exist, uniqueBy is a unique key...); ``probe`` is
    called with the sink's connection and the target before it closes."""
    writer = SqlSinkWriter(spec, url)
    try:
        writer.open(columns)
        assert writer.target is not None and writer._conn is not None
        if probe is not None:
            with writer._conn.begin():
                probe(writer._conn, writer.target)
        return writer.target
    finally:
        writer.close()


# --------------------------------------------------------------------------- planning


def plan_flow(flow: DataFlow, source_url: str, sink_url: str, *, cursor: Any = None) -> Plan:
    """Push-down or row path for ``flow`` (see the module docstring).

    Cheap checks come first; only a flow whose source and sink share a
    database is reflected (source query, transform, sink target). Errors a
    user can cause (unknown table or column, a bad expression) are raised as
    the row path would raise them.
    """
    spec = flow.spec
    if not isinstance(spec.source, SqlSource) or not isinstance(spec.sink, SqlSink):
        return _rows(f"source ({spec.source.type}) and sink ({spec.sink.type}) are not both SQL tables")
    if not pushdown_enabled():
        return _rows("push-down is disabled (ADF_PUSHDOWN=off)")
    src, dst = _db_url(source_url), _db_url(sink_url)
    if src is None or dst is None:
        return _rows("a connection URL is not a SQLAlchemy database URL")
    if (reason := _python_step(flow)) is not None:
        return _source_prefix(flow, source_url, src, cursor, reason)
    placement, why = _placement(src, dst)
    if placement is None:
        return _between(flow, source_url, sink_url, src, dst, cursor, why)
    source_file = _sqlite_file(src) if placement == "attach" else None
    if source_file is not None and not source_file.is_file():
        return _rows(f"the source SQLite file {source_file} does not exist")

    reader = _PushdownSource(spec.source, source_url)
    try:
        columns = reader.open(cursor)
        subquery, params = reader.query()
        keys = reader.keys
        key_cols = reader.key_columns(subquery)
    finally:
        reader.close()
    pipeline = compile_transforms(spec.transform, columns)
    target = _sink_target(spec.sink, sink_url, pipeline.columns)
    dialect = target.dialect
    cols = {name: subquery.c[name] for name in columns}
    try:
        sql_plan = pipeline.to_sql(cols, dialect)
        if dialect == "sqlite":
            _sqlite_outputs(sql_plan, target)
    except NotPushable as err:
        return _source_prefix(flow, source_url, src, cursor, err.reason)

    names = list(sql_plan.columns)
    select = sa.select(*sql_plan.select_list()).select_from(subquery).where(sa.true(), *sql_plan.where)
    insert = _upsert(target, select, names, placement)
    # without filter steps every row read is written: the INSERT's rowcount is also the rows read
    count = sa.select(sa.func.count()).select_from(subquery) if sql_plan.where else None
    last = None
    if spec.source.incremental is not None:
        last = sa.select(*key_cols).order_by(*(c.desc() for c in key_cols)).limit(1)
    written_count = None
    if target.mode == "upsert" and not target.update_columns:  # DO NOTHING: rowcount misses the kept rows
        written_count = sa.select(sa.func.count()).select_from(select.subquery("out"))
    guards = {n: _DECIMAL_GUARD for n in columns if isinstance(sql_kind(cols[n].type, dialect), Scaled)}
    if dialect == "sqlite":
        guards.update({n: _TEMPORAL_GUARD for n in columns if _temporal(cols[n].type) is not None})
    run = _Pushdown(
        sink_url=sink_url, placement=placement, source_file=source_file, insert=insert, count=count, last=last,
        written_count=written_count, keys=keys, params=params, guards=guards,
    )
    return Plan("pushdown", why, sql=_sql_text(insert, dialect, run.translate),
                count_sql=None if count is None else _sql_text(count, dialect, run.translate), _run=run)


def _python_step(flow: DataFlow) -> str | None:
    """Why the first python step of ``flow`` cannot be pushed down, None without one."""
    for i, step in enumerate(flow.spec.transform):
        if step.python is not None:
            return f"spec.transform.{i}.python: python steps run in the runner and cannot be pushed down to SQL"
    return None


# --------------------------------------------------------------------------- between two databases


def _between(flow: DataFlow, source_url: str, sink_url: str, src: URL, dst: URL, cursor: Any, why: str) -> Plan:
    """Source-side push-down for a flow between two databases (see :mod:`.fastpath.stream`), or the row path."""
    from .fastpath import enabled as fastpath_enabled
    from .fastpath import stream

    spec = flow.spec
    assert isinstance(spec.source, SqlSource) and isinstance(spec.sink, SqlSink)
    if (src.get_backend_name(), dst.get_backend_name()) != ("postgresql", "postgresql"):
        return _source_prefix(flow, source_url, src, cursor, why)
    if not fastpath_enabled() or src.get_driver_name() != "psycopg" or dst.get_driver_name() != "psycopg":
        return _source_prefix(flow, source_url, src, cursor,
                              f"{why}; the binary COPY between them needs psycopg 3 and ADF_FASTPATH on")
    reader = _PushdownSource(spec.source, source_url)
    try:
        columns = reader.open(cursor)
        subquery, params = reader.query()
        keys = reader.keys
        key_cols = reader.key_columns(subquery)
        pipeline = compile_transforms(spec.transform, columns)
        cols = {name: subquery.c[name] for name in columns}
        try:
            sql_plan = pipeline.to_sql(cols, "postgresql")
        except NotPushable as err:
            reader.close()
            return _source_prefix(flow, source_url, src, cursor, f"{why}; {err.reason}")
        names = list(sql_plan.columns)
        select_list = sql_plan.select_list()
        select = sa.select(*select_list).select_from(subquery).where(sa.true(), *sql_plan.where)
        source_types = reader.probe(lambda conn: stream.source_types(conn, select, params))
    finally:
        reader.close()
    sink: dict[str, str] = {}
    target = _sink_target(spec.sink, sink_url, pipeline.columns,
                          probe=lambda conn, t: sink.update(stream.sink_types(conn, t)))
    nulls = frozenset(n for n, e in sql_plan.columns.items() if isinstance(e.type, sa.types.NullType))
    types = stream.describe(names, source_types, sink, nulls)
    if isinstance(types, str):
        return _source_prefix(flow, source_url, src, cursor, f"{why}; {types}")
    select = (sa.select(*stream.cast_outputs(select_list, types.casts)).select_from(subquery)
              .where(sa.true(), *sql_plan.where))
    if target.mode == "upsert" and not target.update_columns:
        # DO NOTHING keeps the first row of a key, as the row path does: the rows in the row path's order
        select = select.order_by(*key_cols)
    count = sa.select(sa.func.count()).select_from(subquery) if sql_plan.where else None
    last = None
    if spec.source.incremental is not None:
        last = sa.select(*key_cols).order_by(*(c.desc() for c in key_cols)).limit(1)
    run = _Stream(source_url=source_url, sink_url=sink_url, select=select, count=count, last=last, keys=keys,
                  params=params, target=target, types=types)
    from sqlalchemy.dialects import postgresql

    explained = run.statements(postgresql.psycopg.dialect())  # type: ignore[no-untyped-call]
    return Plan("stream", f"{why}; both are PostgreSQL", sql=f"{explained[1]}\n{explained[2]}",
                count_sql=None if count is None else _sql_text(count, "postgresql", None),
                source_sql=explained[0], _run=run)


def _source_prefix(flow: DataFlow, source_url: str, src: URL, cursor: Any, why: str) -> Plan:
    """The row path with the longest SQL-computable prefix of the transform in the source query (PostgreSQL
    sources), or the plain row path (``why``)."""
    from .fastpath import enabled as fastpath_enabled
    from .fastpath.source import pushed_page

    spec = flow.spec
    assert isinstance(spec.source, SqlSource)
    if src.get_backend_name() != "postgresql" or src.get_driver_name() != "psycopg" or not fastpath_enabled():
        return _rows(why)
    reader = _PushdownSource(spec.source, source_url)
    try:
        columns = reader.open(cursor)
        subquery, _ = reader.query()
        first = reader._first
        key_names = reader.key_names
    finally:
        reader.close()
    assert first is not None
    pipeline = compile_transforms(spec.transform, columns)
    pushed, _, python_from = pipeline.sql_prefix({n: subquery.c[n] for n in columns}, "postgresql")
    if pushed == 0:
        return _rows(why)
    prefix = compile_transforms(spec.transform[:pushed], columns)
    page = pushed_page(first, prefix, columns, key_names, "postgresql")
    return Plan("source", why, source_sql=_sql_text(page, "postgresql", None), pushed_steps=pushed,
                python_from=python_from)


class _Stream:
    """One flow between two PostgreSQL databases by binary COPY; built by :func:`_between`."""

    def __init__(self, *, source_url: str, sink_url: str, select: sa.Select[Any], count: sa.Select[Any] | None,
                 last: sa.Select[Any] | None, keys: tuple[str, ...], params: dict[str, Any], target: SinkTarget,
                 types: Any) -> None:
        from .fastpath import stream

        self.source_url, self.sink_url = source_url, sink_url
        self.select, self.count, self.last = select, count, last
        self.keys, self.params, self.target, self.types = keys, params, target, types
        self.stage = stream.stage_name()

    def statements(self, dialect: sa.engine.Dialect) -> tuple[str, str, str]:
        """(COPY out of the source, COPY into staging, the merge), placeholders for bound parameters."""
        from .fastpath import stream

        prep = dialect.identifier_preparer
        cols = ", ".join(prep.quote(c) for c in self.target.columns)
        out = f"COPY ({self.select.compile(dialect=dialect)}) TO STDOUT (FORMAT binary)"
        into = (f"{stream.create_stage(self.stage, self.target, self.types, prep.quote)};\n"
                f"COPY {prep.quote(self.stage)} ({cols}) FROM STDIN (FORMAT binary)")
        merge = str(stream.merge_statement(self.target, self.stage).compile(dialect=dialect))
        return out, into, merge

    def execute(self) -> PushdownResult:
        src_engine = create_sql_engine(self.source_url, field="spec.source.connection", readonly=True)
        dst_engine = create_sql_engine(self.sink_url, field="spec.sink.connection")
        try:
            sconn = connect(src_engine, field="spec.source.connection")
            try:
                dconn = connect(dst_engine, field="spec.sink.connection")
                try:
                    return self._execute(sconn, dconn)
                finally:
                    dconn.close()
            finally:
                sconn.close()
        finally:
            release(src_engine)
            release(dst_engine)

    def _execute(self, sconn: sa.Connection, dconn: sa.Connection) -> PushdownResult:
        from .fastpath import stream

        dbapi_errors = (sa.exc.DBAPIError, sconn.dialect.loaded_dbapi.Error)
        sconn = sconn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        prep = dconn.dialect.identifier_preparer
        cols = ", ".join(prep.quote(c) for c in self.target.columns)
        copy_in = f"COPY {prep.quote(self.stage)} ({cols}) FROM STDIN (FORMAT binary)"
        src_raw = sconn.connection.driver_connection
        query = stream.query_text(self.select, sconn.dialect, self.params, src_raw)
        copy_out = f"COPY ({query}) TO STDOUT (FORMAT binary)"
        try:
            with sconn.begin():  # one snapshot: the cursor, the count and the rows moved agree
                cursor = None
                if self.last is not None:
                    row = sconn.execute(self.last, self.params).first()
                    if row is not None:
                        cursor = {k: encode_cursor_value(v) for k, v in zip(self.keys, row, strict=True)}
                read = None if self.count is None else int(sconn.execute(self.count, self.params).scalar_one())
                with dconn.begin():
                    dconn.exec_driver_sql(stream.create_stage(self.stage, self.target, self.types, prep.quote))
                    staged = stream.stream_copy(src_raw, copy_out, dconn.connection.driver_connection, copy_in)
                    result = dconn.execute(stream.merge_statement(self.target, self.stage),
                                           execution_options={"preserve_rowcount": True})
                    rowcount = max(int(result.rowcount), 0)
        except dbapi_errors as err:
            orig = getattr(err, "orig", None) or err
            raise PushdownFailed(redact(" ".join(str(orig).split()))[:300]) from err
        # DO NOTHING: rowcount misses the rows kept; every row staged counts as written, as in push-down
        written = staged if self.target.mode == "upsert" and not self.target.update_columns else rowcount
        return PushdownResult(staged if read is None else read, written, cursor)


def _sqlite_outputs(sql_plan: SqlPlan, target: SinkTarget) -> None:
    """SQLite NUMERIC, date and time outputs written as the row path writes them, or NotPushable."""
    for name, expr in sql_plan.columns.items():
        temporal = _temporal(expr.type)
        if temporal is not None:
            sql_plan.columns[name] = _sqlite_temporal_output(expr, name, temporal, target.table.c[name].type)
            continue
        out = sqlite_decimal_output(expr, name)
        if not isinstance(sql_kind(out.type, "sqlite"), Scaled):
            continue
        sink_type = target.table.c[name].type
        if not isinstance(sink_type, sa.Numeric):  # Float too: both bind float(Decimal)
            raise NotPushable(
                f"column '{name}' is a SQLite NUMERIC (a Decimal on the row path), and the sink column is "
                f"{sink_type}: the row path cannot bind a Decimal to it, SQL would store a number; "
                "write int(...) or float(...)"
            )
        sql_plan.columns[name] = out


# --------------------------------------------------------------------------- SQLite dates and times (text)

_DECIMAL_GUARD = "NUMERIC with no more decimals or digits than declared"
_TEMPORAL_GUARD = "an ISO date or time (YYYY-MM-DD, HH:MM[:SS[.fff[fff]]])"
# (GLOB pattern after the date, text to append) for the times ``fromisoformat`` reads, most common first
_TIME_SHAPES = (("??:??:??.??????", ""), ("??:??:??", ".000000"), ("??:??:??.???", "000"), ("??:??", ":00.000000"))


def _temporal(type_: sa.types.TypeEngine[Any]) -> type[sa.types.TypeEngine[Any]] | None:
    return next((t for t in SQLITE_TEXT_TEMPORAL if isinstance(type_, t)), None)


def _sqlite_temporal_output(expr: sa.ColumnElement[Any], name: str, kind: type[sa.types.TypeEngine[Any]],
                            sink_type: sa.types.TypeEngine[Any]) -> sa.ColumnElement[Any]:
    """The text SQLAlchemy's storage format gives the value the row path reads (see the module docstring)."""
    if _temporal(sink_type) is not kind:
        raise NotPushable(
            f"column '{name}' is a SQLite {expr.type} (text), the sink column is {sink_type}: the row path "
            "converts the value, push-down copies dates and times only into a column of the same type"
        )
    text = sa.type_coerce(expr, sa.String())

    def glob(pattern: str) -> sa.ColumnElement[bool]:
        return text.op("GLOB", return_type=sa.Boolean)(sa.literal_column(f"'{pattern}'"))

    def plus(head: sa.ColumnElement[Any], tail: str) -> sa.ColumnElement[Any]:
        return head.concat(sa.literal_column(f"'{tail}'", sa.String())) if tail else head

    shapes: list[tuple[str, sa.ColumnElement[Any]]] = []  # (GLOB pattern, the text to write)
    if kind is sa.Time:
        shapes += [(shape, plus(text, tail)) for shape, tail in _TIME_SHAPES]
    elif kind is sa.Date:
        shapes.append(("????-??-??", text))
    else:
        one, ten, twelve = (sa.literal_column(str(i), sa.Integer()) for i in (1, 10, 12))
        t_sep = sa.func.substr(text, one, ten).concat(sa.literal_column("' '")).concat(sa.func.substr(text, twelve))
        for sep, head in ((" ", text), ("T", t_sep)):
            shapes += [(f"????-??-??{sep}{shape}", plus(head, tail)) for shape, tail in _TIME_SHAPES]
        shapes.append(("????-??-??", plus(text, " 00:00:00.000000")))
    # one length() picks the shapes of that length ('?' is one character), then at most two GLOBs check them
    # (cheaper than a GLOB per shape: 1M rows 0.1 s less)
    fail = sqlite_fail(expr)
    by_length: dict[int, list[tuple[sa.ColumnElement[bool], sa.ColumnElement[Any]]]] = {}
    for pattern, out in shapes:
        by_length.setdefault(len(pattern), []).append((glob(pattern), out))
    length = sa.func.length(text)
    branches = {sa.literal_column(str(n), sa.Integer()): sa.case(*whens, else_=fail) for n, whens in by_length.items()}
    return sa.type_coerce(sa.case(branches, value=length, else_=fail), expr.type)


def _sql_text(stmt: sa.ClauseElement, dialect_name: str, translate: dict[str | None, str] | None) -> str:
    """The statement as the database receives it, bound parameters as placeholders (never their values)."""
    # imported here: a flow loads only its own databases' dialects
    dialect: sa.Dialect
    if dialect_name == "postgresql":
        from sqlalchemy.dialects import postgresql

        dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]  # unannotated in SQLAlchemy
    else:
        from sqlalchemy.dialects import sqlite

        dialect = sqlite.pysqlite.dialect()
    kwargs: dict[str, Any] = {"dialect": dialect}
    if translate:
        kwargs.update(schema_translate_map=translate, render_schema_translate=True)
    return str(stmt.compile(**kwargs))


def explain_flow(flow: DataFlow) -> str:
    """``adf run --explain``: the plan of ``flow`` as text (a first run: no committed cursor)."""
    from .connections import resolve_url

    src_url = resolve_url(flow.spec.source.connection, namespace=flow.namespace, field="spec.source.connection")
    sink_url = resolve_url(flow.spec.sink.connection, namespace=flow.namespace, field="spec.sink.connection")
    return plan_flow(flow, src_url, sink_url).explain()
