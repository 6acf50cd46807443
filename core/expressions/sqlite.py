"""SQLite push-down computing what the row path computes: exact decimals as scaled integers.

SQLite NUMERIC (Decimal on the row path)
----------------------------------------
SQLite stores NUMERIC as REAL/INTEGER, and SQLAlchemy's ``Numeric`` hands the row path
``Decimal('%.{s}f' % value)``. A column with a declared scale s and precision p <= 15 (the digits a
double holds exactly) is computed in SQL as the exact scaled integer K = D * 10**s
(``CAST(ROUND(col * 10.0**s) AS BIGINT)``; kind :class:`Scaled`, which tracks the scale and a bound
on ``|K|`` at compile time):

* ``+ -``: scales align to the larger one; ``*``: scales add; unary ``-``, ``abs``: unchanged; int
  literals are scale 0, float literals the Decimal of their shortest repr (as on the row path). A
  result that may exceed 15 digits is refused ("exceeds the 15 digits SQLite REAL holds exactly");
  so is an INTEGER column beside a NUMERIC in arithmetic (up to 19 digits).
* ``int(x)`` is ``K / 10**s`` in SQLite's integer division (truncates toward zero, as ``int()``);
  ``float(x)`` is ``K / 10.0**s`` (the double nearest D, as ``float(Decimal)``); comparisons and
  ``in`` compare the aligned integers; ``round(x, n)`` (n >= 0) rounds K half away from zero, as the
  row path's ``quantize(ROUND_HALF_UP)``.
* refused: ``/``, ``//``, ``%``, ``str()``, ``round()`` with negative digits, NUMERIC mixed with a float
  column, a float literal beside a value that is an int on some rows (``(row.d if c else 1) * 0.5``
  is float arithmetic there), NUMERIC without a declared scale (read with 10 decimals) or with more
  than 15 digits.
* a NUMERIC result leaves the expression as ``K / 10.0**s`` (type :class:`SqliteDecimal`): the
  double the sink's Numeric/Float bind processor makes of the row path's Decimal.
* SQLite does not enforce the declaration: a stored value with more decimals (0.285 in
  NUMERIC(12,2), which the row path rounds half-even on the binary value), more digits, or text
  makes the statement fail with SQLite's "integer overflow" (:data:`SQLITE_GUARD_ERROR`), and the
  run continues on the row path. The check costs ~0.1 s per million values.

Integers beyond 64 bits
-----------------------
SQLite computes ``+ - *`` (and unary ``-``, ``//``, ``%``) of integers in 64 bits and, where the exact
result does not fit, silently gives a REAL instead (``2**62 * 4`` is 1.8446744073709552e+19); the row
path keeps Python's exact int, and PostgreSQL raises ("bigint out of range"), so that the run continues
on the row path. On SQLite such a result is marked (:class:`SqliteIntArith`) and checked where it is
used other than by more integer arithmetic (a comparison, ``in``, ``int()``, ``str()``, ``float()``,
float arithmetic, the output column): a REAL there fails the statement with "integer overflow" and the
run continues on the row path, as on PostgreSQL. A REAL stays a REAL through integer arithmetic (and
through ``if``/``coalesce``), so one check where a value is used covers every operation that made it.
The checks of an expression are evaluated before it (:class:`IntChecked`, taken over by the steps
computing from its column), never inside one another: each costs one more evaluation of the
arithmetic it checks, however deep (~0.1 s of CPU per million values). ``int()`` of a float outside
the 64-bit range is checked alike (SQLite's CAST saturates, ``int()`` does not), and an integer
literal beyond 64 bits is not pushed down on SQLite (it cannot be bound).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import operators as sql_operators
from sqlalchemy.sql.elements import ColumnElement, TypeCoerce

from .runtime import _EXACT, _to_decimal
from .sqltypes import FLOAT, INT, SQLITE_DIGITS, Kind, Scaled, SqliteDecimal, SqliteDecimalOrInt
from .tree import Arith, Call, Lit, Node, NotPushable

_DIV_PRECEDENCE = sql_operators._PRECEDENCE[sql_operators.truediv]


def _int_sql(value: int) -> ColumnElement[Any]:
    """An integer constant of the generated SQL (not a user literal): inline, readable in --explain."""
    return sa.literal_column(str(value) if value >= 0 else f"({value})", sa.BigInteger())


def _real_sql(value: float) -> ColumnElement[Any]:
    return sa.literal_column(repr(value) if value >= 0 else f"({value!r})", sa.Double())


# SQLite raises "integer overflow" for abs() of the smallest 64-bit integer: the pushed-down statement
# fails (and the run continues on the row path) when a stored value is not what its NUMERIC declares.
SQLITE_GUARD_ERROR = "integer overflow"


def sqlite_fail(col: ColumnElement[Any]) -> ColumnElement[Any]:
    # 0 * CAST(col AS INTEGER) keeps NULL NULL and makes the expression depend on the row, so that
    # SQLite does not evaluate it once up front
    return sa.func.abs(sa.literal_column("(-9223372036854775807 - 1)") + _int_sql(0) * sa.cast(col, sa.BigInteger))


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Check = tuple[ColumnElement[bool], ColumnElement[Any]]  # (the row is wrong, what fails the statement then)


class SqliteIntArith(sa.BigInteger):
    """An integer SQLite computed by integer arithmetic: a REAL where the exact result leaves 64 bits."""

    cache_ok = True


class IntChecked(TypeCoerce[Any]):
    """``value``, computed once none of ``checks`` found a row the row path computes otherwise.

    A later step computing from this column takes its checks over (:meth:`SqliteNumeric.unchecked`).
    """

    inherit_cache = True

    def __init__(self, value: ColumnElement[Any], checks: Sequence[Check]) -> None:
        super().__init__(sa.case(*checks, else_=value), value.type)
        self.value = value
        self.checks = tuple(checks)


def _scaled_literal(value: Any) -> tuple[int, Scaled] | None:
    """An int or float literal as the row path's Decimal, scaled: (K, kind); None if not finite."""
    if type(value) is int:
        return value, Scaled(abs(value), 0, maybe_int=True)
    d = _to_decimal(value)
    if not d.is_finite():
        return None
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)
    scale = max(-exponent, 0)
    k = int(d.scaleb(scale, context=_EXACT))
    return k, Scaled(abs(k), scale)


