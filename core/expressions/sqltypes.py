"""What the SQL compiler knows of a value: its kind (how the row path sees the values of a SQL
column type on a dialect, :func:`sql_kind`), SQLite NUMERIC's :class:`Scaled` among them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

INT, FLOAT, DEC, STR, BOOL, NULL, OTHER, UNKNOWN = "int", "float", "decimal", "text", "bool", "null", "other", "unknown"
SQLITE_DIGITS = 15  # the decimal digits a double (SQLite REAL) holds exactly
SQLITE_NUMERIC_NO_SCALE = "SQLite NUMERIC without a declared scale (the row path reads it rounded to 10 decimals)"
SQLITE_NUMERIC_WIDE = f"SQLite NUMERIC of more than {SQLITE_DIGITS} digits (beyond what SQLite REAL holds exactly)"
_SQLITE_REFUSED = (SQLITE_NUMERIC_NO_SCALE, SQLITE_NUMERIC_WIDE)
_NUMERIC = (INT, FLOAT, DEC)
_KIND_TYPES: dict[str, Callable[[], sa.types.TypeEngine[Any]]] = {
    INT: sa.BigInteger,
    FLOAT: sa.Double,
    DEC: sa.Numeric,
    STR: sa.String,
    BOOL: sa.Boolean,
}
PUSHDOWN_DIALECTS = ("postgresql", "sqlite")


@dataclass(frozen=True, slots=True)
class Scaled:
    """The kind of a SQLite NUMERIC(p,s) value: a Decimal on the row path, a scaled integer K in SQL.

    The value is ``K / 10**scale`` with ``|K| <= bound`` (at most 15 digits, so K and every double
    on the way are exact).
    """

    bound: int
    scale: int
    maybe_int: bool = False  # an int on some rows of the row path (a branch of if/coalesce, an int literal)

    @property
    def precision(self) -> int:
        return len(str(self.bound))

    def __str__(self) -> str:
        return f"SQLite NUMERIC({self.precision},{self.scale})"


Kind = str | Scaled


class SqliteDecimal(sa.Numeric):  # type: ignore[type-arg]
    """A SQLite NUMERIC(p,s) value computed by push-down: the double nearest the row path's Decimal."""

    cache_ok = True


class SqliteDecimalOrInt(SqliteDecimal):
    """A :class:`SqliteDecimal` that is an int on some rows of the row path (``row.d if c else 0``)."""

    cache_ok = True


def sql_kind(type_: sa.types.TypeEngine[Any], dialect_name: str) -> Kind:
    """How the row path sees values of a SQL column type on this dialect."""
    if isinstance(type_, sa.Boolean):
        return BOOL
    if isinstance(type_, sa.Integer):
        return INT
    if isinstance(type_, sa.Float):
        return FLOAT
    if isinstance(type_, sa.Numeric):
        if dialect_name == "postgresql":
            return DEC
        if not type_.asdecimal:
            return FLOAT
        # SQLite stores NUMERIC as REAL/INTEGER; SQLAlchemy's Numeric hands the row path
        # Decimal('%.{scale}f' % value). With a declared scale and at most 15 digits that Decimal
        # is computed exactly in SQL as a scaled integer (see _Sql.scaled_column).
        if isinstance(type_, SqliteDecimal) and type_.scale is not None and type_.precision is not None:
            return Scaled(10**type_.precision - 1, type_.scale, isinstance(type_, SqliteDecimalOrInt))
        if type_.scale is None or type_.scale < 0:
            return SQLITE_NUMERIC_NO_SCALE
        if type_.precision is None or type_.precision > SQLITE_DIGITS or type_.scale > SQLITE_DIGITS:
            return SQLITE_NUMERIC_WIDE
        return Scaled(10**type_.precision - 1, type_.scale)
    if isinstance(type_, sa.String):
        return STR
    if isinstance(type_, sa.types.NullType):
        return UNKNOWN
    return OTHER
