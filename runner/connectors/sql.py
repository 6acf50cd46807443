"""SQL source and sink through SQLAlchemy 2 Core (SQLite, PostgreSQL, MySQL/MariaDB).

Source (:class:`SqlSourceReader`): a reflected table, structured ``where``
conditions compiled to bound parameters only (identifiers are checked against
the reflected table, values never become SQL text), and **keyset pagination**:
``WHERE (k1, k2) > (:k1, :k2) ORDER BY k1, k2 LIMIT :n`` — never OFFSET. The
keyset is ``orderBy`` (default: the primary key), extended with the primary
key when it does not already contain a unique key; with ``incremental`` it is
``(cursorColumn, primary key)`` and reading resumes strictly after the
committed cursor. Pages run in short read-only transactions; one page is held
in memory at a time.

On SQLite, DATETIME, DATE and TIME keys are compared as the text the table
holds (``SqlSourceReader.raw_keys``): SQLite orders that text, and values
written by other programs ('2024-01-01 00:00:01', CURRENT_TIMESTAMP's form)
are not equal to the text SQLAlchemy binds for the same datetime
('2024-01-01 00:00:01.000000'). Bound as datetimes, the next page would skip
the rest of a timestamp whose rows straddle a page boundary; bound as the text
read, it resumes exactly after the last row.

Sink (:class:`SqlSinkWriter`): buffers rows and flushes every ``batchSize``
rows through a :class:`WriteStrategy` chosen by dialect (:func:`register_write_strategy`;
the default, :class:`ExecutemanyStrategy`, runs one prepared INSERT /
native upsert statement with ``executemany``). Each flush runs inside a
SAVEPOINT; when it fails on data (constraint or type errors) the buffer is
split in halves until the bad rows are isolated: they are counted in
``stats.failed`` (first few errors kept), the good rows are written. More
failed rows than ``maxFailedRecords`` raise :class:`ConnectorError`.

Values in transit go through :mod:`.codec` (README, "Types in transit"): the reader gets JSON
as its text and PostgreSQL intervals as ISO 8601, the sink maps each value into its column's type
before any write strategy sees it, and a value its column cannot hold fails its row, naming the column.

Cursor values (``Batch.cursor``) are JSON-safe and round-trip exactly:
:func:`encode_cursor_value` / :func:`decode_cursor_value`.
"""

from __future__ import annotations

import abc
import base64
import contextlib
import datetime as dt
import decimal
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import URL

from ...errors import ConfigError, ConnectorError, redact
from ...model import SqlSink, SqlSource, Where
from ..deadline import REFRESH_SECONDS, Deadline, current_deadline
from . import codec
from .base import Batch, Row
from .common import BufferedSinkWriter, ClosingSourceReader

if TYPE_CHECKING:  # the dialects' own modules load when a flow writes to that database
    from sqlalchemy.dialects import postgresql, sqlite

__all__ = [
    "ExecutemanyStrategy",
    "SinkTarget",
    "SqlSinkWriter",
    "SqlSourceReader",
    "WriteStrategy",
    "build_write_statement",
    "create_sql_engine",
    "decode_cursor_value",
    "encode_cursor_value",
    "register_write_strategy",
]

log = logging.getLogger("activedataflow.connectors.sql")

CONNECT_TIMEOUT_SECONDS = 10
SQLITE_BUSY_TIMEOUT_SECONDS = 30
SQLITE_PROGRESS_STEPS = 10_000  # SQLite VM steps between two looks at the run's deadline (about a millisecond)
_Insert = TypeVar("_Insert", bound=sa.Insert)

DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}
DRIVER_FOR_BARE_SCHEME = {"postgres": "postgresql+psycopg", "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}


# --------------------------------------------------------------------------- cursor values


def encode_cursor_value(value: Any) -> Any:
    """A JSON-safe form of a column value that :func:`decode_cursor_value` turns back into an equal value.

    JSON scalars stay as they are; Decimal, datetime, date, time, bytes and UUID
    become one-key objects (``{"$decimal": "12.30"}``) so that nothing is lost.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else {"$float": repr(value)}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dt.datetime):
        if isinstance(value.tzinfo, ZoneInfo) and value.tzinfo.key:
            # keep the zone and the fold (psycopg returns timestamptz in the session's zone): an offset is ambiguous
            return {"$datetime": [value.isoformat(), value.tzinfo.key, value.fold]}
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    raise TypeError(f"a {type(value).__name__} value cannot be used as a cursor")


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "$decimal": decimal.Decimal,
    "$datetime": lambda v: (
        dt.datetime.fromisoformat(v[0]).replace(tzinfo=ZoneInfo(v[1]), fold=v[2]) if isinstance(v, list)
        else dt.datetime.fromisoformat(v)
    ),
    "$date": dt.date.fromisoformat,
    "$time": dt.time.fromisoformat,
    "$timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "$bytes": base64.b64decode,
    "$uuid": uuid.UUID,
    "$float": float,
}


def decode_cursor_value(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        (tag, payload), = value.items()
        if tag in _DECODERS:
            return _DECODERS[tag](payload)
    return value


# --------------------------------------------------------------------------- engines and errors


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


def _not_found(kind: str, name: str, where: str, existing: Sequence[str]) -> str:
    listed = ", ".join(existing) if existing else "none"
    return f"{kind} {name!r} not found in {where}; {kind}s: {listed}"


def reflect_table(conn: sa.Connection, name: str, schema: str | None, *, field: str) -> sa.Table:
    """The reflected table, or ConnectorError listing the tables that exist (URL shown without password)."""
    try:
        # resolve_fks=False: the tables a foreign key refers to are not reflected too (nothing here reads them,
        # and a chain of references multiplies the catalog queries of every run's start-up)
        return sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn, resolve_fks=False)
    except sa.exc.NoSuchTableError:
        pass
    insp = sa.inspect(conn)
    where = conn.get_execution_options().get("adf_display_url", "the database")
    if schema is not None and schema not in insp.get_schema_names():
        raise ConnectorError(_not_found("schema", schema, where, insp.get_schema_names()),
                             field=field.rsplit(".", 1)[0] + ".schema")
    tables = sorted(insp.get_table_names(schema=schema)) + sorted(insp.get_view_names(schema=schema))
    qualified = f"{schema}.{name}" if schema else name
    raise ConnectorError(_not_found("table", qualified, where, tables), field=field)


def check_column(table: sa.Table, name: str, *, field: str) -> sa.Column[Any]:
    if name not in table.c:
        raise ConnectorError(_not_found("column", name, f"table {table.fullname}", list(table.c.keys())), field=field)
    return table.c[name]


def _unique_keys(table: sa.Table, conn: sa.Connection) -> list[tuple[str, ...]]:
    """Column sets with a primary key, unique constraint or unique index, primary key first."""
    keys: list[tuple[str, ...]] = []
    pk = tuple(c.name for c in table.primary_key.columns)
    if pk:
        keys.append(pk)
    insp = sa.inspect(conn)
    for uc in insp.get_unique_constraints(table.name, schema=table.schema):
        keys.append(tuple(uc["column_names"]))
    for ix in insp.get_indexes(table.name, schema=table.schema):
        if ix.get("unique") and all(c is not None for c in ix["column_names"]):
            keys.append(tuple(c for c in ix["column_names"] if c is not None))
    return keys


def _coerce(value: Any, column: sa.Column[Any], *, field: str) -> Any:
    """A manifest value (YAML/JSON) as the column's Python type, so the bound parameter is typed correctly."""
    try:
        ptype = column.type.python_type
    except NotImplementedError:
        return value
    try:
        if isinstance(value, str):
            if ptype is dt.datetime:
                return dt.datetime.fromisoformat(value)
            if ptype is dt.date:
                return dt.date.fromisoformat(value)
            if ptype is dt.time:
                return dt.time.fromisoformat(value)
            if ptype is decimal.Decimal:
                return decimal.Decimal(value)
        elif ptype is decimal.Decimal and isinstance(value, int | float) and not isinstance(value, bool):
            return decimal.Decimal(str(value))
        elif ptype is dt.datetime and type(value) is dt.date:
            return dt.datetime.combine(value, dt.time())
    except (ValueError, decimal.InvalidOperation):
        raise ConfigError(f"{value!r} is not a valid {ptype.__name__} for column {column.name}", field=field) from None
    return value


# --------------------------------------------------------------------------- source

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
            table = reflect_table(self._conn, spec.table, spec.schema_, field=f"{f}.table")
            unique_keys = _unique_keys(table, self._conn)
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
            self._engine.dispose()
            self._engine = None


# --------------------------------------------------------------------------- sink: write strategies


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


# --------------------------------------------------------------------------- sink


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
                table = reflect_table(self._conn, spec.table, spec.schema_, field=f"{f}.table")
                unique_keys = _unique_keys(table, self._conn)
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
            if tx.is_active:
                tx.rollback()
        self.stats.written = self._committed_written

    def close(self) -> None:
        if self._conn is not None:
            if self._tx is not None:
                self.rollback()
            if self.strategy is not None:
                try:
                    self.strategy.close(self._conn)
                except sa.exc.DBAPIError as err:
                    log.warning("closing the write strategy failed: %s", _db_message(err))
            self._conn.close()
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
