"""The checked tree of an expression (what the checker makes of the text, what both code generators
read), the limits every expression is held to, and the errors of the language."""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from typing import Any

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
