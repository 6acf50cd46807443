"""Checked tree -> the AST of a Python function over a row tuple (the row path). Columns are tuple
indexes or locals, literals are constants: user text is never ``eval``-ed."""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .runtime import _HELPERS, _to_decimal
from .tree import (
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

_ARITH_HELPER = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "//": "_floordiv", "%": "_mod"}
_CMP_HELPER = {"==": "_eq", "!=": "_ne", "<": "_lt", "<=": "_le", ">": "_gt", ">=": "_ge"}
_CMP_AST: dict[str, type[ast.cmpop]] = {
    "==": ast.Eq,
    "!=": ast.NotEq,
    "<": ast.Lt,
    "<=": ast.LtE,
    ">": ast.Gt,
    ">=": ast.GtE,
}


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
