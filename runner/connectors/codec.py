"""Types in transit: how a value read from one database's column reaches another database's column.

The rule (README, "Types in transit"): a value arrives identical where the sink column can hold it;
otherwise it goes through one of the mappings below, or its row fails naming the column (counted as
failed, the other rows written). NULL stays NULL. Nothing is changed silently.

Reading (:func:`read_faithfully`, on the source reader's connection):

* JSON columns (PostgreSQL ``json``/``jsonb``, SQLite ``JSON``) are read as their text,
  :class:`JsonText`: a ``json`` document keeps its spacing, key order and number digits; the JSON value
  ``null`` is the text ``'null'``, never confused with SQL NULL (``None``);
* floating-point columns are read as ``float`` (SQLAlchemy reads a MariaDB ``DOUBLE`` as a Decimal, which
  MariaDB takes back as a DECIMAL literal of at most 65 digits: 1e300 arrived as 1e65);
* PostgreSQL ``interval`` is read as ISO 8601 text (``P1Y2M3D``; the session's ``IntervalStyle`` is
  ``iso_8601``): a ``timedelta`` cannot hold months, ``1 year 2 mons 3 days`` would become ``428 days``.
  PostgreSQL reads that text back into an ``interval`` column exactly.

Writing (:func:`sink_encoder`, on the sink's target columns, before any write strategy):

* into a JSON column: text (``JsonText`` or ``str``) is the document's text, written as it is (checked
  to be JSON where the database would not check it); other values are ``json.dumps``-ed; ``None`` is SQL
  NULL (not the JSON ``null``);
* into a text column: ``uuid`` as its canonical text, lists/tuples/dicts (PostgreSQL arrays...) as JSON
  text (:func:`json_text`), ``timedelta`` as ISO 8601 (:func:`interval_iso`);
* into a timestamp column without a zone: an aware ``datetime`` as its UTC time (SQLite and MariaDB
  would drop the offset, PostgreSQL would convert to the session's zone);
* into a MariaDB/MySQL ``DOUBLE``/``FLOAT``: NaN and infinities fail the row (those columns cannot hold
  them); into SQLite ``REAL``: NaN fails the row (SQLite would store NULL).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from .base import Row

__all__ = ["JsonDocument", "JsonText", "RowEncoder", "interval_iso", "json_default", "json_text",
           "read_faithfully", "sink_encoder", "sink_table"]


class JsonText(str):
    """A JSON document's text exactly as its column held it."""

    __slots__ = ()


