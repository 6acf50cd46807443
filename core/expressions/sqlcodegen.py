"""Checked tree -> SQLAlchemy Core expression (push-down), exact or refused with NotPushable.

Column kinds come from the SQLAlchemy types of the columns given (:func:`.sqltypes.sql_kind`); on
SQLite, NUMERIC columns are computed as scaled integers (:mod:`.sqlite`)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement, Grouping

from .runtime import _to_decimal
from .sqlite import _DIV_PRECEDENCE, SqliteNumeric, _int_sql, _scaled_literal
from .sqltypes import (
    _KIND_TYPES,
    _NUMERIC,
    _SQLITE_REFUSED,
    BOOL,
    DEC,
    FLOAT,
    INT,
    NULL,
    PUSHDOWN_DIALECTS,
    STR,
    UNKNOWN,
    Kind,
    Scaled,
    SqliteDecimal,
    sql_kind,
)
from .tree import (
    MAX_TEXT_LENGTH,
    Arith,
    BoolOp,
    Call,
    Col,
    Compare,
    IfElse,
    InList,
    IsNull,
    Lit,
    Neg,
    Node,
    Not,
    NotPushable,
)

_PY_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def sqlite_decimal_output(expr: ColumnElement[Any], name: str) -> ColumnElement[Any]:
    """A SQLite output column as the row path writes it; NotPushable for a NUMERIC SQL cannot reproduce.

    A NUMERIC(p,s) source column passed through unchanged becomes the double nearest the Decimal the
    row path reads (checked like every other use, see :meth:`_Sql.scaled_column`); values computed
    by push-down (:class:`SqliteDecimal`) already are.
    """
    kind = sql_kind(expr.type, "sqlite")
    if kind in _SQLITE_REFUSED:
        raise NotPushable(f"column '{name}': a {kind} is written as the row path's Decimal, which SQL does not give")
    if not isinstance(kind, Scaled) or isinstance(expr.type, SqliteDecimal):
        return expr
    return _Sql({}, "sqlite", name).decimal_value(_Sql.scaled_column(expr, kind), kind)


class _Sql(SqliteNumeric):
    def __init__(self, cols: Mapping[str, ColumnElement[Any]], dialect: str, field: str) -> None:
        if dialect not in PUSHDOWN_DIALECTS:
            raise NotPushable(f"{field}: expressions are pushed down only on {' and '.join(PUSHDOWN_DIALECTS)}")
        self.cols = cols
        self.pg = dialect == "postgresql"
        self.dialect = dialect
        self.field = field
        self.checks = []

    def refuse(self, node: Node, reason: str) -> NotPushable:
        return NotPushable(f"{self.field}: {reason} (at position {node.pos})")

    def literal(self, value: Any, kind: str | None = None) -> ColumnElement[Any]:
        if value is None:
            return sa.null()
        if type(value) is bool:
            return sa.true() if value else sa.false()
        if kind == DEC:
            return sa.literal(_to_decimal(value), sa.Numeric())
        if type(value) is int:
            return sa.literal(value, sa.BigInteger())
        if type(value) is float:
            return sa.literal(value, sa.Double())
        return sa.literal(value, sa.String())

    def visit(self, node: Node) -> tuple[ColumnElement[Any], Kind]:
        """The value of ``node`` as it is used (an integer SQLite may have made a REAL is checked)."""
        expr, kind = self.visit_open(node)
        return self.used(expr), kind

    def visit_open(self, node: Node) -> tuple[ColumnElement[Any], Kind]:
        """The value of ``node`` for more integer arithmetic (nothing checked yet)."""
        expr, kind = self._visit(node)
        return (sa.null(), NULL) if kind == NULL else (expr, kind)  # an untyped NULL fits every context

    def _visit(self, node: Node) -> tuple[ColumnElement[Any], Kind]:
        return _TO_SQL[type(node)](self, node)

    def col(self, node: Col) -> tuple[ColumnElement[Any], Kind]:
        if node.name not in self.cols:
            raise self.refuse(node, f"column '{node.name}' is not available in SQL")
        col = self.unchecked(self.cols[node.name])
        kind = sql_kind(col.type, self.dialect)
        if isinstance(kind, Scaled):
            return self.scaled_column(col, kind), kind
        return col, kind

    def lit(self, node: Lit) -> tuple[ColumnElement[Any], Kind]:
        kind = NULL if node.value is None else {bool: BOOL, int: INT, float: FLOAT, str: STR}[type(node.value)]
        if kind == INT:
            self.int64(node, node.value)
        return self.literal(node.value), kind

    def neg(self, node: Neg) -> tuple[ColumnElement[Any], Kind]:
        x, k = self.visit_open(node.operand)
        if k == NULL:
            return sa.null(), NULL
        if isinstance(k, Scaled):
            return self.typed(-x, k), k
        self.need(node, k, _NUMERIC, "unary -")
        out = self.typed(-self.wide(x, k), k)
        return (self.int_arith(out) if k == INT else out), k

    def comparison(self, node: Compare) -> tuple[ColumnElement[Any], Kind]:
        return self.compare(node.op, node.left, node.right, node)

    def is_null(self, node: IsNull) -> tuple[ColumnElement[Any], Kind]:
        x, _ = self.visit_open(node.operand)  # a REAL for an integer is not NULL either
        return (x.is_not(None) if node.negate else x.is_(None)), BOOL

    def boolop(self, node: BoolOp) -> tuple[ColumnElement[Any], Kind]:
        (a, ka), (b, kb) = self.visit(node.left), self.visit(node.right)
        self.need(node, ka, (BOOL, NULL), node.op)
        self.need(node, kb, (BOOL, NULL), node.op)
        return (sa.and_(a, b) if node.op == "and" else sa.or_(a, b)), BOOL

    def not_(self, node: Not) -> tuple[ColumnElement[Any], Kind]:
        x, k = self.visit(node.operand)
        self.need(node, k, (BOOL, NULL), "not")
        return sa.not_(x), BOOL

    def if_else(self, node: IfElse) -> tuple[ColumnElement[Any], Kind]:
        t, kt = self.visit(node.test)
        self.need(node, kt, (BOOL, NULL), "if")
        (a, b), kind = self.common(node, [node.body, node.orelse])
        return self.int_result(self.typed(sa.case((t, a), else_=b), kind), kind, [a, b]), kind

    def need(self, node: Node, kind: Kind, allowed: tuple[str, ...], what: str) -> None:
        if kind not in allowed:
            if kind == UNKNOWN:
                raise self.refuse(node, f"{what}: the SQL type of a column is unknown")
            if kind in _SQLITE_REFUSED:
                raise self.refuse(node, f"{what} on a {kind}")
            raise self.refuse(node, f"{what} on {kind} values is not pushed down")

    def typed(self, expr: ColumnElement[Any], kind: Kind) -> ColumnElement[Any]:
        if isinstance(kind, Scaled):
            return sa.type_coerce(expr, sa.BigInteger())  # the scaled integer K
        return sa.type_coerce(expr, _KIND_TYPES[kind]()) if kind in _KIND_TYPES else expr

    def wide(self, expr: ColumnElement[Any], kind: Kind) -> ColumnElement[Any]:
        """PostgreSQL integer arithmetic in BIGINT, as SQLite (and close to Python's unbounded ints)."""
        if kind == INT and self.pg and not isinstance(expr.type, sa.BigInteger):
            return sa.cast(expr, sa.BigInteger)
        return expr

    def numbers(
        self, node: Node, parts: Sequence[Node], what: str, visited: list[tuple[ColumnElement[Any], Kind]] | None = None
    ) -> tuple[list[ColumnElement[Any]], str]:
        """Operands of one numeric kind: float literals become Decimal beside Decimals."""
        visited = visited or [self.visit(p) for p in parts]
        kinds = {k for _, k in visited}
        if NULL in kinds:
            return [sa.null()], NULL
        for k in kinds:
            self.need(node, k, _NUMERIC, what)
        kind = DEC if DEC in kinds else FLOAT if FLOAT in kinds else INT
        out = []
        for part, (expr, k) in zip(parts, visited, strict=True):
            if kind == DEC and k == FLOAT:
                if not isinstance(part, Lit):
                    raise self.refuse(node, f"{what} mixing a NUMERIC and a float column rounds differently in SQL")
                expr = self.literal(part.value, DEC)
            out.append(self.wide(expr, k))
        return out, kind

    # ------------------------------------------------ the operators

    def arith(self, node: Arith) -> tuple[ColumnElement[Any], Kind]:
        visited = [self.visit_open(node.left), self.visit_open(node.right)]
        if any(k == NULL for _, k in visited):
            return sa.null(), NULL
        if any(isinstance(k, Scaled) for _, k in visited):
            return self.scaled_arith(node, [(self.used(e), k) for e, k in visited])
        (a, *rest), kind = self.numbers(node, [node.left, node.right], node.op, visited)
        b = rest[0]
        if kind != INT or node.op == "/":  # integers used by float or Decimal arithmetic
            for e, _ in visited:
                self.used(e)
        divisor = node.right.value if isinstance(node.right, Lit) else None
        if node.op in ("/", "//", "%") and (type(divisor) not in (int, float) or divisor == 0):
            raise self.refuse(node, f"'{node.op}' by a non-literal could divide by zero, a row error SQL cannot report")
        if node.op == "/":
            if kind == DEC:
                raise self.refuse(node, "'/' with NUMERIC rounds differently in SQL")
            num, den = sa.cast(a, sa.Double), sa.cast(b, sa.Double)
            return num.op("/", precedence=_DIV_PRECEDENCE, return_type=sa.Double)(den), FLOAT
        if node.op in ("//", "%"):
            if kind != INT:
                raise self.refuse(node, f"'{node.op}' is pushed down for integers only")
            a, b = sa.type_coerce(a, sa.BigInteger), sa.type_coerce(b, sa.BigInteger)
            floor_mod = (a % b + b) % b  # SQL's % truncates; Python's floors
            return self.int_arith(self.typed(floor_mod if node.op == "%" else (a - floor_mod) // b, INT)), INT
        # SQLAlchemy takes + and * as associative and drops the parentheses of a + (b + c); floats are not
        a, b = self.typed(a, kind), Grouping(self.typed(b, kind))
        out = a + b if node.op == "+" else a - b if node.op == "-" else a * b
        return (self.int_arith(self.typed(out, kind)) if kind == INT else self.typed(out, kind)), kind

    def text(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        return sa.collate(expr, "C" if self.pg else "BINARY")

    def compare(self, op: str, left: Node, right: Node, node: Node) -> tuple[ColumnElement[Any], Kind]:
        visited = [self.visit(left), self.visit(right)]
        (a, ka), (b, kb) = visited
        if NULL in (ka, kb):
            return sa.null(), NULL
        if isinstance(ka, Scaled) or isinstance(kb, Scaled):
            (a, b), _, _ = self.aligned(node, [left, right], visited, op)
        elif ka in _NUMERIC and kb in _NUMERIC:
            (a, b), _ = self.numbers(node, [left, right], op, visited)
        elif ka == kb == STR:
            a, b = self.text(a), self.text(b)
        elif not (ka == kb == BOOL and op in ("==", "!=")):
            raise self.refuse(node, f"comparing {ka} with {kb} is not pushed down")
        return _PY_OPERATORS[op](a, b), BOOL

    def in_list(self, node: InList) -> tuple[ColumnElement[Any], Kind]:
        x, k = self.visit(node.operand)
        kinds = {type(v) for v in node.values}
        values: list[ColumnElement[Any]]
        if isinstance(k, Scaled) and kinds <= {int, float}:
            lits = [_scaled_literal(v) for v in node.values]
            if k.maybe_int and float in kinds:
                raise self.refuse(node, "'in' with floats, on a value that is an int on some rows")
            if any(lit is None for lit in lits):
                raise self.refuse(node, "'in' with a value that is not finite")
            scale = max(k.scale, *(lit[1].scale for lit in lits if lit is not None))
            self.fits(node, Scaled(k.bound * 10 ** (scale - k.scale), scale), "'in'")
            if scale > k.scale:
                x = x * _int_sql(10 ** (scale - k.scale))
            values = [sa.literal(lit[0] * 10 ** (scale - lit[1].scale), sa.BigInteger()) for lit in lits if lit]
        elif k in _NUMERIC and kinds <= {int, float}:
            for v in node.values:
                if type(v) is int:
                    self.int64(node, v)
            values = [self.literal(v, DEC) for v in node.values] if k == DEC else [self.literal(v) for v in node.values]
        elif k == STR and kinds == {str}:
            x, values = self.text(x), [self.literal(v) for v in node.values]
        elif k == NULL:
            return sa.null(), NULL
        else:
            raise self.refuse(node, f"'in' on {k} values with {', '.join(sorted(t.__name__ for t in kinds))}")
        return (x.not_in(values) if node.negate else x.in_(values)), BOOL

    def common(self, node: Node, parts: Sequence[Node]) -> tuple[list[ColumnElement[Any]], Kind]:
        """Operands that SQL gives one type (CASE, COALESCE) without changing any value."""
        visited = [self.visit_open(p) for p in parts]
        kinds = {k for _, k in visited} - {NULL}
        if not kinds:
            return [e for e, _ in visited], NULL
        present = [(p, v) for p, v in zip(parts, visited, strict=True) if v[1] != NULL]
        kind: Kind
        if any(isinstance(k, Scaled) for k in kinds):
            if any(isinstance(p, Lit) and type(p.value) is float for p, _ in present):
                raise self.refuse(node, "a float mixed with a SQLite NUMERIC: a float on some rows of the row path")
            exprs, aligned, scale = self.aligned(node, [p for p, _ in present], [v for _, v in present], "mix")
            maybe_int = any(k.maybe_int for k in aligned)
            kind = self.fits(node, Scaled(max(k.bound for k in aligned), scale, maybe_int), "mix")
        elif kinds <= set(_NUMERIC):
            exprs, kind = self.numbers(node, [p for p, _ in present], "mix", [v for _, v in present])
        elif len(kinds) == 1 and kinds <= {STR, BOOL}:
            return [e for e, _ in visited], kinds.pop()
        else:
            raise self.refuse(node, f"values of kinds {', '.join(sorted(map(str, kinds)))} mixed")
        if kind != INT:  # integers mixed with floats or Decimals
            for e, _ in visited:
                self.used(e)
        it = iter(exprs)
        return [sa.null() if k == NULL else next(it) for _, k in visited], kind

    def int_literal(self, node: Node, minimum: int) -> ColumnElement[Any]:
        if not (isinstance(node, Lit) and type(node.value) is int and node.value >= minimum):
            raise self.refuse(node, f"pushed down only with an integer literal >= {minimum} here")
        self.int64(node, node.value)
        return sa.literal(node.value, sa.Integer())

    def call(self, node: Call) -> tuple[ColumnElement[Any], Kind]:
        whole = _SQL_CALLS.get(node.fn)
        if whole is not None:  # functions of all their arguments, NULL included
            return whole(self, node)
        x, k = self.visit_open(node.args[0]) if node.fn == "abs" else self.visit(node.args[0])
        if k == NULL:
            return sa.null(), NULL
        if isinstance(k, Scaled):
            return self.scaled_call(node, x, k)
        if node.fn in _SQL_TEXT_CALLS:
            self.need(node, k, (STR,), f"{node.fn}()")
            return _SQL_TEXT_CALLS[node.fn](self, node, x)
        return _SQL_VALUE_CALLS[node.fn](self, node, x, k)

    def f_coalesce(self, node: Call) -> tuple[ColumnElement[Any], Kind]:
        exprs, kind = self.common(node, node.args)
        return self.int_result(self.typed(sa.func.coalesce(*exprs), kind), kind, exprs), kind

    def f_nullif(self, node: Call) -> tuple[ColumnElement[Any], Kind]:
        (a, _), kind = self.common(node, node.args)
        eq, _ = self.compare("==", node.args[0], node.args[1], node)
        return self.int_result(self.typed(sa.case((eq, sa.null()), else_=a), kind), kind, [a]), kind

    def f_concat(self, node: Call) -> tuple[ColumnElement[Any], Kind]:
        parts = [self.visit(a) for a in node.args]
        if any(k == NULL for _, k in parts):
            return sa.null(), NULL
        for _, k in parts:
            self.need(node, k, (STR,), "concat()")
        out: ColumnElement[Any] = sa.type_coerce(parts[0][0], sa.String())
        for e, _ in parts[1:]:
            out = out.concat(e)
        return self.typed(out, STR), STR

    def f_int(self, node: Call, x: ColumnElement[Any], k: Kind) -> tuple[ColumnElement[Any], Kind]:
        self.need(node, k, _NUMERIC, "int()")
        if k == FLOAT:
            self.int_of_float(x)
        if k != INT and self.pg:
            x = sa.func.trunc(x)
        return self.typed(sa.cast(x, sa.BigInteger), INT), INT

    def f_float(self, node: Call, x: ColumnElement[Any], k: Kind) -> tuple[ColumnElement[Any], Kind]:
        self.need(node, k, _NUMERIC, "float()")
        return sa.cast(x, sa.Double), FLOAT

    def f_decimal(self, node: Call, x: ColumnElement[Any], k: Kind) -> tuple[ColumnElement[Any], Kind]:
        if not self.pg:
            raise self.refuse(node, "SQLite has no decimal type")
        self.need(node, k, (INT, DEC), "decimal()")
        return sa.cast(x, sa.Numeric), DEC

    def f_str(self, node: Call, x: ColumnElement[Any], k: Kind) -> tuple[ColumnElement[Any], Kind]:
        self.need(node, k, (INT, STR), "str()")
        return (x if k == STR else sa.cast(x, sa.Text)), STR

    def f_abs(self, node: Call, x: ColumnElement[Any], k: Kind) -> tuple[ColumnElement[Any], Kind]:
        self.need(node, k, _NUMERIC, "abs()")
        out = self.typed(sa.func.abs(self.wide(x, k)), k)  # SQLite raises for the smallest 64-bit integer
        return (self.int_arith(out) if k == INT else out), k

    def f_round(self, node: Call, x: ColumnElement[Any], k: Kind) -> tuple[ColumnElement[Any], Kind]:
        if k != DEC:
            raise self.refuse(node, "round() is pushed down for NUMERIC only")
        digits = [self.int_literal(node.args[1], -1000)] if len(node.args) > 1 else []
        return self.typed(sa.func.round(x, *digits), DEC), DEC

    def f_case(self, node: Call, x: ColumnElement[Any]) -> tuple[ColumnElement[Any], Kind]:
        return self.typed(getattr(sa.func, node.fn)(self.text(x) if self.pg else x), STR), STR

    def f_trim(self, node: Call, x: ColumnElement[Any]) -> tuple[ColumnElement[Any], Kind]:
        return self.typed(sa.func.btrim(x) if self.pg else sa.func.trim(x), STR), STR

    def f_length(self, node: Call, x: ColumnElement[Any]) -> tuple[ColumnElement[Any], Kind]:
        return self.typed(sa.func.char_length(x) if self.pg else sa.func.length(x), INT), INT

    def f_substr(self, node: Call, x: ColumnElement[Any]) -> tuple[ColumnElement[Any], Kind]:
        args = [self.int_literal(node.args[1], 1)]
        if len(node.args) == 3:
            args.append(self.int_literal(node.args[2], 0))
        return self.typed(sa.func.substr(x, *args), STR), STR

    def f_replace(self, node: Call, x: ColumnElement[Any]) -> tuple[ColumnElement[Any], Kind]:
        rest = [self.visit(a) for a in node.args[1:]]
        if any(rk == NULL for _, rk in rest):
            return sa.null(), NULL
        for _, rk in rest:
            self.need(node, rk, (STR,), "replace()")
        old, new = node.args[1:]
        if not (isinstance(old, Lit) and isinstance(new, Lit) and len(new.value) <= len(old.value)):
            raise self.refuse(node, "replace() that may lengthen the text is not pushed down (the row path "
                              f"fails a row whose result would pass {MAX_TEXT_LENGTH} characters)")
        return self.typed(sa.func.replace(x, *(e for e, _ in rest)), STR), STR


_SqlResult = tuple[ColumnElement[Any], Kind]
# checked-tree node type -> the _Sql method that compiles it
_TO_SQL: dict[type[Node], Callable[[_Sql, Any], _SqlResult]] = {
    Col: _Sql.col,
    Lit: _Sql.lit,
    Arith: _Sql.arith,
    Neg: _Sql.neg,
    Compare: _Sql.comparison,
    IsNull: _Sql.is_null,
    InList: _Sql.in_list,
    BoolOp: _Sql.boolop,
    Not: _Sql.not_,
    IfElse: _Sql.if_else,
    Call: _Sql.call,
}
# function name -> its SQL: of all the arguments (NULL handled by each) ...
_SQL_CALLS: dict[str, Callable[[_Sql, Call], _SqlResult]] = {
    "coalesce": _Sql.f_coalesce,
    "nullif": _Sql.f_nullif,
    "concat": _Sql.f_concat,
}
# ... of a first argument that is not NULL nor scaled ...
_SQL_VALUE_CALLS: dict[str, Callable[[_Sql, Call, ColumnElement[Any], Kind], _SqlResult]] = {
    "int": _Sql.f_int,
    "float": _Sql.f_float,
    "decimal": _Sql.f_decimal,
    "str": _Sql.f_str,
    "abs": _Sql.f_abs,
    "round": _Sql.f_round,
}
# ... and of a first argument that must be text
_SQL_TEXT_CALLS: dict[str, Callable[[_Sql, Call, ColumnElement[Any]], _SqlResult]] = {
    "lower": _Sql.f_case,
    "upper": _Sql.f_case,
    "trim": _Sql.f_trim,
    "length": _Sql.f_length,
    "substr": _Sql.f_substr,
    "replace": _Sql.f_replace,
}
