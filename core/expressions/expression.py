"""The compiled expression: one checked text, compiled to Python once and to SQL on demand."""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .checker import parse_expression
from .pycodegen import CodeGen, _load, guarded, in_row_context
from .tree import Node, _boolish

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement

    from .sqltypes import Kind


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
        from .sqlcodegen import _Sql  # here: the row path and the model's check never load SQLAlchemy
        from .sqltypes import Scaled

        sql = _Sql(cols, dialect_name, self.field)
        expr, kind = sql.visit(self.tree)
        if isinstance(kind, Scaled):  # the SQLite NUMERIC's value, not its scaled integer
            return sql.checked(sql.decimal_value(expr, kind)), kind
        return sql.checked(sql.typed(expr, kind)), kind

    def __repr__(self) -> str:
        return f"Expression({self.text!r}, field={self.field!r})"


def compile_expression(text: str, columns: Sequence[str], *, field: str) -> Expression:
    """Check and compile ``text`` over rows with ``columns``. ConfigError names ``field`` and the position."""
    tree, used = parse_expression(text, columns, field=field)
    return Expression(text, columns, field, tree, used)
