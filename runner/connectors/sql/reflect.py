"""Reflection: the table and its unique keys, columns checked by name, manifest values as a column's type."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ....errors import ConfigError, ConnectorError

__all__ = ["check_column", "reflect_with_keys"]


def _not_found(kind: str, name: str, where: str, existing: Sequence[str]) -> str:
    listed = ", ".join(existing) if existing else "none"
    return f"{kind} {name!r} not found in {where}; {kind}s: {listed}"


def reflect_with_keys(conn: sa.Connection, name: str, schema: str | None, *,
                      field: str) -> tuple[sa.Table, list[tuple[str, ...]]]:
    """The reflected table, or ConnectorError listing the tables that exist (URL shown without password), and
    the table's unique keys (:func:`_unique_keys`)."""
    insp = sa.inspect(conn)
    table = _reflect(insp, conn, name, schema, field=field)
    return table, _unique_keys(table)


def _reflect(insp: sa.Inspector, conn: sa.Connection, name: str, schema: str | None, *, field: str) -> sa.Table:
    table = sa.Table(name, sa.MetaData(), schema=schema)
    try:
        # resolve_fks=False: the tables a foreign key refers to are not reflected too (nothing here reads them,
        # and a chain of references multiplies the catalog queries of every run's start-up)
        insp.reflect_table(table, None, resolve_fks=False)
        return table
    except sa.exc.NoSuchTableError:
        pass
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


def _unique_keys(table: sa.Table) -> list[tuple[str, ...]]:
    """Column sets with a primary key, unique constraint or unique index, primary key first: read from what
    ``reflect_table`` reflected, not asked of the catalog again (on PostgreSQL 3 of the 13 queries that
    reflecting a table took). Indexes over an expression are not keys of columns."""
    keys: list[tuple[str, ...]] = []
    pk = tuple(c.name for c in table.primary_key.columns)
    if pk:
        keys.append(pk)
    # Table.constraints and Table.indexes are sets: in the order of their names, so that the first key and the
    # error that lists them are the same every run
    uniques = sorted((c for c in table.constraints if isinstance(c, sa.UniqueConstraint)), key=_name)
    keys += [tuple(c.name for c in uc.columns) for uc in uniques]
    keys += [tuple(c.name for c in ix.columns) for ix in sorted(table.indexes, key=_name)
             if ix.unique and all(isinstance(e, sa.Column) for e in ix.expressions)]
    return keys


def _name(item: sa.UniqueConstraint | sa.Index) -> str:
    return str(item.name or "")


def _coerce(value: Any, column: sa.Column[Any], *, field: str) -> Any:
    """A manifest value (YAML/JSON) as the column's Python type, so the bound parameter is typed correctly."""
    try:
        ptype = column.type.python_type
    except NotImplementedError:  # pragma: no cover - SQLAlchemy 2.0 only (2.1 returns object for any type)
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


