"""The transform pipeline: rename, select, drop, set, filter and python steps, compiled once per run.

::

    pipeline = compile_transforms(spec.transform, source_columns)   # ConfigError naming the step's field
    pipeline.columns                      # output column names (see python steps below)
    rows = pipeline.apply(batch.rows, on_error=lambda row, err: ...)  # err is a RowError
    plan = pipeline.to_sql({name: source_table.c[name] ...}, "postgresql")  # or NotPushable(reason)
    pipeline.pushdown_reason              # why it can never be pushed down (a python step), else None

Steps apply in order; each sees the columns the previous one produced:

* ``rename: {old: new}`` — renames in place (all at once, so swaps work); free at run time;
* ``select: [a, b]`` — keeps these columns in this order; ``drop: [a]`` — removes them;
* ``set: {name: expression}`` — computes columns; an existing name is replaced in place, a new one is
  appended; all expressions of one step see the step's input columns;
* ``filter: expression`` — keeps the rows where the condition is True (not None);
* ``python: module:function`` — the module is imported once, at compile time; the function is called
  per row with a dict ``{column: value}`` and returns a dict (the new row) or None (drop the row).
  Its output columns are declared with an attribute on the function (``enrich.columns = ["id", "score"]``),
  otherwise they are the keys of the first dict it returns: then ``columns_known`` is False and
  :attr:`Pipeline.columns` raises until a row went through, and the steps after it are checked then.
  An exception raised by the function fails that row only.

Consecutive non-python steps are fused into one generated loop over the batch (columns are local
variables, so rename/select/drop cost nothing and each expression is one inlined computation).
A row whose computation fails (:class:`RowError`) is passed to ``on_error(row, error)`` and left out;
without ``on_error`` the error is raised.

Push-down: :meth:`Pipeline.to_sql` gives a :class:`SqlPlan` (output expressions by name, in order, and
the WHERE conditions) from which ``INSERT INTO sink (...) SELECT <plan.select_list()> FROM source
WHERE <plan.where>`` is built; it raises NotPushable naming the step that SQL cannot compute exactly.
"""

from __future__ import annotations

import ast
import importlib
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.sql.elements import ColumnElement

from ..errors import ConfigError
from ..expressions import CodeGen, Expression, NotPushable, RowError, compile_expression, in_row_context
from ..model import TransformStep

__all__ = ["NotPushable", "OnError", "Pipeline", "RowError", "SqlPlan", "compile_transforms"]

Row = tuple[Any, ...]
OnError = Callable[[Row, RowError], None]


def _raise(row: Row, err: RowError) -> None:
    raise err


@dataclass
class SqlPlan:
    """A pipeline as SQL: ``SELECT <columns> FROM source WHERE <where...>`` (conditions ANDed)."""

    columns: dict[str, ColumnElement[Any]]
    where: list[ColumnElement[Any]] = field(default_factory=list)

    def select_list(self) -> list[ColumnElement[Any]]:
        return [expr.label(name) for name, expr in self.columns.items()]


# --------------------------------------------------------------------------- compiled steps


@dataclass
class _Step:
    field: str
    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def to_sql(self, cols: dict[str, ColumnElement[Any]], where: list[ColumnElement[Any]], dialect: str) -> None:
        """Rewrite ``cols`` (name -> SQL) from this step's input columns to its output columns."""
        raise NotImplementedError


@dataclass
class _Reshape(_Step):
    """rename / select / drop: only which value is called what."""

    sources: tuple[str, ...]  # for each output column, the input column it is

    def to_sql(self, cols: dict[str, ColumnElement[Any]], where: list[ColumnElement[Any]], dialect: str) -> None:
        before = dict(cols)
        cols.clear()
        cols.update({out: before[src] for out, src in zip(self.outputs, self.sources, strict=True)})


@dataclass
class _Set(_Step):
    exprs: dict[str, Expression]

    def to_sql(self, cols: dict[str, ColumnElement[Any]], where: list[ColumnElement[Any]], dialect: str) -> None:
        computed = {name: expr.to_sql(cols, dialect) for name, expr in self.exprs.items()}
        cols.update(computed)  # replaced in place, new ones appended, as on the row path