def json_text(value: Any) -> str:
    """Lists, tuples and dicts (PostgreSQL arrays, composite values from a python step) as JSON text."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=json_default)


def json_default(value: Any) -> Any:
    """A value JSON has no type for, as a JSON string: decimals and uuids their text, dates and times ISO 8601,
    intervals ISO 8601 (:func:`interval_iso`), bytes base64. Anything else is a TypeError (the row fails)."""
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return interval_iso(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"a {type(value).__name__} value cannot be written as JSON")


def interval_iso(value: dt.timedelta) -> str:
    """``timedelta`` as ISO 8601 duration text, as PostgreSQL's ``IntervalStyle iso_8601`` writes it (P3DT4H5M6S)."""
    days, seconds, micro = value.days, value.seconds, value.microseconds
    if days < 0 and (seconds or micro):  # PostgreSQL keeps days and time with their own signs: -1.5 s is PT-1.5S
        days += 1
        total = -(86_400_000_000 - (seconds * 1_000_000 + micro))
    else:
        total = seconds * 1_000_000 + micro
    sign = "-" if total < 0 else ""
    hours, rest = divmod(abs(total), 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    secs, micro = divmod(rest, 1_000_000)
    out = "P" + (f"{days}D" if days else "")
    clock = ""
    if hours:
        clock += f"{sign}{hours}H"
    if minutes:
        clock += f"{sign}{minutes}M"
    if secs or micro:
        clock += f"{sign}{secs}" + (f".{micro:06d}".rstrip("0") if micro else "") + "S"
    if clock:
        out += "T" + clock
    return out if out != "P" else "PT0S"


# --------------------------------------------------------------------------- reading


class JsonDocument(sa.types.TypeDecorator[Any]):
    """A JSON column read as its text (:class:`JsonText`); bound as text, cast to the column's JSON type."""

    impl = sa.JSON
    cache_ok = True

    def __init__(self, target: sa.types.TypeEngine[Any] | None = None) -> None:
        super().__init__()
        self.target = target if target is not None else sa.JSON()

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        return dialect.type_descriptor(self.target)

    def bind_processor(self, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
        return None  # the sink's encoder made the value the document's text (or None)

    def result_processor(self, dialect: sa.Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        return _as_json_text

    @property
    def python_type(self) -> type[Any]:
        return str


def _as_json_text(value: Any) -> Any:
    if value is None or type(value) is JsonText:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return JsonText(bytes(value).decode())
    if isinstance(value, str):
        return JsonText(value)
    return JsonText(json.dumps(value))  # a driver that parsed it anyway


def read_faithfully(conn: sa.Connection, table: sa.Table) -> None:
    """Read ``table`` on ``conn`` without loss (see the module docstring); call inside a transaction."""
    dialect = conn.dialect.name
    for col in table.columns:
        if isinstance(col.type, sa.JSON):
            col.type = JsonDocument(col.type)
        elif isinstance(col.type, sa.Float) and col.type.asdecimal:
            col.type.asdecimal = False  # MariaDB DOUBLE: a Decimal of 1e300 would be written back as 1e65
    if dialect != "postgresql" or conn.dialect.driver != "psycopg":
        return
    from psycopg.adapt import Loader

    class JsonTextLoader(Loader):
        def load(self, data: Any) -> JsonText:
            return JsonText(bytes(data).decode())

    class TextLoader(Loader):
        def load(self, data: Any) -> str:
            return bytes(data).decode()

    raw = conn.connection.driver_connection
    assert raw is not None
    for name in ("json", "jsonb"):
        raw.adapters.register_loader(name, JsonTextLoader)
    if any(isinstance(c.type, postgresql.INTERVAL) for c in table.columns):
        raw.adapters.register_loader("interval", TextLoader)
        conn.exec_driver_sql("SET intervalstyle = 'iso_8601'")


# --------------------------------------------------------------------------- writing

Encode = Callable[[Any], Any]


def _text(value: Any) -> Any:
    if isinstance(value, str):
        return str(value) if type(value) is not str else value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple | dict):
        return json_text(value)
    if isinstance(value, dt.timedelta):
        return interval_iso(value)
    return value  # numbers, dates...: the database's own text of them


def _json_document(check: bool) -> Encode:
    def encode(value: Any) -> Any:
        if isinstance(value, str):
            if check:
                try:
                    json.loads(value)
                except ValueError:
                    raise ValueError(f"{value[:40]!r} is not JSON text") from None
            return str(value)
        return json.dumps(value, allow_nan=False, default=json_default)

    return encode


def _utc_naive(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _finite(where: str) -> Encode:
    def encode(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value} cannot be stored in a {where} column")
        return value

    return encode


def _not_nan(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        raise ValueError("NaN cannot be stored in a SQLite REAL column (SQLite would store NULL)")
    return value


# Whether a column of a buffer needs no encoding (checked column-wise first: the hot path's usual case).
Skip = Callable[[Iterable[Any]], bool]
_NONE = type(None)


def _only(*types: type) -> Skip:
    allowed = frozenset({_NONE, *types})
    return lambda values: set(map(type, values)) <= allowed


def _naive_only(values: Iterable[Any]) -> bool:
    # C-level map (a generator costs ~4x): text or dates have no tzinfo, for the database to parse
    return not any(map(getattr, values, repeat("tzinfo"), repeat(None)))


def _encoder_for(col: sa.Column[Any], dialect: str) -> tuple[Encode, Skip] | None:
    type_ = col.type
    if isinstance(type_, JsonDocument | sa.JSON):
        return _json_document(check=dialect != "postgresql"), _only()
    if isinstance(type_, sa.String) and not isinstance(type_, sa.Enum):
        return _text, _only(str)
    if isinstance(type_, sa.DateTime) and not type_.timezone:
        return _utc_naive, _naive_only
    if isinstance(type_, sa.Float) and dialect in ("mysql", "mariadb"):
        return _finite("MariaDB/MySQL floating-point"), _only(int)
    if isinstance(type_, sa.Float) and dialect == "sqlite":
        return _not_nan, _only(int)
    return None


class RowEncoder:
    """The encoders of a sink's columns (see the module docstring), applied column-wise to a buffer of rows."""

    def __init__(self, columns: Sequence[str], encoders: list[tuple[int, Encode, Skip]]) -> None:
        self.columns = tuple(columns)
        self.encoders = encoders

    def encode(self, rows: Sequence[Row]) -> tuple[list[Row], dict[int, str]]:
        """(rows with every value encoded, {index of a row that cannot be written: why, naming the column})."""
        failed: dict[int, str] = {}
        changed: list[tuple[int, list[Any]]] = []
        for pos, encode, skip in self.encoders:
            if skip(map(itemgetter(pos), rows)):  # the usual case, at C speed: nothing to encode
                continue
            values = list(map(itemgetter(pos), rows))
            out: list[Any] = []
            for i, v in enumerate(values):
                if v is None:
                    out.append(None)
                    continue
                try:
                    out.append(encode(v))
                except (TypeError, ValueError) as err:
                    failed.setdefault(i, f"column {self.columns[pos]}: {err}")
                    out.append(None)
            changed.append((pos, out))
        if not changed:
            return rows if isinstance(rows, list) else list(rows), failed
        columns: list[Any] = list(zip(*rows, strict=True))
        for pos, out in changed:
            columns[pos] = out
        return list(zip(*columns, strict=True)), failed


def sink_encoder(table: sa.Table, columns: Sequence[str], dialect: str) -> RowEncoder | None:
    """The encoder of the written ``columns`` of ``table``, or None when no column needs one."""
    encoders = []
    for pos, name in enumerate(columns):
        found = _encoder_for(table.c[name], dialect)
        if found is not None:
            encoders.append((pos, *found))
    return RowEncoder(columns, encoders) if encoders else None


def sink_table(table: sa.Table) -> sa.Table:
    """``table`` with its JSON columns bound as the text :func:`sink_encoder` gives them (None as SQL NULL)."""
    for col in table.columns:
        if isinstance(col.type, sa.JSON):
            col.type = JsonDocument(col.type)
    return table
