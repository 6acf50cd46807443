"""The safe expression language of ``filter`` and ``set`` steps, compiled once per run.

An expression is checked against an allow-list when a run starts and compiled
twice from the same checked tree: to a Python function over a row tuple (the
row path) and, on demand, to a SQLAlchemy Core expression (push-down). User
text is never ``eval``-ed: the Python function is generated from a vetted AST
in which columns are tuple indexes and literals are constants.

API::

    expr = compile_expression("int(row.amount * 100.0)", ["id", "amount"], field="spec.transform.2.set.cents")
    expr.python(row_tuple)            # -> value; raises RowError for a bad row (counted as a failed record)
    expr.to_sql({"amount": table.c.amount}, "postgresql")   # -> ColumnElement, or raises NotPushable(reason)
    expr.columns_used                 # -> ("amount",)

Errors in the text raise :class:`ConfigError` naming ``field`` and the position.

The language
------------
* columns: ``row.name`` or ``row['odd name']``; they must exist in the input columns;
* literals: integers, floats, strings, ``True``/``False``/``None`` (also ``true``/``false``/``null``);
* arithmetic ``+ - * / // %`` and unary ``-``; comparisons ``== != < <= > >=`` (chains too);
  ``is None`` / ``is not None``; ``in`` / ``not in`` a literal list or tuple; ``and``, ``or``, ``not``;
  ``a if cond else b``;
* the functions of :data:`FUNCTIONS`: int, float, str, decimal, round, abs, lower, upper, trim, length,
  coalesce, concat, substr, replace, nullif.

Semantics (the same on the row path and in SQL on PostgreSQL and SQLite)
-------------------------------------------------------------------------
* NULL propagates as in SQL: arithmetic, comparisons and functions with a ``None`` operand give
  ``None`` (``coalesce`` and ``nullif`` excepted); ``and``/``or``/``not`` are three-valued; a filter
  keeps a row only when its condition is ``True``; ``a if c else b`` takes ``b`` when ``c`` is None.
* ``int()`` truncates toward zero: on floats ``int(0.29 * 100.0) == 28``, on Decimal (PostgreSQL
  NUMERIC) ``int(Decimal('0.29') * 100.0) == 29``.
* Decimal mixed with float is Decimal arithmetic, the float converted through its shortest repr
  (``str``); ``+ - *`` on Decimals are exact. ``/`` gives a float for ints and floats (a Decimal
  with 28 significant digits if a Decimal takes part); ``//`` and ``%`` floor, as in Python
  (also for Decimals).
* Strings compare by code point (``COLLATE "C"`` on PostgreSQL, ``BINARY`` on SQLite); ``+`` does
  not concatenate (use ``concat()``); ``lower``/``upper`` change ASCII letters only, so results never
  depend on a database locale; ``trim`` removes spaces; ``substr`` is 1-based, as in SQL.
* Conditions are booleans; a 0/1 integer (SQLite's booleans) counts as false/true.
* A value error in one row (division by zero, ``int('x')``, text where a number is needed) raises
  :class:`RowError`; the pipeline counts that row as failed and goes on with the batch.

Push-down is exact or refused: where SQL cannot give the same value on every row (division by a
column, which could be zero; Decimal division; ``//`` on floats; ``round`` of floats; ``str`` of
floats; comparing a NUMERIC column with a float column...) :meth:`Expression.to_sql` raises
:class:`NotPushable` with the reason. Column kinds come from the SQLAlchemy types of the columns
given to ``to_sql`` (:func:`sql_kind`), which must be the types the row path reads with.

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
"""

from __future__ import annotations

import ast
import decimal
import operator
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import operators as sql_operators
from sqlalchemy.sql.elements import ColumnElement, Grouping

from .errors import ConfigError

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_LENGTH",
    "MAX_TEXT_LENGTH",
    "ROW_ERRORS",
    "CodeGen",
    "Expression",
    "NotPushable",
    "RowError",
    "check_expression",
    "compile_expression",
    "in_row_context",
    "row_error",
]

