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

SQLite NUMERIC columns are computed exactly as scaled integers: see :mod:`.sqlite`.

The modules, one job each (each imports only the ones below it)
-----------------------------------------------------------------
* :mod:`.tree`: the checked tree (its nodes), the limits and the errors;
* :mod:`.checker`: text -> checked tree, refusing what is not on the allow-list;
* :mod:`.runtime`: the helpers generated row-path code calls (exact arithmetic, the functions);
* :mod:`.pycodegen`: checked tree -> Python function over a row tuple;
* :mod:`.sqltypes`, :mod:`.sqlite`, :mod:`.sqlcodegen`: checked tree -> SQLAlchemy expression
  (what the row path reads from a column type; the SQLite exact-decimal emulation; the compiler);
* :mod:`.expression`: :class:`Expression`, the two compiled forms of one checked text.

Only the SQL compiler imports SQLAlchemy: ``import activedataflow.expressions``, the checker (the
model's validation) and the row path do not; push-down imports the SQL names from their modules
(:mod:`.sqltypes`, :mod:`.sqlite`, :mod:`.sqlcodegen`).
"""

from __future__ import annotations

from .checker import check_expression, parse_expression
from .expression import Expression, compile_expression
from .pycodegen import CodeGen, guarded, in_row_context
from .tree import (
    FUNCTIONS,
    MAX_DEPTH,
    MAX_INT_DIGITS,
    MAX_LENGTH,
    MAX_TEXT_LENGTH,
    ROW_ERRORS,
    Node,
    NotPushable,
    RowError,
    row_error,
)

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_LENGTH",
    "MAX_TEXT_LENGTH",
    "ROW_ERRORS",
    "CodeGen",
    "Expression",
    "Node",
    "NotPushable",
    "RowError",
    "check_expression",
    "compile_expression",
    "guarded",
    "in_row_context",
    "parse_expression",
    "row_error",
]
