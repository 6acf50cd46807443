"""Text -> checked tree: the allow-list. Everything the language does not name is refused with a
ConfigError naming the field and the position."""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigError
from .tree import (
    _INT_LIMIT,
    FUNCTIONS,
    MAX_DEPTH,
    MAX_INT_DIGITS,
    MAX_LENGTH,
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
    _boolish,
    _is_none_lit,
)

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


def _describe(node: Node) -> str:
    if isinstance(node, Lit):
        return f"the literal {node.value!r}"
    if isinstance(node, Call):
        return f"{node.fn}(...)"
    if isinstance(node, Arith | Neg):
        return "arithmetic"
    return "a value"


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