@dataclass
class _Filter(_Step):
    expr: Expression

    def to_sql(self, cols: dict[str, ColumnElement[Any]], where: list[ColumnElement[Any]], dialect: str) -> None:
        condition, kind = self.expr.to_sql_kind(cols, dialect)
        if kind not in ("bool", "null"):
            raise NotPushable(f"{self.field}: the condition is not a boolean in SQL ({kind})")
        where.append(condition)


@dataclass
class _Python(_Step):
    spec: str
    fn: Callable[[dict[str, Any]], Any]
    declared: bool

    def to_sql(self, cols: dict[str, ColumnElement[Any]], where: list[ColumnElement[Any]], dialect: str) -> None:
        raise NotPushable(f"{self.field}: python steps run in the runner and cannot be pushed down to SQL")


def _unknown(field: str, name: str, columns: Sequence[str]) -> ConfigError:
    return ConfigError(f"unknown column '{name}' (columns: {', '.join(columns)})", field=field)


def _compile_step(step: TransformStep, columns: tuple[str, ...], field: str) -> _Step:
    kind = step.kind
    return _STEP_COMPILERS[kind](step, columns, f"{field}.{kind}")


def _compile_rename(step: TransformStep, columns: tuple[str, ...], field: str) -> _Step:
    assert step.rename is not None
    for old in step.rename:
        if old not in columns:
            raise _unknown(f"{field}.{old}", old, columns)
    outputs = tuple(step.rename.get(c, c) for c in columns)
    for old, new in step.rename.items():
        if not new:
            raise ConfigError("the new name must not be empty", field=f"{field}.{old}")
        if outputs.count(new) > 1:
            raise ConfigError(f"column '{new}' would exist twice", field=f"{field}.{old}")
    return _Reshape(field, step.kind, columns, outputs, sources=columns)


def _compile_select_or_drop(step: TransformStep, columns: tuple[str, ...], field: str) -> _Step:
    names = step.select if step.select is not None else step.drop
    assert names is not None
    for i, name in enumerate(names):
        if name not in columns:
            raise _unknown(f"{field}.{i}", name, columns)
        if names.index(name) != i:
            raise ConfigError(f"column '{name}' is listed twice", field=f"{field}.{i}")
    keep = tuple(names) if step.select is not None else tuple(c for c in columns if c not in names)
    if not keep:
        raise ConfigError("no column would be left", field=field)
    return _Reshape(field, step.kind, columns, keep, sources=keep)


def _compile_set(step: TransformStep, columns: tuple[str, ...], field: str) -> _Step:
    assert step.set is not None
    exprs = {}
    for name, text in step.set.items():
        if not name:
            raise ConfigError("the column name must not be empty", field=field)
        exprs[name] = compile_expression(text, columns, field=f"{field}.{name}")
    outputs = columns + tuple(n for n in step.set if n not in columns)
    return _Set(field, step.kind, columns, outputs, exprs=exprs)


def _compile_filter(step: TransformStep, columns: tuple[str, ...], field: str) -> _Step:
    assert step.filter is not None
    expr = compile_expression(step.filter, columns, field=field)
    if expr.is_condition is False:
        raise ConfigError(f"must be a condition (true/false), like row.amount > 0: {step.filter!r}", field=field)
    return _Filter(field, step.kind, columns, columns, expr=expr)


def _compile_python(step: TransformStep, columns: tuple[str, ...], field: str) -> _Step:
    assert step.python is not None
    fn = _import_callable(step.python, field)
    declared = getattr(fn, "columns", None)
    if declared is not None:
        if isinstance(declared, str) or not all(isinstance(c, str) and c for c in declared):
            raise ConfigError(f"{step.python}.columns must be a list of column names", field=field)
        if len(set(declared)) != len(declared):
            raise ConfigError(f"{step.python}.columns lists a column twice", field=field)
    outputs = tuple(declared) if declared is not None else ()
    return _Python(field, step.kind, columns, outputs, spec=step.python, fn=fn, declared=declared is not None)