class SqliteNumeric(ABC):
    """The SQL compiler's methods for SQLite NUMERIC(p,s) values (mixed into it, see :mod:`.sqlcodegen`)."""

    pg: bool  # the dialect is PostgreSQL (SQLite otherwise)
    checks: list[Check]  # what the expression's value waits for (integers beyond 64 bits), in order

    @abstractmethod
    def refuse(self, node: Node, reason: str) -> NotPushable:
        """The NotPushable naming the field and the position of ``node``."""

    @abstractmethod
    def typed(self, expr: ColumnElement[Any], kind: Kind) -> ColumnElement[Any]:
        """``expr`` with the SQL type of ``kind``."""

    # ------------------------------------------------ SQLite NUMERIC: exact decimals as scaled integers
    #
    # The row path reads a SQLite NUMERIC(p,s) value v (a double) as D = Decimal('%.{s}f' % v); SQL
    # computes on K = D * 10**s, an integer (|K| < 10**15 < 2**53: exact as INTEGER and as REAL). + - *
    # on Decimals are exact, and so are they on K (scales add up or align); int(D) is K / 10**s in
    # SQLite's integer division (which truncates toward zero, as int() does); float(D) is K / 10.0**s
    # (IEEE division of two exact doubles: the double nearest D, as float(Decimal) gives).

    @staticmethod
    def scaled_column(col: ColumnElement[Any], kind: Scaled) -> ColumnElement[Any]:
        """K of a NUMERIC(p,s) column: ROUND(v * 10**s), or a statement error where that is not D * 10**s.

        v * 10**s is within 0.23 of an integer K for every v nearest (or a few ulp from) a decimal with
        s decimals and at most 15 digits, and then '%.{s}f' % v gives exactly K / 10**s. A stored value
        with more decimals (0.285 in NUMERIC(12,2): the row path rounds it half-even, on the binary value)
        or more digits than declared, or text, fails the check: the statement raises and the run goes on
        on the row path (SQLite does not enforce the declared precision and scale).
        """
        t = col * _real_sql(10.0**kind.scale)
        k = sa.cast(sa.func.round(t), sa.BigInteger)
        if isinstance(col.type, SqliteDecimal):
            return k  # computed by push-down: the double nearest K / 10**s already
        bound = float(Decimal(10) ** (kind.precision - kind.scale) - Decimal("0.5").scaleb(-kind.scale))
        ok = sa.and_((t - sa.func.round(t)).between(_real_sql(-0.25), _real_sql(0.25)),
                     col.between(_real_sql(-bound), _real_sql(bound)))
        return sa.case((ok, k), else_=sqlite_fail(col))

    def decimal_value(self, k: ColumnElement[Any], kind: Scaled) -> ColumnElement[Any]:
        """The double nearest K / 10**s, which is what the row path's Decimal becomes in a REAL/NUMERIC column."""
        value = self.raw_div(k, _real_sql(10.0**kind.scale), sa.Double())
        type_ = SqliteDecimalOrInt if kind.maybe_int else SqliteDecimal
        return sa.type_coerce(value, type_(kind.precision, kind.scale))

    @staticmethod
    def raw_div(a: ColumnElement[Any], b: ColumnElement[Any], type_: sa.types.TypeEngine[Any]) -> ColumnElement[Any]:
        """SQLite's own '/': integer division truncating toward zero for integers, IEEE division otherwise."""
        return a.op("/", precedence=_DIV_PRECEDENCE, return_type=type_)(b)

    def fits(self, node: Node, kind: Scaled, what: str) -> Scaled:
        if kind.bound >= 10**SQLITE_DIGITS or kind.scale > SQLITE_DIGITS:
            raise self.refuse(
                node,
                f"{what} on SQLite NUMERIC gives up to {kind.precision} digits ({kind.scale} decimals), which "
                f"exceeds the {SQLITE_DIGITS} digits SQLite REAL holds exactly",
            )
        return kind

    def scaled(self, node: Node, part: Node, visited: tuple[ColumnElement[Any], Kind],
               what: str) -> tuple[ColumnElement[Any], Scaled]:
        """An operand beside a SQLite NUMERIC as (K, kind): literals become the row path's Decimal exactly."""
        expr, kind = visited
        if isinstance(kind, Scaled):
            return expr, kind
        if isinstance(part, Lit) and type(part.value) in (int, float):
            lit = _scaled_literal(part.value)
            if lit is None:
                raise self.refuse(node, f"{what} with {part.value!r}")
            return sa.literal(lit[0], sa.BigInteger()), lit[1]
        if kind == INT:
            return expr, Scaled(2**63, 0, maybe_int=True)  # any 64-bit integer
        if kind == FLOAT:
            raise self.refuse(node, f"{what} mixing a SQLite NUMERIC and a float column rounds differently in SQL")
        raise self.refuse(node, f"{what} on SQLite NUMERIC and {kind} values is not pushed down")

    def no_float_beside_int(self, node: Node, parts: Sequence[Node], kinds: Sequence[Scaled], what: str) -> None:
        """A float literal beside a value that is an int on some rows: float arithmetic there, Decimal in SQL."""
        if any(isinstance(p, Lit) and type(p.value) is float for p in parts) and any(k.maybe_int for k in kinds):
            raise self.refuse(node, f"{what}: a float beside a value that is an int on some rows (int and float "
                                    "arithmetic there, Decimal arithmetic in SQL)")

    def aligned(self, node: Node, parts: Sequence[Node], visited: Sequence[tuple[ColumnElement[Any], Kind]],
                what: str) -> tuple[list[ColumnElement[Any]], list[Scaled], int]:
        """Operands at one scale (the largest): K * 10**(s - s_i). Each must still fit."""
        ops = [self.scaled(node, p, v, what) for p, v in zip(parts, visited, strict=True)]
        self.no_float_beside_int(node, parts, [k for _, k in ops], what)
        scale = max(k.scale for _, k in ops)
        out, kinds = [], []
        for expr, k in ops:
            shift = scale - k.scale
            kinds.append(self.fits(node, Scaled(k.bound * 10**shift, scale, k.maybe_int), what))
            out.append(expr if not shift else expr * _int_sql(10**shift))
        return out, kinds, scale

    def scaled_arith(
        self, node: Arith, visited: list[tuple[ColumnElement[Any], Kind]]
    ) -> tuple[ColumnElement[Any], Kind]:
        op = node.op
        if op == "/":
            raise self.refuse(node, "'/' on SQLite NUMERIC: the row path divides Decimals to 28 digits, SQL cannot")
        if op in ("//", "%"):
            raise self.refuse(node, f"'{op}' on SQLite NUMERIC is not pushed down (integers only)")
        parts = [node.left, node.right]
        if op == "*":
            (a, ka), (b, kb) = (self.scaled(node, p, v, "*") for p, v in zip(parts, visited, strict=True))
            self.no_float_beside_int(node, parts, [ka, kb], "*")
            both_int = ka.maybe_int and kb.maybe_int
            kind = self.fits(node, Scaled(ka.bound * kb.bound, ka.scale + kb.scale, both_int), "*")
            return self.typed(a * b, kind), kind
        (a, b), (ka, kb), scale = self.aligned(node, parts, visited, op)
        kind = self.fits(node, Scaled(ka.bound + kb.bound, scale, ka.maybe_int and kb.maybe_int), op)
        return self.typed(a + b if op == "+" else a - b, kind), kind

    def scaled_call(self, node: Call, x: ColumnElement[Any], k: Scaled) -> tuple[ColumnElement[Any], Kind]:
        fn = node.fn
        if fn == "int":  # K / 10**s truncates toward zero, as int(Decimal)
            return (self.typed(self.raw_div(x, _int_sql(10**k.scale), sa.BigInteger()), INT) if k.scale else x), INT
        if fn == "float":
            return self.raw_div(x, _real_sql(10.0**k.scale), sa.Double()), FLOAT
        if fn == "abs":
            return self.typed(sa.func.abs(x), k), k
        if fn == "decimal":
            return x, Scaled(k.bound, k.scale)  # a Decimal on every row now
        if fn == "round":  # the row path: Decimal.quantize(10**-n, ROUND_HALF_UP), half away from zero
            n = 0
            if len(node.args) > 1:
                if not (isinstance(node.args[1], Lit) and type(node.args[1].value) is int and node.args[1].value >= 0):
                    raise self.refuse(node, "round() of a SQLite NUMERIC is pushed down with literal digits >= 0 only")
                n = node.args[1].value
            if n >= k.scale:
                kind = self.fits(node, Scaled(k.bound * 10 ** (n - k.scale), n, k.maybe_int), "round()")
                return self.typed(x * _int_sql(10 ** (n - k.scale)) if n > k.scale else x, kind), kind
            unit = 10 ** (k.scale - n)
            half = sa.case((x < 0, _int_sql(-(unit // 2))), else_=_int_sql(unit // 2))
            kind = Scaled(k.bound // unit + 1, n, k.maybe_int)
            return self.typed(self.raw_div(x + half, _int_sql(unit), sa.BigInteger()), kind), kind
        if fn == "str":
            raise self.refuse(node, "str() of a SQLite NUMERIC formats differently in SQL")
        raise self.refuse(node, f"{fn}() on {k} values is not pushed down")

    # ------------------------------------------------ integers beyond 64 bits (see the module docstring)

    def int_arith(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """The integer result of integer arithmetic: marked on SQLite, where it may be a REAL."""
        return expr if self.pg else sa.type_coerce(expr, SqliteIntArith())

    @staticmethod
    def marked(expr: ColumnElement[Any]) -> bool:
        return isinstance(expr.type, SqliteIntArith)

    def int_result(self, expr: ColumnElement[Any], kind: Kind,
                   parts: Sequence[ColumnElement[Any]]) -> ColumnElement[Any]:
        """``expr`` (a CASE or COALESCE of ``parts``) marked if an integer part is: a REAL passes through."""
        return self.int_arith(expr) if kind == INT and any(self.marked(p) for p in parts) else expr

    def used(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """``expr`` used other than by integer arithmetic: checked if SQLite may have made it a REAL."""
        if self.marked(expr):
            self.check((sa.func.typeof(expr) == sa.literal_column("'real'"), sqlite_fail(expr)))
        return expr

    def int_of_float(self, x: ColumnElement[Any]) -> None:
        """int() of a float on SQLite: CAST saturates at the 64-bit bounds, int() does not."""
        if not self.pg:
            ok = sa.and_(x >= _real_sql(float(INT64_MIN)), x < _real_sql(-float(INT64_MIN)))
            self.check((sa.not_(ok), sqlite_fail(x)))  # NULL stays NULL: no check fails

    def int64(self, node: Node, value: int) -> None:
        if not self.pg and not INT64_MIN <= value <= INT64_MAX:
            raise self.refuse(node, f"the integer {value} does not fit SQLite's 64-bit integers")

    def check(self, check: Check) -> None:
        if not any(c is check for c in self.checks):
            self.checks.append(check)

    def unchecked(self, col: ColumnElement[Any]) -> ColumnElement[Any]:
        """A column an earlier step computed: its value, whose checks this expression's value waits for."""
        if not isinstance(col, IntChecked):
            return col
        for check in col.checks:
            self.check(check)
        return col.value

    def checked(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """The expression's value, after its checks."""
        return IntChecked(expr, self.checks) if self.checks else expr