# Limits: every expression costs a bounded amount per row, whatever the data (README, "Limits").
# Text beyond these is refused when the manifest is validated; values beyond them fail the row.
MAX_LENGTH = 10_000  # characters of an expression's text
MAX_DEPTH = 60  # levels of the checked tree; each link of an and/or or comparison chain is one level
# Decimal digits of an integer that a literal, int() or '*' of two integers may make: Python's own limit
# for int <-> text (sys.int_info.default_max_str_digits), applied whatever the process sets it to.
# int(Decimal('1e999999999')) would otherwise build a billion-digit integer (minutes of CPU).
MAX_INT_DIGITS = 4300
# Characters of text a replace() that lengthens its input may make: nested, replace() grows exponentially
# (concat() adds lengths only, like every other function: bounded by the text and the row).
MAX_TEXT_LENGTH = 10_000_000
_INT_LIMIT = 10**MAX_INT_DIGITS  # |an integer| below this has at most MAX_INT_DIGITS digits
_INT_LIMIT_BITS = _INT_LIMIT.bit_length()
_HALF_INT = 10 ** (MAX_INT_DIGITS // 2)  # a product of two integers below this is below _INT_LIMIT


class RowError(Exception):
    """One row cannot be computed (division by zero, a bad value...): a failed record, not a failed run."""

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


class NotPushable(Exception):
    """The expression (or step) cannot be evaluated in SQL with exactly the row path's results."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# Exceptions that mean "this row is bad"; anything else is a bug and propagates.
ROW_ERRORS: tuple[type[BaseException], ...] = (RowError, TypeError, ValueError, ArithmeticError)


def row_error(field: str, err: BaseException) -> RowError:
    """The RowError for ``err`` raised while computing ``field`` for one row."""
    if isinstance(err, RowError):
        return err if err.field else RowError(err.reason, field=field)
    if isinstance(err, ZeroDivisionError):
        reason = "division by zero"
    elif isinstance(err, decimal.DecimalException):
        reason = f"invalid decimal operation ({type(err).__name__})"
    else:
        reason = str(err) or type(err).__name__
    return RowError(reason, field=field)


# --------------------------------------------------------------------------- the checked tree


@dataclass(frozen=True, slots=True)
class Col:
    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Lit:
    value: Any
    pos: int


@dataclass(frozen=True, slots=True)
class Arith:
    op: str  # + - * / // %
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # == != < <= > >=
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True, slots=True)
class IsNull:
    operand: Node
    negate: bool
    pos: int


@dataclass(frozen=True, slots=True)
class InList:
    operand: Node
    values: tuple[Any, ...]
    negate: bool
    pos: int


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # and | or
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node
    pos: int


@dataclass(frozen=True, slots=True)
class IfElse:
    test: Node
    body: Node
    orelse: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Call:
    fn: str
    args: tuple[Node, ...]
    pos: int


Node = Col | Lit | Arith | Neg | Compare | IsNull | InList | BoolOp | Not | IfElse | Call

# name -> (min args, max args)
FUNCTIONS: dict[str, tuple[int, int]] = {
    "int": (1, 1),
    "float": (1, 1),
    "str": (1, 1),
    "decimal": (1, 1),
    "round": (1, 2),
    "abs": (1, 1),
    "lower": (1, 1),
    "upper": (1, 1),
    "trim": (1, 1),
    "length": (1, 1),
    "coalesce": (2, 32),
    "concat": (2, 32),
    "substr": (2, 3),
    "replace": (3, 3),
    "nullif": (2, 2),
}
_BOOLISH_FUNCTIONS = {"coalesce", "nullif"}  # may return a condition when their arguments are conditions
_CONSTANTS = {"None": None, "null": None, "True": True, "true": True, "False": False, "false": False}
_ARITH = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%"}
_CMP = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_FORBIDDEN_NAMES = {
    ast.Lambda: "lambda",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions",
    ast.NamedExpr: "assignment expressions",
    ast.JoinedStr: "f-strings",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Starred: "unpacking",
    ast.Dict: "dict displays",
    ast.Set: "set displays",
    ast.Slice: "slices",
}


class _Checker:
    """ast (mode='eval') -> checked tree, refusing everything outside the allow-list."""

    def __init__(self, text: str, columns: Sequence[str] | None, field: str) -> None:
        self.text = text
        self.columns = list(columns or ())
        self.known = None if columns is None else set(columns)  # None: any column (checked at run time)
        self.field = field
        self.used: dict[str, None] = {}

    def fail(self, reason: str, node: ast.AST | None = None, *, list_columns: bool = False) -> ConfigError:
        at = f" at position {getattr(node, 'col_offset', 0) + 1}" if node is not None else ""
        cols = f" (columns: {', '.join(self.columns)})" if list_columns else ""
        return ConfigError(f"{reason}{at} in {self.text!r}{cols}", field=self.field)

    def check(self) -> Node:
        if len(self.text) > MAX_LENGTH:
            raise ConfigError(f"expression longer than {MAX_LENGTH} characters", field=self.field)
        if not self.text.strip():
            raise ConfigError("empty expression", field=self.field)
        try:
            tree = ast.parse(self.text.strip(), mode="eval")
        except SyntaxError as err:
            where = f" at position {err.offset}" if err.offset else ""
            raise ConfigError(f"invalid expression{where}: {err.msg} in {self.text!r}", field=self.field) from None
        except (RecursionError, MemoryError, ValueError, SystemError):  # SystemError: CPython 3.11 on deep trees
            raise ConfigError(f"expression cannot be parsed: {self.text[:80]!r}", field=self.field) from None
        return self.visit(tree.body, 0)

    def visit(self, node: ast.expr, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise self.fail(f"expression nested more than {MAX_DEPTH} levels deep", node)
        handler = _CHECKS.get(type(node))
        if handler is None:
            what = next((v for k, v in _FORBIDDEN_NAMES.items() if isinstance(node, k)), type(node).__name__)
            raise self.fail(f"{what} not allowed", node)
        return handler(self, node, depth + 1)

    def constant(self, node: ast.Constant, d: int) -> Node:
        if type(node.value) not in (int, float, str, bool, type(None)):
            raise self.fail(f"{type(node.value).__name__} literals are not allowed", node)
        if type(node.value) is int and node.value >= _INT_LIMIT:  # 0x/0b literals escape Python's own limit
            raise self.fail(f"integer literal of more than {MAX_INT_DIGITS} digits", node)
        return Lit(node.value, node.col_offset + 1)

    def name(self, node: ast.Name, d: int) -> Node:
        if node.id in _CONSTANTS:
            return Lit(_CONSTANTS[node.id], node.col_offset + 1)
        if node.id == "row":
            raise self.fail("'row' alone is not a value; write row.<column>", node)
        maybe_column = self.known is None or node.id in self.known
        hint = f"; did you mean row.{node.id}?" if maybe_column else "; columns are written row.<name>"
        raise self.fail(f"unknown name '{node.id}'{hint}", node)

    def attribute(self, node: ast.Attribute, d: int) -> Node:
        if not (isinstance(node.value, ast.Name) and node.value.id == "row"):
            raise self.fail("attribute access is not allowed (only row.<column>)", node)
        if node.attr.startswith("__"):
            raise self.fail(f"attribute access is not allowed: row.{node.attr}", node)
        return self.column(node.attr, node)

    def subscript(self, node: ast.Subscript, d: int) -> Node:
        key = node.slice
        if not (isinstance(node.value, ast.Name) and node.value.id == "row"):
            raise self.fail("subscripts are not allowed (only row['column'])", node)
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            raise self.fail("row[...] takes a column name in quotes", node)
        return self.column(key.value, node)

    def binop(self, node: ast.BinOp, d: int) -> Node:
        op = _ARITH.get(type(node.op))
        if op is None:
            raise self.fail(f"operator {_op_text(node.op)} is not allowed", node)
        left, right = self.visit(node.left, d), self.visit(node.right, d)
        for side in (left, right):
            if isinstance(side, Compare | IsNull | InList | BoolOp | Not):
                raise self.fail(f"arithmetic ({op}) on a condition", node)
        return Arith(op, left, right, node.col_offset + 1)

    def unaryop(self, node: ast.UnaryOp, d: int) -> Node:
        pos = node.col_offset + 1
        operand = self.visit(node.operand, d)
        if isinstance(node.op, ast.Not):
            self.condition(operand, node, "not")
            return Not(operand, pos)
        if isinstance(node.op, ast.USub | ast.UAdd):
            if isinstance(operand, Lit) and type(operand.value) in (int, float):
                return Lit(-operand.value if isinstance(node.op, ast.USub) else operand.value, pos)
            if isinstance(node.op, ast.USub):
                return Neg(operand, pos)
        raise self.fail(f"unary operator {_op_text(node.op)} is not allowed", node)

    def boolop(self, node: ast.BoolOp, d: int) -> Node:
        op = "and" if isinstance(node.op, ast.And) else "or"
        d = self.chain(node, d - 1, len(node.values) - 1)  # a and b and c is and(and(a, b), c)
        items = [self.visit(v, d) for v in node.values]
        for item, v in zip(items, node.values, strict=True):
            self.condition(item, v, op)
        out = items[0]
        for item in items[1:]:
            out = BoolOp(op, out, item, node.col_offset + 1)
        return out

    def ifexp(self, node: ast.IfExp, d: int) -> Node:
        test = self.visit(node.test, d)
        self.condition(test, node.test, "if")
        return IfElse(test, self.visit(node.body, d), self.visit(node.orelse, d), node.col_offset + 1)

    def sequence(self, node: ast.List | ast.Tuple, d: int) -> Node:
        raise self.fail("lists and tuples are only allowed after 'in'", node)

    def column(self, name: str, node: ast.AST) -> Col:
        if self.known is not None and name not in self.known:
            raise self.fail(f"unknown column '{name}'", node, list_columns=True)
        self.used[name] = None
        return Col(name, getattr(node, "col_offset", 0) + 1)

    def condition(self, item: Node, node: ast.AST, where: str) -> None:
        if _boolish(item) is False:
            raise self.fail(f"'{where}' needs a condition (true/false/None), not {_describe(item)}", node)

    def chain(self, node: ast.expr, depth: int, links: int) -> int:
        """The depth of the operands of a chain of ``links`` binary nodes (built left-nested)."""
        if depth + links > MAX_DEPTH:
            raise self.fail(f"expression nested more than {MAX_DEPTH} levels deep (a chain of {links + 1})", node)
        return depth + links

    def compare(self, node: ast.Compare, d: int) -> Node:
        pos = node.col_offset + 1
        d = self.chain(node, d, len(node.ops) - 1)  # a < b < c is (a < b) and (b < c)
        left = self.visit(node.left, d)
        parts: list[Node] = []
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.Is | ast.IsNot):
                if not (isinstance(right_node, ast.Constant | ast.Name) and _is_none(right_node)):
                    raise self.fail("'is' is only allowed as 'is None' / 'is not None'", node)
                parts.append(IsNull(left, isinstance(op, ast.IsNot), pos))
                right: Node = Lit(None, pos)
            elif isinstance(op, ast.In | ast.NotIn):
                if not isinstance(right_node, ast.Tuple | ast.List):
                    raise self.fail("'in' needs a literal list, like row.x in ('a', 'b')", node)
                values = tuple(self.visit(v, d) for v in right_node.elts)
                if not values:
                    raise self.fail("'in' needs at least one value", node)
                if not all(isinstance(v, Lit) for v in values):
                    raise self.fail("'in' only takes literal values", node)
                lits = tuple(v.value for v in values if isinstance(v, Lit))
                if any(v is None for v in lits):
                    raise self.fail("None in an 'in' list never matches; use 'is None'", node)
                parts.append(InList(left, lits, isinstance(op, ast.NotIn), pos))
                right = left  # 'in' cannot chain further meaningfully; keep the left operand
            else:
                sym = _CMP.get(type(op))
                if sym is None:  # pragma: no cover - every ast.cmpop is handled above
                    raise self.fail("comparison not allowed", node)
                right = self.visit(right_node, d)
                if sym in ("==", "!=") and (_is_none_lit(right) or _is_none_lit(left)):
                    word = "is not None" if sym == "!=" else "is None"
                    raise self.fail(f"comparing with None is always None; use '{word}'", node)
                parts.append(Compare(sym, left, right, pos))
            left = right
        out = parts[0]
        for part in parts[1:]:
            out = BoolOp("and", out, part, pos)
        return out

    def call(self, node: ast.Call, d: int) -> Node:
        if isinstance(node.func, ast.Attribute):
            raise self.fail(f"method calls are not allowed (.{node.func.attr}()); use the functions", node)
        if not isinstance(node.func, ast.Name):
            raise self.fail("only the built-in functions can be called", node)
        name = node.func.id
        if name not in FUNCTIONS:
            raise self.fail(f"unknown function '{name}' (functions: {', '.join(sorted(FUNCTIONS))})", node)
        if node.keywords:
            raise self.fail(f"{name}() takes no keyword arguments", node)
        lo, hi = FUNCTIONS[name]
        if not lo <= len(node.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise self.fail(f"{name}() takes {want} arguments, got {len(node.args)}", node)
        args = tuple(self.visit(a, d) for a in node.args)
        return Call(name, args, node.col_offset + 1)


# ast node type -> the _Checker method that checks it (children at depth + 1); any other type is refused
_CHECKS: dict[type[ast.AST], Callable[[_Checker, Any, int], Node]] = {
    ast.Constant: _Checker.constant,
    ast.Name: _Checker.name,
    ast.Attribute: _Checker.attribute,
    ast.Subscript: _Checker.subscript,
    ast.BinOp: _Checker.binop,
    ast.UnaryOp: _Checker.unaryop,
    ast.BoolOp: _Checker.boolop,
    ast.Compare: _Checker.compare,
    ast.IfExp: _Checker.ifexp,
    ast.Call: _Checker.call,
    ast.List: _Checker.sequence,
    ast.Tuple: _Checker.sequence,
}


def _op_text(op: ast.AST) -> str:
    return {
        ast.Pow: "**",
        ast.MatMult: "@",
        ast.BitAnd: "&",
        ast.BitOr: "|",
        ast.BitXor: "^",
        ast.LShift: "<<",
        ast.RShift: ">>",
        ast.Invert: "~",
        ast.UAdd: "+",
    }.get(type(op), type(op).__name__)


def _is_none(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None
    return isinstance(node, ast.Name) and node.id in ("None", "null")


def _is_none_lit(node: Node) -> bool:
    return isinstance(node, Lit) and node.value is None


def _boolish(node: Node) -> bool | None:
    """True: certainly a condition (or None); False: certainly not; None: known only at run time."""
    if isinstance(node, Compare | IsNull | InList | BoolOp | Not):
        return True
    if isinstance(node, Lit):
        return node.value is None or type(node.value) is bool
    if isinstance(node, Arith | Neg):
        return False
    if isinstance(node, IfElse):
        a, b = _boolish(node.body), _boolish(node.orelse)
        return False if False in (a, b) else (True if a and b else None)
    if isinstance(node, Call):
        if node.fn not in _BOOLISH_FUNCTIONS:
            return False
        kinds = [_boolish(a) for a in node.args]
        return False if False in kinds else (True if all(kinds) else None)
    return None  # a column


def _describe(node: Node) -> str:
    if isinstance(node, Lit):
        return f"the literal {node.value!r}"
    if isinstance(node, Call):
        return f"{node.fn}(...)"
    if isinstance(node, Arith | Neg):
        return "arithmetic"
    return "a value"


# --------------------------------------------------------------------------- run-time helpers (row path)

# Generated code runs in this Decimal context (entered once per batch): + - * on Decimals are exact
# up to 1000 significant digits (PostgreSQL NUMERIC is exact); / uses 28 significant digits.
_EXACT = decimal.Context(
    prec=1000,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
_DIVIDE = decimal.Context(prec=28, traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow])
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_OP_WORDS = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide", "//": "divide", "%": "take % of"}


def _name(v: Any) -> str:
    return "text" if type(v) is str else type(v).__name__


_FLOAT_DECIMALS: dict[float, Decimal] = {}


def _float_decimal(v: float) -> Decimal:
    # The shortest repr: Decimal(0.29) would be 0.28999999999999998002... Literals hit the cache.
    d = Decimal(repr(v))
    if len(_FLOAT_DECIMALS) < 4096:
        _FLOAT_DECIMALS[v] = d
    return d


def _to_decimal(v: Any) -> Decimal:
    t = type(v)
    if t is Decimal:
        return v  # type: ignore[no-any-return]
    if t is float:
        return _FLOAT_DECIMALS.get(v) or _float_decimal(v)
    if t is int:
        return Decimal(v)
    raise TypeError(f"expected a number, got {_name(v)}")


def _operand(v: Any) -> Any:
    t = type(v)
    if t is Decimal or t is int:
        return v
    if t is float:
        return _FLOAT_DECIMALS.get(v) or _float_decimal(v)
    raise TypeError


def _decimals(a: Any, b: Any, op: str) -> tuple[Any, Any]:
    """Operands for Decimal arithmetic (ints stay ints: the exact context takes them as they are)."""
    try:
        return _operand(a), _operand(b)
    except TypeError:
        raise TypeError(f"cannot {_OP_WORDS.get(op, op)} {_name(a)} and {_name(b)}") from None


def _exact_arith(op: Callable[[Any, Any], Any], symbol: str) -> Callable[[Any, Any], Any]:
    """+ - * with SQL's NULL propagation; Decimal beside float is Decimal arithmetic (exact in _EXACT)."""

    def arith(a: Any, b: Any) -> Any:
        ta, tb = type(a), type(b)
        if (ta is int or ta is float) and (tb is int or tb is float):
            return op(a, b)
        if ta is Decimal:
            if tb is Decimal or tb is int:
                return op(a, b)
            if tb is float:
                return op(a, _FLOAT_DECIMALS.get(b) or _float_decimal(b))
        elif tb is Decimal:
            if ta is int:
                return op(a, b)
            if ta is float:
                return op(_FLOAT_DECIMALS.get(a) or _float_decimal(a), b)
        if a is None or b is None:
            return None
        raise TypeError(f"cannot {_OP_WORDS[symbol]} {_name(a)} and {_name(b)}")

    return arith


_add = _exact_arith(operator.add, "+")
_sub = _exact_arith(operator.sub, "-")
_mul_numbers = _exact_arith(operator.mul, "*")


def _mul(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return _int_product(a, b)
    return _mul_numbers(a, b)


def _div(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return a / b  # ZeroDivisionError is a row error
    if a is None or b is None:
        return None
    x, y = _decimals(a, b, "/")
    if not y:
        raise ZeroDivisionError("division by zero")
    return _DIVIDE.divide(x, y)


def _floordiv(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return a // b
    if a is None or b is None:
        return None
    x, y = _decimals(a, b, "//")
    if not y:
        raise ZeroDivisionError("division by zero")
    q = Decimal(x) // y  # truncates toward zero; floor it
    if q * y != x and (x < 0) != (y < 0):
        q -= 1
    return q


def _mod(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return a % b
    if a is None or b is None:
        return None
    x, y = _decimals(a, b, "%")
    if not y:
        raise ZeroDivisionError("division by zero")
    r = Decimal(x) % y  # sign of the dividend; make it the divisor's, as Python does
    if r and (r < 0) != (y < 0):
        r += y
    return r


def _neg(a: Any) -> Any:
    t = type(a)
    if t is int or t is float:
        return -a
    if a is None:
        return None
    if t is Decimal:
        return -a
    raise TypeError(f"cannot negate {_name(a)}")


def _comparable(a: Any, b: Any) -> tuple[Any, Any]:
    ta, tb = type(a), type(b)
    if ta is not tb and (ta is Decimal or tb is Decimal):
        return _decimals(a, b, "compare")
    return a, b


def _comparison(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], bool | None]:
    """A comparison with SQL's NULL propagation; Decimal beside float compares as Decimals."""

    def compare(a: Any, b: Any) -> bool | None:
        if a is None or b is None:
            return None
        a, b = _comparable(a, b)
        return bool(op(a, b))

    return compare


_eq, _ne = _comparison(operator.eq), _comparison(operator.ne)
_lt, _le = _comparison(operator.lt), _comparison(operator.le)
_gt, _ge = _comparison(operator.gt), _comparison(operator.ge)


def _truth(v: Any) -> bool | None:
    if v is True or v is False or v is None:
        return v
    if type(v) is int and (v == 0 or v == 1):
        return v == 1
    raise TypeError(f"expected a condition (true/false/None), got {_name(v)} {v!r}"[:200])


def _in(v: Any, values: tuple[Any, ...] | frozenset[Any], decimals: tuple[Any, ...], negate: bool) -> bool | None:
    if v is None:
        return None
    found = v in decimals if type(v) is Decimal else v in values
    return found is not negate


def _text(v: Any, fn: str) -> str:
    if type(v) is not str:
        raise TypeError(f"{fn}() expects text, got {_name(v)}")
    return v


def _number_function(
    name: str,
    own: type,
    converted: tuple[type, ...],
    convert: Callable[[Any], Any],
    pattern: re.Pattern[str],
    parse: Callable[[str], Any],
) -> Callable[[Any], Any]:
    """int()/float()/decimal(): numbers convert (int truncates toward zero); text must be a plain number."""

    def fn(x: Any) -> Any:
        t = type(x)
        if t is own or x is None:
            return x
        if t in converted:
            return convert(x)  # int(inf/nan) raises: a row error
        if t is str and pattern.fullmatch(s := x.strip()):
            return parse(s)
        raise ValueError(f"{name}() of {_name(x)} {x!r}"[:200]) if t is str else TypeError(f"{name}() of {_name(x)}")

    return fn


def _too_many_digits(fn: str, x: Any) -> ValueError:
    shown = str(x) if type(x) is Decimal else repr(x[:40] + "...") if len(x) > 40 else repr(x)
    return ValueError(f"{fn}() of {_name(x)} {shown}"[:120] + f": more than {MAX_INT_DIGITS} digits")


def _int_of_number(x: Any) -> int:
    """int() truncating a float, Decimal or bool; a Decimal's integer part of more than MAX_INT_DIGITS
    digits is refused before it is built (int(Decimal('1e999999999')) would take minutes)."""
    if type(x) is Decimal and x.is_finite() and x.adjusted() >= MAX_INT_DIGITS:
        raise _too_many_digits("int", x)
    return int(x)


def _int_of_text(s: str) -> int:
    """A plain integer's text (matched by _INTEGER); at most MAX_INT_DIGITS significant digits, checked
    here rather than by the interpreter, whose limit a process may lift (PYTHONINTMAXSTRDIGITS=0)."""
    if len(s) > MAX_INT_DIGITS:
        digits = s.lstrip("+-").lstrip("0")  # leading zeros count for Python's limit, not for ours
        if len(digits) > MAX_INT_DIGITS:
            raise _too_many_digits("int", s)
        s = ("-" if s.startswith("-") else "") + (digits or "0")
    return int(s)


def _int_product(a: int, b: int) -> int:
    """a * b of two integers, refused (before computing it) beyond MAX_INT_DIGITS digits: a chain of
    products of columns would otherwise grow without bound."""
    if a.bit_length() + b.bit_length() - 1 > _INT_LIMIT_BITS or (p := a * b) <= -_INT_LIMIT or p >= _INT_LIMIT:
        raise ValueError(f"the product of two integers has more than {MAX_INT_DIGITS} digits")
    return p


_f_int = _number_function("int", int, (float, Decimal, bool), _int_of_number, _INTEGER, _int_of_text)
_f_float = _number_function("float", float, (int, Decimal), float, _NUMBER, float)
_f_decimal = _number_function("decimal", Decimal, (int, float), _to_decimal, _NUMBER, Decimal)


def _f_str(x: Any) -> Any:
    t = type(x)
    if t is str or x is None:
        return x
    if t is bool:
        return "true" if x else "false"
    if t is float:
        return repr(x)
    return str(x)


def _f_round(x: Any, n: Any = 0) -> Any:
    if x is None or n is None:
        return None
    if type(n) is not int:
        raise TypeError(f"round() digits must be an integer, got {_name(n)}")
    t = type(x)
    if t is Decimal:  # half away from zero, as SQL's round(numeric)
        return x.quantize(Decimal(1).scaleb(-n), rounding=decimal.ROUND_HALF_UP, context=_EXACT)
    if t is int and n < 0 and -n > x.bit_length() * 0.30103 + 2:
        return 0  # |x| < 10**-n / 2; Python's round() would build 10**-n first (minutes for n = -10**11)
    if t is int or t is float:
        return round(x, n)  # Python's: half to even on the binary value
    raise TypeError(f"round() of {_name(x)}")


def _f_abs(x: Any) -> Any:
    t = type(x)
    if t is int or t is float:
        return abs(x)
    if x is None:
        return None
    if t is Decimal:
        return abs(x)
    raise TypeError(f"abs() of {_name(x)}")


def _f_lower(s: Any) -> Any:
    return None if s is None else _text(s, "lower").translate(_ASCII_LOWER)


def _f_upper(s: Any) -> Any:
    return None if s is None else _text(s, "upper").translate(_ASCII_UPPER)


def _f_trim(s: Any) -> Any:
    return None if s is None else _text(s, "trim").strip(" ")


def _f_length(s: Any) -> Any:
    return None if s is None else len(_text(s, "length"))


def _f_concat(*parts: Any) -> Any:
    if None in parts:
        return None
    return "".join(_text(p, "concat") for p in parts)


def _f_substr(s: Any, start: Any, length: Any = 0, has_length: bool = False) -> Any:
    if s is None or start is None or length is None:
        return None
    _text(s, "substr")
    if type(start) is not int or type(length) is not int:
        raise TypeError("substr() positions must be integers")
    begin = max(start, 1)
    if not has_length:
        return s[begin - 1 :]
    if length < 0:
        raise ValueError("substr() length must not be negative")
    end = start + length  # exclusive, 1-based: the SQL window [start, start + length)
    return s[begin - 1 : end - 1] if end > begin else ""


def _f_replace(s: Any, old: Any, new: Any) -> Any:
    if s is None or old is None or new is None:
        return None
    for part in (s, old, new):
        _text(part, "replace")
    if not old:
        return s
    if len(new) > len(old) and len(s) + len(s) // len(old) * (len(new) - len(old)) > MAX_TEXT_LENGTH:
        length = len(s) + s.count(old) * (len(new) - len(old))
        if length > MAX_TEXT_LENGTH:  # nested replace() would grow exponentially; one that does not lengthen
            # the text never fails (SQL computes only those: push-down and the row path agree)
            raise ValueError(f"replace() would make text of {length} characters (more than {MAX_TEXT_LENGTH})")
    return s.replace(old, new)


def _f_nullif(a: Any, b: Any) -> Any:
    return None if a is None or _eq(a, b) is True else a


_HELPERS: dict[str, Any] = {
    name: obj for name, obj in globals().items() if name.startswith("_f_") and callable(obj)
} | {
    "_in": _in,
    "_truth": _truth,
    "_add": _add,
    "_sub": _sub,
    "_mul": _mul,
    "_div": _div,
    "_floordiv": _floordiv,
    "_mod": _mod,
    "_neg": _neg,
    "_eq": _eq,
    "_ne": _ne,
    "_lt": _lt,
    "_le": _le,
    "_gt": _gt,
    "_ge": _ge,
    "_ROW_ERRORS": ROW_ERRORS,
    "_Decimal": Decimal,
    "_int": int,
    "_type": type,
    "_float": float,
    "_localcontext": decimal.localcontext,
    "_EXACT": _EXACT,
    "_HALF_INT": _HALF_INT,
    "_MINUS_HALF_INT": -_HALF_INT,
    "_row_error": row_error,
    "__builtins__": {},
}
_ARITH_HELPER = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "//": "_floordiv", "%": "_mod"}
_PY_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_CMP_HELPER = {"==": "_eq", "!=": "_ne", "<": "_lt", "<=": "_le", ">": "_gt", ">=": "_ge"}
_CMP_AST: dict[str, type[ast.cmpop]] = {
    "==": ast.Eq,
    "!=": ast.NotEq,
    "<": ast.Lt,
    "<=": ast.LtE,
    ">": ast.Gt,
    ">=": ast.GtE,
}


# --------------------------------------------------------------------------- Python code generation


def _load(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Load())


def _call(fn: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_load(fn), args=list(args), keywords=[])


def _is(left: ast.expr, value: Any, negate: bool = False) -> ast.expr:
    if isinstance(left, ast.Constant):  # '1 is None': folded (compiling it would print a SyntaxWarning)
        return ast.Constant((left.value is value) != negate)
    return ast.Compare(left=left, ops=[ast.IsNot() if negate else ast.Is()], comparators=[ast.Constant(value)])


def _ifexp(test: ast.expr, body: ast.expr, orelse: ast.expr) -> ast.IfExp:
    return ast.IfExp(test=test, body=body, orelse=orelse)


class CodeGen:
    """Builds the AST of one generated function: temporaries and constants are its own.

    ``column(name)`` gives the AST that loads a column (``r[3]`` or a local variable).
    """

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = dict(_HELPERS)
        self._n = 0

    def temp(self) -> str:
        self._n += 1
        return f"_t{self._n}"

    def const(self, value: Any) -> ast.expr:
        if type(value) in (int, float, str, bool, type(None)):
            return ast.Constant(value)
        self._n += 1
        name = f"_k{self._n}"
        self.namespace[name] = value
        return _load(name)

    def _walrus(self, value: ast.expr) -> tuple[ast.NamedExpr, ast.Name]:
        name = self.temp()
        return ast.NamedExpr(target=ast.Name(id=name, ctx=ast.Store()), value=value), _load(name)

    def condition(self, node: Node, column: Callable[[str], ast.expr]) -> ast.expr:
        """Code for ``node`` as a condition: True, False or None (checked at run time if needed)."""
        code = self.expr(node, column)
        return code if _boolish(node) is True else _call("_truth", code)

    def expr(self, node: Node, column: Callable[[str], ast.expr]) -> ast.expr:
        return _GENERATE[type(node)](self, node, column)

    def col(self, node: Col, column: Callable[[str], ast.expr]) -> ast.expr:
        return column(node.name)

    def lit(self, node: Lit, column: Callable[[str], ast.expr]) -> ast.expr:
        return ast.Constant(node.value)

    def binary(self, node: Arith, column: Callable[[str], ast.expr]) -> ast.expr:
        if node.op in ("+", "-", "*"):
            return self.arith(node, column)
        return _call(_ARITH_HELPER[node.op], self.expr(node.left, column), self.expr(node.right, column))

    def neg(self, node: Neg, column: Callable[[str], ast.expr]) -> ast.expr:
        return _call("_neg", self.expr(node.operand, column))

    def is_null(self, node: IsNull, column: Callable[[str], ast.expr]) -> ast.expr:
        return _is(self.expr(node.operand, column), None, negate=node.negate)

    def in_list(self, node: InList, column: Callable[[str], ast.expr]) -> ast.expr:
        values = frozenset(node.values) if all(type(v) is str for v in node.values) else node.values
        decimals = tuple(_to_decimal(v) if type(v) in (int, float) else v for v in node.values)
        return _call(
            "_in", self.expr(node.operand, column), self.const(values), self.const(decimals), ast.Constant(node.negate)
        )

    def not_(self, node: Not, column: Callable[[str], ast.expr]) -> ast.expr:
        bind, t = self._walrus(self.condition(node.operand, column))
        return _ifexp(_is(bind, None), ast.Constant(None), ast.UnaryOp(op=ast.Not(), operand=t))

    def if_else(self, node: IfElse, column: Callable[[str], ast.expr]) -> ast.expr:
        test = _is(self.condition(node.test, column), True)
        return _ifexp(test, self.expr(node.body, column), self.expr(node.orelse, column))

    def _is_number(self, kind: ast.expr, *, with_int: bool = True) -> ast.BoolOp:
        """``kind is _Decimal or kind is int or kind is float`` (kind: a loaded temporary)."""
        names = ("_Decimal", "_int", "_float") if with_int else ("_Decimal", "_float")
        return ast.BoolOp(op=ast.Or(), values=[
            ast.Compare(left=kind, ops=[ast.Is()], comparators=[_load(n)]) for n in names
        ])

    def arith(self, node: Arith, column: Callable[[str], ast.expr]) -> ast.expr:
        """+ - * without a helper call where Python's operator already has our semantics.

        Beside an int literal, a Decimal, int or float operand computes with Python's operator (exact
        for Decimals in the row context); two operands of the same numeric type likewise. Anything
        else (None, a float beside a Decimal, text...) goes through the helper, as before.
        """
        op = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult}[node.op]()
        helper = _ARITH_HELPER[node.op]
        lit = next((s for s in (node.right, node.left) if isinstance(s, Lit) and type(s.value) is int), None)
        if lit is not None:
            other = node.left if lit is node.right else node.right
            bind, t = self._walrus(self.expr(other, column))
            kind_bind, kind = self._walrus(_call("_type", bind))
            pair = (t, ast.Constant(lit.value)) if lit is node.right else (ast.Constant(lit.value), t)
            test = ast.BoolOp(op=ast.Or(), values=[
                ast.Compare(left=kind_bind, ops=[ast.Is()], comparators=[_load("_Decimal")]),
                ast.Compare(left=kind, ops=[ast.Is()], comparators=[_load("_int")]),
                ast.Compare(left=kind, ops=[ast.Is()], comparators=[_load("_float")]),
            ])
            return _ifexp(test, ast.BinOp(left=pair[0], op=op, right=pair[1]), _call(helper, *pair))
        bind_a, a = self._walrus(self.expr(node.left, column))
        bind_b, b = self._walrus(self.expr(node.right, column))
        kind_bind, kind = self._walrus(_call("_type", bind_a))
        same = ast.Compare(left=kind_bind, ops=[ast.Is()], comparators=[_call("_type", bind_b)])
        number = self._is_number(kind, with_int=node.op != "*")
        if node.op == "*":  # int * int inline only when the product is certainly within MAX_INT_DIGITS
            half = [ast.Compare(left=_load("_MINUS_HALF_INT"), ops=[ast.Lt(), ast.Lt()],
                                comparators=[x, _load("_HALF_INT")]) for x in (a, b)]
            small = ast.BoolOp(op=ast.And(), values=[
                ast.Compare(left=kind, ops=[ast.Is()], comparators=[_load("_int")]), *half
            ])
            number = ast.BoolOp(op=ast.Or(), values=[*number.values, small])
        test = ast.BoolOp(op=ast.And(), values=[same, number])
        return _ifexp(test, ast.BinOp(left=a, op=op, right=b), _call(helper, a, b))

    def compare(self, node: Compare, column: Callable[[str], ast.expr]) -> ast.expr:
        left, right = node.left, node.right
        if _is_none_lit(left) or _is_none_lit(right):
            return ast.Constant(None)
        # Against an int/str/bool literal Python's own operator has our semantics (exact int/Decimal/float
        # comparison); anything else may mix Decimal and float and goes through the helper.
        lit, other, flipped = (right, left, False) if isinstance(right, Lit) else (left, right, True)
        if isinstance(lit, Lit) and type(lit.value) in (int, str, bool):
            bind, t = self._walrus(self.expr(other, column))
            lhs, rhs = (ast.Constant(lit.value), t) if flipped else (t, ast.Constant(lit.value))
            test = ast.Compare(left=lhs, ops=[_CMP_AST[node.op]()], comparators=[rhs])
            return _ifexp(_is(bind, None), ast.Constant(None), test)
        return _call(_CMP_HELPER[node.op], self.expr(left, column), self.expr(right, column))

    def boolop(self, node: BoolOp, column: Callable[[str], ast.expr]) -> ast.expr:
        """Kleene logic, each side evaluated at most once, the right side only when it can matter.

        and: ``False if (a := A) is False else (False if (b := B) is False else (b if a is True else None))``
        (or: the same with True and False swapped).
        """
        stop = node.op == "or"  # 'or' stops at True, 'and' at False
        bind_a, a = self._walrus(self.condition(node.left, column))
        bind_b, b = self._walrus(self.condition(node.right, column))
        inner = _ifexp(_is(bind_b, stop), ast.Constant(stop), _ifexp(_is(a, not stop), b, ast.Constant(None)))
        return _ifexp(_is(bind_a, stop), ast.Constant(stop), inner)

    def call(self, node: Call, column: Callable[[str], ast.expr]) -> ast.expr:
        args = [self.expr(a, column) for a in node.args]
        if node.fn == "coalesce":  # lazy: later arguments are only computed when needed
            out: ast.expr = args[-1]
            for arg in reversed(args[:-1]):
                bind, t = self._walrus(arg)
                out = _ifexp(_is(bind, None, negate=True), t, out)
            return out
        if node.fn in ("int", "float"):  # int(Decimal) truncates, float(Decimal) rounds: the builtins
            own, other = ("int", "float") if node.fn == "int" else ("float", "int")
            bind, t = self._walrus(args[0])
            kind_bind, kind = self._walrus(_call("_type", bind))
            # the builtin for float -> int (at most 309 digits) and int/Decimal -> float; int(Decimal) is
            # bounded by the helper (MAX_INT_DIGITS)
            convert: ast.expr = ast.Compare(left=kind, ops=[ast.Is()], comparators=[_load(f"_{other}")])
            if node.fn == "float":
                convert = ast.BoolOp(op=ast.Or(), values=[
                    ast.Compare(left=kind, ops=[ast.Is()], comparators=[_load("_Decimal")]), convert
                ])
            fallback = _ifexp(convert, _call(f"_{node.fn}", t), _call(f"_f_{node.fn}", t))
            return _ifexp(ast.Compare(left=kind_bind, ops=[ast.Is()], comparators=[_load(f"_{own}")]), t, fallback)
        if node.fn == "substr":
            has_length = len(args) == 3
            if not has_length:
                args.append(ast.Constant(0))
            args.append(ast.Constant(has_length))
        return _call(f"_f_{node.fn}", *args)

    def compile(self, body: list[ast.stmt], name: str, args: Sequence[str], filename: str) -> Callable[..., Any]:
        fn = ast.FunctionDef(
            name=name,
            args=ast.arguments(
                posonlyargs=[], args=[ast.arg(arg=a) for a in args], kwonlyargs=[], kw_defaults=[], defaults=[]
            ),
            body=body,
            decorator_list=[],
            returns=None,
        )
        if sys.version_info >= (3, 12):  # a required field from 3.12 on (typeshed knows it only there)
            fn.type_params = []
        module = ast.fix_missing_locations(ast.Module(body=[fn], type_ignores=[]))
        namespace = dict(self.namespace)
        exec(compile(module, filename, "exec"), namespace)  # a generated, vetted AST; never user text
        return namespace[name]  # type: ignore[no-any-return]


# checked-tree node type -> the CodeGen method that generates its Python code
_GENERATE: dict[type[Node], Callable[[CodeGen, Any, Callable[[str], ast.expr]], ast.expr]] = {
    Col: CodeGen.col,
    Lit: CodeGen.lit,
    Arith: CodeGen.binary,
    Neg: CodeGen.neg,
    Compare: CodeGen.compare,
    IsNull: CodeGen.is_null,
    InList: CodeGen.in_list,
    Not: CodeGen.not_,
    BoolOp: CodeGen.boolop,
    IfElse: CodeGen.if_else,
    Call: CodeGen.call,
}


def in_row_context(body: list[ast.stmt]) -> ast.With:
    """``with _localcontext(_EXACT): body`` -- the Decimal context every generated computation runs in."""
    return ast.With(items=[ast.withitem(context_expr=_call("_localcontext", _load("_EXACT")))], body=body)


def guarded(value: ast.expr, field: str) -> ast.Try:
    """``try: return value``, turning row-level exceptions into RowError naming ``field``."""
    stmt = ast.Return(value=value)
    handler = ast.ExceptHandler(
        type=_load("_ROW_ERRORS"),
        name="e",
        body=[ast.Raise(exc=_call("_row_error", ast.Constant(field), _load("e")), cause=ast.Constant(None))],
    )
    return ast.Try(body=[stmt], handlers=[handler], orelse=[], finalbody=[])


# --------------------------------------------------------------------------- SQL compilation

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
_DIV_PRECEDENCE = sql_operators._PRECEDENCE[sql_operators.truediv]
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


class _Sql:
    def __init__(self, cols: Mapping[str, ColumnElement[Any]], dialect: str, field: str) -> None:
        if dialect not in PUSHDOWN_DIALECTS:
            raise NotPushable(f"{field}: expressions are pushed down only on {' and '.join(PUSHDOWN_DIALECTS)}")
        self.cols = cols
        self.pg = dialect == "postgresql"
        self.dialect = dialect
        self.field = field

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
        expr, kind = self._visit(node)
        return (sa.null(), NULL) if kind == NULL else (expr, kind)  # an untyped NULL fits every context

    def _visit(self, node: Node) -> tuple[ColumnElement[Any], Kind]:
        return _TO_SQL[type(node)](self, node)

    def col(self, node: Col) -> tuple[ColumnElement[Any], Kind]:
        if node.name not in self.cols:
            raise self.refuse(node, f"column '{node.name}' is not available in SQL")
        col = self.cols[node.name]
        kind = sql_kind(col.type, self.dialect)
        if isinstance(kind, Scaled):
            return self.scaled_column(col, kind), kind
        return col, kind

    def lit(self, node: Lit) -> tuple[ColumnElement[Any], Kind]:
        kind = NULL if node.value is None else {bool: BOOL, int: INT, float: FLOAT, str: STR}[type(node.value)]
        return self.literal(node.value), kind

    def neg(self, node: Neg) -> tuple[ColumnElement[Any], Kind]:
        x, k = self.visit(node.operand)
        if k == NULL:
            return sa.null(), NULL
        if isinstance(k, Scaled):
            return self.typed(-x, k), k
        self.need(node, k, _NUMERIC, "unary -")
        return self.typed(-self.wide(x, k), k), k

    def comparison(self, node: Compare) -> tuple[ColumnElement[Any], Kind]:
        return self.compare(node.op, node.left, node.right, node)

    def is_null(self, node: IsNull) -> tuple[ColumnElement[Any], Kind]:
        x, _ = self.visit(node.operand)
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
        return self.typed(sa.case((t, a), else_=b), kind), kind

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

    # ------------------------------------------------ the operators

    def arith(self, node: Arith) -> tuple[ColumnElement[Any], Kind]:
        visited = [self.visit(node.left), self.visit(node.right)]
        if any(k == NULL for _, k in visited):
            return sa.null(), NULL
        if any(isinstance(k, Scaled) for _, k in visited):
            return self.scaled_arith(node, visited)
        (a, *rest), kind = self.numbers(node, [node.left, node.right], node.op, visited)
        b = rest[0]
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
            return self.typed(floor_mod if node.op == "%" else (a - floor_mod) // b, INT), INT
        # SQLAlchemy takes + and * as associative and drops the parentheses of a + (b + c); floats are not
        a, b = self.typed(a, kind), Grouping(self.typed(b, kind))
        out = a + b if node.op == "+" else a - b if node.op == "-" else a * b
        return self.typed(out, kind), kind

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
        visited = [self.visit(p) for p in parts]
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
        it = iter(exprs)
        return [sa.null() if k == NULL else next(it) for _, k in visited], kind

    def int_literal(self, node: Node, minimum: int) -> ColumnElement[Any]:
        if not (isinstance(node, Lit) and type(node.value) is int and node.value >= minimum):
            raise self.refuse(node, f"pushed down only with an integer literal >= {minimum} here")
        return sa.literal(node.value, sa.Integer())

    def call(self, node: Call) -> tuple[ColumnElement[Any], Kind]:
        whole = _SQL_CALLS.get(node.fn)
        if whole is not None:  # functions of all their arguments, NULL included
            return whole(self, node)
        x, k = self.visit(node.args[0])
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
        return self.typed(sa.func.coalesce(*exprs), kind), kind

    def f_nullif(self, node: Call) -> tuple[ColumnElement[Any], Kind]:
        (a, _), kind = self.common(node, node.args)
        eq, _ = self.compare("==", node.args[0], node.args[1], node)
        return self.typed(sa.case((eq, sa.null()), else_=a), kind), kind

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
        return self.typed(sa.func.abs(self.wide(x, k)), k), k

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


# --------------------------------------------------------------------------- the compiled expression


class Expression:
    """One checked expression, compiled to Python once; to SQL on demand."""

    def __init__(self, text: str, columns: Sequence[str], field: str, tree: Node, used: Sequence[str]) -> None:
        self.text = text
        self.field = field
        self.input_columns = tuple(columns)
        self.tree = tree
        self.columns_used: tuple[str, ...] = tuple(used)
        index = {name: i for i, name in enumerate(self.input_columns)}
        gen = CodeGen()

        def column(name: str) -> ast.expr:
            return ast.Subscript(value=_load("r"), slice=ast.Constant(index[name]), ctx=ast.Load())

        body: list[ast.stmt] = [in_row_context([guarded(gen.expr(tree, column), field)])]
        self.python: Callable[[tuple[Any, ...]], Any] = gen.compile(body, "expression", ["r"], f"<{field}>")

    @property
    def is_condition(self) -> bool | None:
        """True if certainly a condition, False if certainly not, None if it depends on a column."""
        return _boolish(self.tree)

    def to_sql(self, cols: Mapping[str, ColumnElement[Any]], dialect_name: str) -> ColumnElement[Any]:
        """The SQLAlchemy expression over ``cols`` (name -> column or expression); NotPushable if inexact."""
        return self.to_sql_kind(cols, dialect_name)[0]

    def to_sql_kind(self, cols: Mapping[str, ColumnElement[Any]], dialect_name: str) -> tuple[ColumnElement[Any], Kind]:
        sql = _Sql(cols, dialect_name, self.field)
        expr, kind = sql.visit(self.tree)
        if isinstance(kind, Scaled):  # the SQLite NUMERIC's value, not its scaled integer
            return sql.decimal_value(expr, kind), kind
        return sql.typed(expr, kind), kind

    def __repr__(self) -> str:
        return f"Expression({self.text!r}, field={self.field!r})"


def parse_expression(text: str, columns: Sequence[str] | None, *, field: str) -> tuple[Node, tuple[str, ...]]:
    """Check ``text`` against the allow-list; the tree and the columns it uses (``columns`` None: any)."""
    if not isinstance(text, str):
        raise ConfigError(f"expected an expression (text), got {type(text).__name__}", field=field)
    checker = _Checker(text, columns, field)
    tree = checker.check()
    return tree, tuple(checker.used)


def check_expression(text: str, *, field: str) -> None:
    """The syntax and the allow-list of ``text``, before any run (the model's validation): ConfigError
    naming ``field`` and the position. Its columns are checked when a run knows the table."""
    parse_expression(text, None, field=field)


def compile_expression(text: str, columns: Sequence[str], *, field: str) -> Expression:
    """Check and compile ``text`` over rows with ``columns``. ConfigError names ``field`` and the position."""
    tree, used = parse_expression(text, columns, field=field)
    return Expression(text, columns, field, tree, used)