# step kind (TransformStep.kind) -> its compiler; the field passed on already ends in the kind
_STEP_COMPILERS: dict[str, Callable[[TransformStep, tuple[str, ...], str], _Step]] = {
    "rename": _compile_rename,
    "select": _compile_select_or_drop,
    "drop": _compile_select_or_drop,
    "set": _compile_set,
    "filter": _compile_filter,
    "python": _compile_python,
}


def _import_callable(spec: str, field: str) -> Callable[[dict[str, Any]], Any]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ConfigError(f"cannot import module '{module_name}': {err}", field=field) from None
    except Exception as err:  # the user's module failed while importing
        raise ConfigError(f"importing '{module_name}' failed: {type(err).__name__}: {err}", field=field) from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise ConfigError(f"module '{module_name}' has no attribute '{attr}'", field=field)
    if not callable(fn):
        raise ConfigError(f"'{spec}' is not callable", field=field)
    return fn  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- segments (what apply runs)

Segment = Callable[[list[Row], OnError], list[Row]]


def _fuse(steps: Sequence[_Step], inputs: tuple[str, ...]) -> Segment:
    """One generated loop for consecutive rename/select/drop/set/filter steps."""
    reshape_only = all(isinstance(s, _Reshape) for s in steps)
    outputs = steps[-1].outputs if steps else inputs
    if reshape_only:
        if outputs == inputs:
            return lambda rows, on_error: rows
        sources = _trace_sources(steps, inputs)
        getter = operator.itemgetter(*(inputs.index(s) for s in sources))
        if len(sources) == 1:
            return lambda rows, on_error: [(getter(r),) for r in rows]
        return lambda rows, on_error: list(map(getter, rows))

    gen = CodeGen()
    local: dict[str, str] = {name: f"c{i}" for i, name in enumerate(inputs)}
    n = len(inputs)

    def column_of(names: dict[str, str]) -> Callable[[str], ast.expr]:
        return lambda name: ast.Name(id=names[name], ctx=ast.Load())

    def on_fail(field: str, body: list[ast.stmt]) -> ast.Try:
        call = ast.Call(
            func=ast.Name(id="on_error", ctx=ast.Load()),
            args=[
                ast.Name(id="r", ctx=ast.Load()),
                ast.Call(
                    func=ast.Name(id="_row_error", ctx=ast.Load()),
                    args=[ast.Constant(field), ast.Name(id="e", ctx=ast.Load())],
                    keywords=[],
                ),
            ],
            keywords=[],
        )
        handler = ast.ExceptHandler(
            type=ast.Name(id="_ROW_ERRORS", ctx=ast.Load()), name="e", body=[ast.Expr(call), ast.Continue()]
        )
        return ast.Try(body=body, handlers=[handler], orelse=[], finalbody=[])

    loop: list[ast.stmt] = [
        ast.Assign(
            targets=[ast.Tuple(elts=[ast.Name(id=local[c], ctx=ast.Store()) for c in inputs], ctx=ast.Store())],
            value=ast.Name(id="r", ctx=ast.Load()),
        )
    ]
    for step in steps:
        if isinstance(step, _Reshape):
            local = {out: local[src] for out, src in zip(step.outputs, step.sources, strict=True)}
        elif isinstance(step, _Filter):
            test = ast.Compare(
                left=gen.condition(step.expr.tree, column_of(local)),
                ops=[ast.IsNot()],
                comparators=[ast.Constant(True)],
            )
            loop.append(on_fail(step.field, [ast.If(test=test, body=[ast.Continue()], orelse=[])]))
        elif isinstance(step, _Set):
            new: dict[str, str] = {}
            for name, expr in step.exprs.items():
                new[name] = var = f"c{n}"
                n += 1
                value = gen.expr(expr.tree, column_of(local))
                loop.append(on_fail(expr.field, [ast.Assign(targets=[ast.Name(id=var, ctx=ast.Store())], value=value)]))
            local = {**local, **new}
    out = ast.Tuple(elts=[ast.Name(id=local[c], ctx=ast.Load()) for c in outputs], ctx=ast.Load())
    loop.append(ast.Expr(ast.Call(func=ast.Name(id="append", ctx=ast.Load()), args=[out], keywords=[])))
    body: list[ast.stmt] = [
        ast.Assign(targets=[ast.Name(id="out", ctx=ast.Store())], value=ast.List(elts=[], ctx=ast.Load())),
        ast.Assign(
            targets=[ast.Name(id="append", ctx=ast.Store())],
            value=ast.Attribute(value=ast.Name(id="out", ctx=ast.Load()), attr="append", ctx=ast.Load()),
        ),
        in_row_context(
            [
                ast.For(
                    target=ast.Name(id="r", ctx=ast.Store()),
                    iter=ast.Name(id="rows", ctx=ast.Load()),
                    body=loop,
                    orelse=[],
                )
            ]
        ),
        ast.Return(value=ast.Name(id="out", ctx=ast.Load())),
    ]
    fields = ",".join(s.field for s in steps)
    return gen.compile(body, "segment", ["rows", "on_error"], f"<transform {fields}>")


def _trace_sources(steps: Iterable[_Step], inputs: tuple[str, ...]) -> tuple[str, ...]:
    """For reshape-only steps: which input column each output column is."""
    origin = {c: c for c in inputs}
    for step in steps:
        assert isinstance(step, _Reshape)
        origin = {out: origin[src] for out, src in zip(step.outputs, step.sources, strict=True)}
    return tuple(origin.values())


class _PythonSegment:
    def __init__(self, step: _Python, on_columns: Callable[[tuple[str, ...]], None]) -> None:
        self.step = step
        self.on_columns = on_columns
        self.columns: tuple[str, ...] | None = step.outputs if step.declared else None
        self.getter = self._getter(self.columns) if self.columns is not None else None

    @staticmethod
    def _getter(columns: tuple[str, ...]) -> Callable[[dict[str, Any]], Row]:
        if len(columns) == 1:
            one = operator.itemgetter(columns[0])
            return lambda d: (one(d),)
        return operator.itemgetter(*columns)

    def __call__(self, rows: list[Row], on_error: OnError) -> list[Row]:
        step = self.step
        fn, names, field = step.fn, step.inputs, step.field
        out: list[Row] = []
        for r in rows:
            try:
                d = fn(dict(zip(names, r, strict=True)))
            except Exception as err:  # the user's function failed on this row
                on_error(r, RowError(f"{step.spec} raised {type(err).__name__}: {err}"[:500], field=field))
                continue
            if d is None:
                continue
            if not isinstance(d, dict):
                on_error(r, RowError(f"{step.spec} returned {type(d).__name__}; expected a dict or None", field=field))
                continue
            if self.columns is None:
                if not d or not all(isinstance(k, str) and k for k in d):
                    on_error(r, RowError(f"{step.spec} returned a dict without column names", field=field))
                    continue
                self.columns = tuple(d)
                self.getter = self._getter(self.columns)
                self.on_columns(self.columns)
            assert self.getter is not None
            if len(d) != len(self.columns):
                extra = sorted(set(d) - set(self.columns))
                missing = sorted(set(self.columns) - set(d))
                reason = f"unexpected columns {extra}" if extra else f"missing columns {missing}"
                on_error(r, RowError(f"{step.spec} returned {reason}; expected {list(self.columns)}", field=field))
                continue
            try:
                out.append(self.getter(d))
            except KeyError as err:
                on_error(r, RowError(f"{step.spec} returned no column {err}", field=field))
        return out


# --------------------------------------------------------------------------- the pipeline


class Pipeline:
    """The compiled steps of one flow for one run. See the module docstring."""

    def __init__(self, input_columns: Sequence[str], steps: Sequence[TransformStep], field_prefix: str,
                 first: int = 0) -> None:
        self.input_columns = tuple(input_columns)
        self.field_prefix = field_prefix
        self.steps: list[_Step] = []
        self._segments: list[Segment] = []
        self._pending: list[tuple[int, TransformStep]] = []
        self._columns: tuple[str, ...] | None = None
        self._compile(list(enumerate(steps, first)), self.input_columns)

    def _compile(self, steps: list[tuple[int, TransformStep]], columns: tuple[str, ...]) -> None:
        run: list[_Step] = []
        run_inputs = columns
        for pos, (i, step) in enumerate(steps):
            compiled = _compile_step(step, columns, f"{self.field_prefix}.{i}")
            self.steps.append(compiled)
            if not isinstance(compiled, _Python):
                run.append(compiled)
                columns = compiled.outputs
                continue
            if run:
                self._segments.append(_fuse(run, run_inputs))
            run = []
            segment = _PythonSegment(compiled, self._learned)
            self._segments.append(segment)
            if not compiled.declared:
                self._pending = steps[pos + 1 :]
                return  # the rest is compiled when the first row shows the columns
            columns = run_inputs = compiled.outputs
        if run:
            self._segments.append(_fuse(run, run_inputs))
        self._columns = columns

    def _learned(self, columns: tuple[str, ...]) -> None:
        pending, self._pending = self._pending, []
        self.steps[-1].outputs = columns
        self._compile(pending, columns)

    @property
    def columns_known(self) -> bool:
        return self._columns is not None

    @property
    def columns(self) -> tuple[str, ...]:
        """The output columns. With an undeclared python step, known after its first output row."""
        if self._columns is None:
            step = next(s for s in self.steps if isinstance(s, _Python) and not s.declared)
            assert isinstance(step, _Python)
            raise ConfigError(
                f"the output columns of {step.spec} are not known before it returned a row; "
                f"declare them: {step.spec.partition(':')[2]}.columns = [...]",
                field=step.field,
            )
        return self._columns

    def apply(self, rows: list[Row], on_error: OnError | None = None) -> list[Row]:
        """Transform one batch. Rows that fail go to ``on_error(row, RowError)`` (raised without it)."""
        handler = on_error or _raise
        i = 0
        while i < len(self._segments):  # a python step may append segments while running
            if not rows:
                break
            rows = self._segments[i](rows, handler)
            i += 1
        return rows

    @property
    def pushdown_reason(self) -> str | None:
        """Why this pipeline can never run in SQL (a python step), or None."""
        for step in self.steps:
            if isinstance(step, _Python):
                return f"{step.field}: python steps run in the runner and cannot be pushed down to SQL"
        return None

    def to_sql(self, cols: Mapping[str, ColumnElement[Any]], dialect_name: str) -> SqlPlan:
        """The pipeline over source columns ``cols`` (typed SQLAlchemy columns, by input name) as SQL."""
        if reason := self.pushdown_reason:
            raise NotPushable(reason)
        current = {name: cols[name] for name in self.input_columns}
        where: list[ColumnElement[Any]] = []
        for step in self.steps:
            step.to_sql(current, where, dialect_name)
        return SqlPlan(columns=current, where=where)

    def sql_prefix(self, cols: Mapping[str, ColumnElement[Any]], dialect_name: str) -> tuple[int, SqlPlan, str | None]:
        """The longest prefix of the steps that SQL computes exactly: (how many steps, their SQL, why the
        next one is not; None when all are)."""
        current = {name: cols[name] for name in self.input_columns}
        where: list[ColumnElement[Any]] = []
        for n, step in enumerate(self.steps):
            before, conditions = dict(current), list(where)
            try:
                step.to_sql(current, where, dialect_name)
            except NotPushable as err:
                return n, SqlPlan(columns=before, where=conditions), err.reason
        return len(self.steps), SqlPlan(columns=current, where=where), None

    def explain_pushdown(self, cols: Mapping[str, ColumnElement[Any]], dialect_name: str) -> str | None:
        """None if :meth:`to_sql` works, else the reason naming the step."""
        try:
            self.to_sql(cols, dialect_name)
        except NotPushable as err:
            return err.reason
        return None


def compile_transforms(
    steps: Sequence[TransformStep], input_columns: Sequence[str], *, field_prefix: str = "spec.transform",
    first: int = 0,
) -> Pipeline:
    """Check and compile ``steps`` for rows of ``input_columns``. ConfigError names the step's field
    (``first``: the index of ``steps[0]`` in the flow's transform, for the steps after a pushed-down prefix)."""
    if len(set(input_columns)) != len(input_columns):
        dupes = sorted({c for c in input_columns if list(input_columns).count(c) > 1})
        raise ConfigError(f"the source gives column(s) {', '.join(dupes)} twice", field=field_prefix)
    return Pipeline(input_columns, steps, field_prefix, first)
