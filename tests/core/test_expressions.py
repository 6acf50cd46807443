"""The safe expression language: what it refuses, what it means, and that SQL push-down means the same."""

from __future__ import annotations

import contextlib
import decimal
import sys
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from activedataflow.errors import ConfigError
from activedataflow.expressions import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    MAX_TEXT_LENGTH,
    NotPushable,
    RowError,
    check_expression,
    compile_expression,
)
from activedataflow.expressions.sqlite import SQLITE_GUARD_ERROR
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.bounded import bounded as guarded

COLS = ["id", "amount", "status", "note", "qty", "flag"]


def ev(text: str, row: tuple[Any, ...], columns: list[str] = COLS) -> Any:
    return compile_expression(text, columns, field="spec.transform.0.set.x").python(row)


def one(**values: Any) -> tuple[Any, ...]:
    return tuple(values.get(c) for c in COLS)


# --------------------------------------------------------------------------- the allow-list


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("row.__class__", "attribute access is not allowed: row.__class__"),
        ("row.amount.real", "attribute access is not allowed (only row.<column>)"),
        ("().__class__", "attribute access is not allowed"),
        ("__import__('os')", "unknown function '__import__'"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("lambda: 1", "lambda not allowed"),
        ("[x for x in (1, 2)]", "comprehensions not allowed"),
        ("{x: 1 for x in (1, 2)}", "comprehensions not allowed"),
        ("(x for x in (1, 2))", "generator expressions not allowed"),
        ("(y := 1)", "assignment expressions not allowed"),
        ("f'{row.id}'", "f-strings not allowed"),
        ("row.status.upper()", "method calls are not allowed (.upper())"),
        ("lower(row.status).__len__()", "method calls are not allowed"),
        ("int(row.qty)(1)", "only the built-in functions can be called"),
        ("row[0]", "row[...] takes a column name in quotes"),
        ("(1, 2)[0]", "subscripts are not allowed"),
        ("row.amount ** 2", "operator ** is not allowed"),
        ("row.qty << 2", "operator << is not allowed"),
        ("~row.qty", "unary operator ~ is not allowed"),
        ("b'bytes'", "bytes literals are not allowed"),
        ("1j", "complex literals are not allowed"),
        ("row", "'row' alone is not a value"),
        ("amount > 0", "unknown name 'amount'; did you mean row.amount?"),
        ("int(x=1)", "int() takes no keyword arguments"),
        ("int(*row)", "unpacking not allowed"),
        ("coalesce(row.note)", "coalesce() takes 2 to 32 arguments, got 1"),
        ("row.status == None", "use 'is None'"),
        ("row.status is 'paid'", "'is' is only allowed as 'is None'"),
        ("row.status in row.note", "'in' needs a literal list"),
        ("row.status in ('a', None)", "use 'is None'"),
        ("row.status in ()", "'in' needs at least one value"),
        ("(row.qty + 1) and row.flag", "'and' needs a condition"),
        ("not row.qty * 2", "'not' needs a condition"),
        ("row.qty if 'yes' else 0", "'if' needs a condition"),
        ("(row.qty > 1) + 1", "arithmetic (+) on a condition"),
        ("row.qty +", "invalid expression"),
        ("", "empty expression"),
    ],
)
def test_refused_at_compile_time_with_the_field(text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_expression(text, COLS, field="spec.transform.2.filter")
    assert str(info.value).startswith("spec.transform.2.filter: ")
    assert info.value.field == "spec.transform.2.filter"
    assert reason in str(info.value)


def test_unknown_column_names_field_column_position_and_the_columns() -> None:
    with pytest.raises(ConfigError) as info:
        compile_expression("int(row.amont * 100.0)", ["id", "amount", "status"], field="spec.transform.2.set.cents")
    assert str(info.value) == (
        "spec.transform.2.set.cents: unknown column 'amont' at position 5 in 'int(row.amont * 100.0)' "
        "(columns: id, amount, status)"
    )


def test_odd_column_names_through_subscript() -> None:
    expr = compile_expression("row['unit price'] * row['qty']", ["unit price", "qty"], field="f")
    assert expr.python((2.5, 4)) == 10.0
    assert expr.columns_used == ("unit price", "qty")


def test_a_column_named_like_a_dunder_is_reachable_only_by_subscript() -> None:
    assert compile_expression("row['__class__']", ["__class__"], field="f").python(("x",)) == "x"


def test_nesting_is_bounded() -> None:
    with pytest.raises(ConfigError, match="nested more than"):
        compile_expression("-(" * 200 + "row.qty" + ")" * 200, COLS, field="f")


def test_the_compiled_function_has_no_builtins() -> None:
    fn = compile_expression("row.qty", COLS, field="f").python
    assert fn.__globals__["__builtins__"] == {}


# --------------------------------------------------------------------------- semantics (row path)


@pytest.mark.parametrize(
    "text",
    [
        "row.amount + 1",
        "row.amount * 2.5",
        "-row.amount",
        "row.amount / 2",
        "row.amount // 2",
        "row.amount % 2",
        "row.amount > 1",
        "row.amount == 1",
        "int(row.amount)",
        "abs(row.amount)",
        "lower(row.note)",
        "length(row.note)",
        "concat(row.note, 'x')",
        "substr(row.note, 1, 2)",
        "row.amount in (1, 2)",
    ],
)
def test_none_propagates_like_sql_null(text: str) -> None:
    assert ev(text, one()) is None


@pytest.mark.parametrize(
    ("a", "b", "and_", "or_"),
    [
        (True, True, True, True),
        (True, False, False, True),
        (True, None, None, True),
        (False, True, False, True),
        (False, False, False, False),
        (False, None, False, None),
        (None, True, None, True),
        (None, False, False, None),
        (None, None, None, None),
    ],
)
def test_and_or_are_three_valued(a: bool | None, b: bool | None, and_: bool | None, or_: bool | None) -> None:
    cols = ["a", "b"]
    assert ev("row.a and row.b", (a, b), cols) is and_
    assert ev("row.a or row.b", (a, b), cols) is or_
    assert ev("not row.a", (a, b), cols) is (None if a is None else not a)


def test_and_does_not_evaluate_the_right_side_when_the_left_decides() -> None:
    assert ev("row.qty != 0 and row.amount / row.qty > 1", one(qty=0, amount=5)) is False
    assert ev("row.qty == 0 or row.amount / row.qty > 1", one(qty=0, amount=5)) is True


def test_sqlite_booleans_0_and_1_count_as_conditions() -> None:
    assert ev("row.flag and True", one(flag=1)) is True
    assert ev("not row.flag", one(flag=0)) is True
    with pytest.raises(RowError, match="expected a condition"):
        ev("row.flag and True", one(flag=2))


def test_int_truncates_toward_zero() -> None:
    assert ev("int(row.amount * 100.0)", one(amount=0.29)) == 28  # the float is 28.999999999999996
    assert ev("int(row.amount * 100.0)", one(amount=Decimal("0.29"))) == 29  # NUMERIC is exact
    assert ev("int(row.amount)", one(amount=-2.7)) == -2
    assert ev("int(row.amount)", one(amount=Decimal("-2.7"))) == -2
    assert ev("int(row.note)", one(note=" 42 ")) == 42


def test_decimal_with_float_is_decimal_arithmetic_through_str() -> None:
    assert ev("row.amount * 0.1", one(amount=Decimal("3"))) == Decimal("0.3")
    assert ev("row.amount + 0.1", one(amount=Decimal("0.2"))) == Decimal("0.3")
    assert ev("row.amount == 0.3", one(amount=Decimal("0.3"))) is True
    assert ev("row.amount in (0.3, 7)", one(amount=Decimal("0.3"))) is True


def test_decimal_addition_and_multiplication_are_exact() -> None:
    big = Decimal("12345678901234567890.123456789")
    exact = decimal.Context(prec=100).multiply(big, big)
    assert len(exact.as_tuple().digits) > 28  # more than the default context keeps
    assert ev("row.amount * row.qty", one(amount=big, qty=big)) == exact
    tiny = Decimal("1e-30")
    assert ev("row.amount + row.qty", one(amount=big, qty=tiny)) == decimal.Context(prec=100).add(big, tiny)


def test_division_is_true_division_and_floor_division_floors() -> None:
    assert ev("row.qty / 2", one(qty=7)) == 3.5
    assert isinstance(ev("row.qty / 1", one(qty=4)), float)
    assert ev("row.amount / 4", one(amount=Decimal("1"))) == Decimal("0.25")
    assert ev("row.qty // 2", one(qty=-7)) == -4
    assert ev("row.qty % 2", one(qty=-7)) == 1
    assert ev("row.amount // 2", one(amount=Decimal("-7"))) == Decimal("-4")  # not Decimal's truncation
    assert ev("row.amount % 2", one(amount=Decimal("-7"))) == Decimal("1")
    assert ev("row.amount % -2", one(amount=Decimal("7"))) == Decimal("-1")


def test_strings_compare_by_code_point() -> None:
    assert ev("row.note < 'a'", one(note="Z")) is True
    assert ev("row.note > 'z'", one(note="é")) is True
    assert ev("row.note < row.status", one(note="apple", status="apples")) is True


def test_text_functions() -> None:
    assert ev("lower(row.note)", one(note="ÀBC x")) == "Àbc x"  # ASCII letters only
    assert ev("upper(row.note)", one(note="straße")) == "STRAßE"
    assert ev("trim(row.note)", one(note="  a b \t")) == "a b \t"
    assert ev("length(row.note)", one(note="naïve 🚀")) == 7
    assert ev("substr(row.note, 2, 3)", one(note="abcdef")) == "bcd"
    assert ev("substr(row.note, 0, 3)", one(note="abcdef")) == "ab"  # SQL's window [0, 3)
    assert ev("substr(row.note, 3)", one(note="abcdef")) == "cdef"
    assert ev("replace(row.note, '', 'x')", one(note="abc")) == "abc"
    assert ev("concat(row.status, '-', str(row.qty))", one(status="a", qty=3)) == "a-3"
    assert ev("coalesce(row.note, row.status, 'none')", one(status="s")) == "s"
    assert ev("nullif(row.status, '')", one(status="")) is None
    assert ev("str(row.flag)", one(flag=True)) == "true"


def test_conditional_expression_takes_else_when_the_condition_is_none() -> None:
    assert ev("row.qty if row.flag else -1", one(qty=3, flag=None)) == -1
    assert ev("row.qty if row.flag else -1", one(qty=3, flag=True)) == 3


def test_round_is_half_away_from_zero_for_decimals() -> None:
    assert ev("round(row.amount, 1)", one(amount=Decimal("2.25"))) == Decimal("2.3")
    assert ev("round(row.amount)", one(amount=Decimal("-2.5"))) == Decimal("-3")


@pytest.mark.parametrize(
    ("text", "row", "reason"),
    [
        ("row.amount / row.qty", one(amount=1, qty=0), "division by zero"),
        ("row.amount // 0", one(amount=Decimal(1)), "division by zero"),
        ("row.amount % row.qty", one(amount=1.5, qty=0.0), "division by zero"),
        ("int(row.note)", one(note="12abc"), "int() of text '12abc'"),
        ("row.note + 1", one(note="a"), "cannot add text and int"),
        ("row.note * 3", one(note="a"), "cannot multiply text and int"),
        ("row.note < 3", one(note="a"), "not supported between"),
        ("lower(row.qty)", one(qty=3), "lower() expects text, got int"),
        ("int(row.amount)", one(amount=float("inf")), "infinity"),
    ],
)
def test_a_bad_value_is_a_row_error_naming_the_field(text: str, row: tuple[Any, ...], reason: str) -> None:
    with pytest.raises(RowError) as info:
        ev(text, row)
    assert info.value.field == "spec.transform.0.set.x"
    assert reason in str(info.value)


# --------------------------------------------------------------------------- bounded cost per row
# Hostile values and texts finish: the row fails with the reason, or the text is refused naming the field.
# A thread with a generous deadline only guards against a hang; the assertions are on the outcome.



def bounded(fn: Callable[[], Any]) -> Any:
    return guarded(fn, hang="did not finish: the expression's cost is not bounded")


@pytest.mark.parametrize(
    ("text", "row", "reason"),
    [
        # the case: a billion-digit integer would pin a CPU for minutes
        ("int(decimal(row.note))", one(note="1e999999999"), f"more than {MAX_INT_DIGITS} digits"),
        ("int(decimal('1e999999999'))", one(), f"more than {MAX_INT_DIGITS} digits"),
        ("int(row.amount)", one(amount=Decimal("-1e999999999")), f"more than {MAX_INT_DIGITS} digits"),
        ("int(row.amount)", one(amount=Decimal("9" * 4301)), f"more than {MAX_INT_DIGITS} digits"),
        ("int(row.note)", one(note="9" * 5000), f"more than {MAX_INT_DIGITS} digits"),
        ("row.qty * row.qty", one(qty=10**4000), f"product of two integers has more than {MAX_INT_DIGITS} digits"),
        ("row.qty * row.qty * row.qty", one(qty=10**1500), f"more than {MAX_INT_DIGITS} digits"),
        ("replace(replace(row.note, 'a', row.note), 'a', row.note)", one(note="a" * 5000),
         f"more than {MAX_TEXT_LENGTH}"),
        ("replace(row.note, 'x', row.status)", one(note="x" * 10**6, status="y" * 10**6), "1000000000000 characters"),
    ],
)
def test_a_hostile_value_fails_the_row_with_the_reason(text: str, row: tuple[Any, ...], reason: str) -> None:
    with pytest.raises(RowError) as info:
        bounded(lambda: ev(text, row))
    assert info.value.field == "spec.transform.0.set.x"
    assert reason in str(info.value)


def test_int_of_the_largest_allowed_values_still_computes() -> None:
    assert ev("int(row.amount)", one(amount=Decimal("9" * MAX_INT_DIGITS))) == 10**MAX_INT_DIGITS - 1
    assert ev("int(row.note)", one(note="-" + "0" * 10 + "9" * MAX_INT_DIGITS)) == -(10**MAX_INT_DIGITS - 1)
    assert ev("row.qty * row.qty", one(qty=10**2000)) == 10**4000
    assert ev("int(decimal(row.note))", one(note="1.5e3")) == 1500


def test_int_of_text_is_bounded_whatever_the_interpreter_allows() -> None:
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # PYTHONINTMAXSTRDIGITS=0 lifts Python's own limit
    try:
        with pytest.raises(RowError, match=f"more than {MAX_INT_DIGITS} digits"):
            bounded(lambda: ev("int(row.note)", one(note="9" * 100_000)))
    finally:
        sys.set_int_max_str_digits(before)


def test_round_of_an_integer_to_huge_negative_digits_is_zero_without_building_the_power() -> None:
    assert bounded(lambda: ev("round(row.qty, -99999999999)", one(qty=123))) == 0
    assert bounded(lambda: ev("round(row.qty, row.amount)", one(qty=-10**300, amount=-(10**50)))) == 0


@given(st.integers(-(10**40), 10**40), st.integers(-45, 5))
@settings(max_examples=200, deadline=None)
def test_round_of_integers_keeps_pythons_meaning(x: int, n: int) -> None:
    assert ev("round(row.qty, row.amount)", one(qty=x, amount=n)) == round(x, n)


def test_replace_that_does_not_lengthen_text_never_fails_even_on_long_text() -> None:
    long = "ab" * (MAX_TEXT_LENGTH // 2 + 1)
    assert bounded(lambda: ev("replace(row.note, 'ab', 'c')", one(note=long))) == "c" * (MAX_TEXT_LENGTH // 2 + 1)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0x" + "f" * 4000 + " + row.qty", f"integer literal of more than {MAX_INT_DIGITS} digits at position 1"),
        ("row.qty * -0o" + "7" * 6000, f"integer literal of more than {MAX_INT_DIGITS} digits at position 12"),
        ("9" * 4301, "Exceeds the limit (4300 digits)"),
        # these compiled to a RecursionError (a crash, not a ConfigError) before chains counted as depth
        (" and ".join(["row.id"] * 900), f"nested more than {MAX_DEPTH} levels deep (a chain of 900)"),
        (" or ".join(["row.id > 1"] * 600), f"nested more than {MAX_DEPTH} levels deep (a chain of 600)"),
        (" < ".join(["row.id"] * 1100), f"nested more than {MAX_DEPTH} levels deep (a chain of 1099)"),
        ("not " * 2400 + "row.flag", f"nested more than {MAX_DEPTH} levels deep"),
        ("-" * 5000 + "row.qty", "cannot be parsed"),
        ("(" * 500 + "row.qty" + ")" * 500, "too many nested parentheses"),
        ("concat(" * 2000 + "row.note" + ", 'a')" * 2000, "expression longer than"),
    ],
)
def test_a_hostile_text_is_refused_naming_the_field(text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        bounded(lambda: check_expression(text, field="spec.transform.0.filter"))
    assert info.value.field == "spec.transform.0.filter"
    assert reason in info.value.reason


def test_a_long_chain_within_the_depth_compiles_and_computes() -> None:
    assert ev(" and ".join(["row.qty > 1"] * 50), one(qty=2)) is True
    assert ev(" + ".join(["row.qty"] * 50), one(qty=2)) == 100


EXPRESSION_TEXT = st.text(alphabet=st.sampled_from(list("rowabc.()[]'\"0x9e+-*/%<>=!,: _ifelsnotandrT\x00\\é")),
                          max_size=120)


@given(st.one_of(EXPRESSION_TEXT, st.builds(lambda a, b: a + b, st.sampled_from(["row.qty ", "int(", "(", "not "]),
                                            EXPRESSION_TEXT)))
@settings(max_examples=400, deadline=None)
def test_any_text_compiles_or_is_refused_naming_the_field(text: str) -> None:
    try:
        expr = bounded(lambda: compile_expression(text, COLS, field="spec.transform.0.filter"))
    except ConfigError as err:
        assert err.field == "spec.transform.0.filter" and err.reason
    else:
        assert expr.columns_used is not None


HOSTILE_LEAVES = st.sampled_from([
    "row.qty", "row.amount", "row.note", "row.status", "row.flag", "row.id", "None", "True", "0", "-1", "7",
    "99999999999", "-99999999999", "1e308", "1e999999999", "0.5", "'1e999999999'", "'9'", "'a'", "''",
    "'aaaaaaaaaa'", "'-12'", "9" * 4300,
])
HOSTILE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "id": st.integers() | st.sampled_from([10**4299, -(10**4299), 2**63]),
    "amount": st.decimals(places=None) | st.sampled_from(
        [Decimal("1e999999999"), Decimal("-1e-999999999"), Decimal("9" * 1000), Decimal("1e4299")]),
    "note": st.text(max_size=40) | st.sampled_from(["1e999999999", "9" * 4300, "a" * 2000, "-99999999999"]),
    "qty": st.floats() | st.integers(-(10**30), 10**30) | st.sampled_from([10**2000, -99999999999]),
    "status": st.text(alphabet="a1e9.-", max_size=30),
    "flag": st.none() | st.booleans() | st.sampled_from([0, 1, 2]),
}


def _hostile(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    fns1 = ["int", "float", "str", "decimal", "abs", "lower", "upper", "trim", "length", "round", "not ", "-"]
    return st.one_of(
        st.tuples(st.sampled_from(fns1), inner).map(
            lambda t: f"{t[0]}{t[1]}" if t[0] in ("not ", "-") else f"{t[0]}({t[1]})"),
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "//", "%", "==", "<", ">=", "and", "or"]), inner)
        .map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["round", "coalesce", "concat", "substr", "nullif"]), inner, inner).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(st.sampled_from(["substr", "replace"]), inner, inner, inner).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]}, {t[3]})"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        inner.map(lambda e: f"({e} in (1, 'a', 2.5))"),
        inner.map(lambda e: f"({e} is None)"),
    )


HOSTILE_EXPRESSIONS = st.recursive(HOSTILE_LEAVES, _hostile, max_leaves=10)


@given(text=HOSTILE_EXPRESSIONS, row=st.fixed_dictionaries(HOSTILE_VALUES))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_accepted_expression_on_any_row_returns_a_value_or_fails_the_row(text: str, row: dict[str, Any]) -> None:
    try:
        expr = compile_expression(text, COLS, field="f")
    except ConfigError:
        assume(False)
        return
    values = one(**row)
    try:
        value = bounded(lambda: expr.python(values))
    except RowError as err:
        assert err.field == "f" and err.reason
        return
    assert value is None or type(value) in (int, float, Decimal, str, bool)


@given(st.integers(-(10**6), 10**6), st.integers(-(10**6), 10**6).filter(bool))
@settings(max_examples=50, deadline=None)
def test_integer_floor_division_and_modulo_agree_with_decimals(a: int, b: int) -> None:
    cols = ["a", "b"]
    assert ev("row.a // row.b", (Decimal(a), Decimal(b)), cols) == a // b
    assert ev("row.a % row.b", (Decimal(a), Decimal(b)), cols) == a % b


# --------------------------------------------------------------------------- SQL: pinned cases


def sqlite_engine() -> sa.Engine:
    return sa.create_engine("sqlite://")


def sql_value(engine: sa.Engine, table: sa.Table, text: str, row: dict[str, Any]) -> Any:
    names = [c.name for c in table.columns]
    with engine.begin() as conn:
        conn.execute(table.delete())
        conn.execute(table.insert(), [row])
        expr = compile_expression(text, names, field="f").to_sql(table.c, engine.dialect.name)
        return conn.execute(sa.select(expr)).scalar_one()


@pytest.fixture
def sqlite_table() -> Iterator[tuple[sa.Engine, sa.Table]]:
    engine = sqlite_engine()
    md = sa.MetaData()
    table = sa.Table(
        "t",
        md,
        sa.Column("amount", sa.Float),
        sa.Column("qty", sa.Integer),
        sa.Column("note", sa.String),
        sa.Column("price", sa.Numeric(12, 2)),
    )
    md.create_all(engine)
    yield engine, table
    engine.dispose()


def test_sqlite_int_of_float_truncates_like_python(sqlite_table: tuple[sa.Engine, sa.Table]) -> None:
    engine, table = sqlite_table
    assert sql_value(engine, table, "int(row.amount * 100.0)", {"amount": 0.29}) == 28
    assert sql_value(engine, table, "int(row.amount)", {"amount": -2.7}) == -2


def test_sqlite_float_sums_keep_their_grouping(sqlite_table: tuple[sa.Engine, sa.Table]) -> None:
    engine, table = sqlite_table  # (0.1 + 0.1) - 1.5 is -1.3; 0.1 + (0.1 - 1.5) is -1.2999999999999998
    assert sql_value(engine, table, "row.amount + (row.amount + -1.5)", {"amount": 0.1}) == 0.1 + (0.1 + -1.5)


def test_sqlite_integer_division_and_modulo_floor(sqlite_table: tuple[sa.Engine, sa.Table]) -> None:
    engine, table = sqlite_table
    assert sql_value(engine, table, "row.qty // 2", {"qty": -7}) == -4
    assert sql_value(engine, table, "row.qty % 2", {"qty": -7}) == 1
    assert sql_value(engine, table, "row.qty / 2", {"qty": 7}) == 3.5


def sqlite_numeric(value: Any, text: str, type_: sa.types.TypeEngine[Any] | None = None) -> tuple[Any, Any]:
    """(row path, SQL) for ``text`` over one SQLite NUMERIC(12,2) column ``price`` holding ``value``."""
    engine = sqlite_engine()
    md = sa.MetaData()
    table = sa.Table("t", md, sa.Column("price", type_ or sa.Numeric(12, 2)), sa.Column("qty", sa.Integer))
    md.create_all(engine)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (:v, 3)"), {"v": value})  # as any application stores it
            stored = tuple(conn.execute(sa.select(table)).one())  # what the row path reads (Decimal)
        expr = compile_expression(text, ["price", "qty"], field="f")
        return expr.python(stored), sql_value(engine, table, text, dict(zip(["price", "qty"], stored, strict=True)))
    finally:
        engine.dispose()


def test_sqlite_numeric_int_of_cents_is_exact() -> None:
    assert sqlite_numeric("0.29", "int(row.price * 100)") == (29, 29)  # CAST(0.29 * 100 AS INTEGER) is 28
    assert sqlite_numeric(0.29, "int(row.price * 100.0)") == (29, 29)
    assert sqlite_numeric("1.15", "int(row.price * 100)") == (115, 115)


def test_sqlite_numeric_int_truncates_negative_values_toward_zero() -> None:
    assert sqlite_numeric("-0.29", "int(row.price * 100)") == (-29, -29)
    assert sqlite_numeric("-2.70", "int(row.price)") == (-2, -2)
    assert sqlite_numeric("-0.99", "int(row.price)") == (0, 0)


def test_sqlite_numeric_compares_at_differing_scales() -> None:
    assert sqlite_numeric("10.50", "row.price == 10.5") == (True, True)
    assert sqlite_numeric("10.50", "row.price > 10.49") == (True, True)
    assert sqlite_numeric("10.50", "row.price < 11") == (True, True)
    assert sqlite_numeric("10.50", "row.price in (10.5, 3)") == (True, True)
    assert sqlite_numeric("0.30", "row.price * 3 == 0.9") == (True, True)  # 0.3 * 3 is 0.8999999999999999 as floats


def test_sqlite_numeric_float_and_decimal_results_are_the_row_paths() -> None:
    assert sqlite_numeric("0.29", "float(row.price) * 3.0") == (0.29 * 3.0, 0.29 * 3.0)
    assert sqlite_numeric("0.29", "row.price * 3") == (Decimal("0.87"), Decimal("0.87"))
    assert sqlite_numeric("2.25", "round(row.price, 1)") == (Decimal("2.3"), Decimal("2.3"))  # half away from zero
    assert sqlite_numeric("-2.50", "round(row.price)") == (Decimal("-3"), Decimal("-3"))


def test_sqlite_numeric_pushdown_is_scaled_integers() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("price", sa.Numeric(12, 2)))
    sql = compile_expression("int(row.price * 100)", ["price"], field="f").to_sql(table.c, "sqlite")
    text = str(sql.compile(dialect=sqlite_engine().dialect))
    assert "CAST(round(t.price * 100.0) AS BIGINT)" in text and ") / 100" in text


@pytest.mark.parametrize(
    ("text", "type_", "reason"),
    [
        ("row.price / 2", sa.Numeric(12, 2), "'/' on SQLite NUMERIC"),
        ("row.price // 2", sa.Numeric(12, 2), "'//' on SQLite NUMERIC is not pushed down"),
        ("round(row.price, -1)", sa.Numeric(12, 2), "round() of a SQLite NUMERIC is pushed down with literal digits"),
        ("str(row.price)", sa.Numeric(12, 2), "str() of a SQLite NUMERIC formats differently"),
        ("row.price + row.amount", sa.Numeric(12, 2), "mixing a SQLite NUMERIC and a float column"),
        ("row.price * row.price", sa.Numeric(12, 2), "exceeds the 15 digits SQLite REAL holds exactly"),
        ("row.price + row.qty", sa.Numeric(12, 2), "exceeds the 15 digits"),  # an INTEGER column: 19 digits
        ("row.price * 100", sa.Numeric(), "SQLite NUMERIC without a declared scale"),
        ("row.price * 100", sa.Numeric(16, 2), "SQLite NUMERIC of more than 15 digits"),
    ],
)
def test_sqlite_numeric_refusals_say_why(text: str, type_: sa.types.TypeEngine[Any], reason: str) -> None:
    cols = {"price": sa.column("price", type_), "amount": sa.column("amount", sa.Float),
            "qty": sa.column("qty", sa.Integer)}
    with pytest.raises(NotPushable) as info:
        compile_expression(text, list(cols), field="spec.transform.1.set.y").to_sql(cols, "sqlite")
    assert info.value.reason.startswith("spec.transform.1.set.y: ")
    assert reason in info.value.reason


@pytest.mark.parametrize("stored", ["0.285", "0.125", "12345678901.5", "'abc'"])
def test_sqlite_numeric_value_unlike_its_declaration_fails_the_statement(stored: str) -> None:
    """More decimals than declared (the row path rounds half-even on the binary value), more digits, text."""
    engine = sqlite_engine()
    table = sa.Table("t", sa.MetaData(), sa.Column("price", sa.Numeric(12, 2)))
    table.metadata.create_all(engine)
    sql = compile_expression("int(row.price * 100)", ["price"], field="f").to_sql(table.c, "sqlite")
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO t VALUES ({stored})"))
        with pytest.raises(sa.exc.OperationalError, match=SQLITE_GUARD_ERROR):
            conn.execute(sa.select(sql)).all()
    engine.dispose()


def test_sqlite_numeric_null_stays_null(sqlite_table: tuple[sa.Engine, sa.Table]) -> None:
    engine, table = sqlite_table
    assert sql_value(engine, table, "int(row.price * 100)", {"price": None}) is None
    assert sql_value(engine, table, "row.price is None", {"price": None}) is True


@pytest.mark.parametrize("text", ["replace(row.note, 'ab', 'c')", "replace(row.note, 'a', 'b')",
                                  "replace(row.note, 'a', '')"])
def test_replace_that_cannot_lengthen_the_text_is_pushed_down(text: str) -> None:
    cols = {"note": sa.column("note", sa.String)}
    assert compile_expression(text, list(cols), field="f").to_sql(cols, "postgresql") is not None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("row.amount / row.qty", "could divide by zero"),
        ("row.amount // 2", "integers only"),
        ("round(row.amount)", "NUMERIC only"),
        ("str(row.amount)", "str() on float values"),
        ("row.note < 3", "comparing text with int"),
        ("int(row.note)", "int() on text values"),
        ("row.other + 1", "the SQL type of a column is unknown"),
        # the row path fails a row whose lengthened text would pass MAX_TEXT_LENGTH; SQL would write it
        ("replace(row.note, 'a', 'bb')", "replace() that may lengthen the text is not pushed down"),
        ("replace(row.note, 'a', row.note)", "replace() that may lengthen the text is not pushed down"),
    ],
)
def test_inexact_sql_is_refused_with_the_reason(text: str, reason: str) -> None:
    cols = {
        "amount": sa.column("amount", sa.Float),
        "qty": sa.column("qty", sa.Integer),
        "note": sa.column("note", sa.String),
        "other": sa.column("other"),
    }
    with pytest.raises(NotPushable) as info:
        compile_expression(text, list(cols), field="spec.transform.1.set.y").to_sql(cols, "sqlite")
    assert info.value.reason.startswith("spec.transform.1.set.y: ")
    assert reason in info.value.reason


def test_other_dialects_are_refused() -> None:
    cols = {"qty": sa.column("qty", sa.Integer)}
    with pytest.raises(NotPushable, match="only on postgresql and sqlite"):
        compile_expression("row.qty + 1", ["qty"], field="f").to_sql(cols, "mysql")


@pytest.mark.postgres
def test_postgres_numeric_int_is_exact(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    md = sa.MetaData()
    table = sa.Table("t", md, sa.Column("amount", sa.Numeric(12, 2)), sa.Column("note", sa.Text))
    md.create_all(engine)
    try:
        assert sql_value(engine, table, "int(row.amount * 100.0)", {"amount": Decimal("0.29")}) == 29
        assert sql_value(engine, table, "int(row.amount)", {"amount": Decimal("-2.70")}) == -2
        assert sql_value(engine, table, "row.note < 'a'", {"note": "Z"}) is True  # code points, whatever the locale
        assert sql_value(engine, table, "lower(row.note)", {"note": "ÀBC"}) == "Àbc"
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- SQL == Python, for all rows

KINDS = ("int", "float", "text", "bool")
SMALL_INT = st.integers(-20, 20)
SMALL_FLOAT = st.integers(-2000, 2000).map(lambda n: n / 100)  # no subnormals: PostgreSQL refuses underflow
TEXT = st.text(alphabet="aAzZ _-éÉß🚀", max_size=6)


def column_for(kind: str, pg: bool) -> st.SearchStrategy[str]:
    names = {
        "int": ["row.i", "row.n"] if pg else ["row.i"],
        "float": ["row.f"],
        "text": ["row.s"],
        "bool": ["row.b"],
        "decimal": ["row.d"] if pg else ["row.d", "row.e"],  # SQLite: NUMERIC(7,2) and NUMERIC(6,3)
    }[kind]
    return st.sampled_from(names)


def literal_for(kind: str) -> st.SearchStrategy[str]:
    return {
        "int": SMALL_INT.map(str),
        "float": SMALL_FLOAT.map(repr),
        "text": TEXT.map(repr),
        "bool": st.sampled_from(["True", "False"]),
        "decimal": SMALL_INT.map(str),
    }[kind]


def expressions(kind: str, depth: int, pg: bool) -> st.SearchStrategy[str]:
    numeric = ["int", "float", "decimal"]
    leaf = st.one_of(column_for(kind, pg), literal_for(kind), st.just("None"))
    if depth == 0:
        return leaf

    def sub(k: str) -> st.SearchStrategy[str]:
        return expressions(k, depth - 1, pg)

    options: list[st.SearchStrategy[str]] = [leaf]
    same = sub(kind)
    options.append(
        st.tuples(st.sampled_from(["bool"]).flatmap(sub), same, same).map(lambda t: f"({t[1]} if {t[0]} else {t[2]})")
    )
    options.append(st.tuples(same, same).map(lambda t: f"coalesce({t[0]}, {t[1]})"))
    if kind in numeric:
        options += [
            st.tuples(same, st.sampled_from(["+", "-", "*"]), same).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            same.map(lambda a: f"(-{a})"),
            same.map(lambda a: f"abs({a})"),
        ]
        if kind == "int":
            options += [
                st.tuples(same, st.sampled_from(["//", "%"]), SMALL_INT.filter(bool)).map(
                    lambda t: f"({t[0]} {t[1]} {t[2]})"
                ),
                st.sampled_from(numeric).flatmap(sub).map(lambda a: f"int({a})"),
                sub("text").map(lambda a: f"length({a})"),
            ]
        if kind == "float":
            options += [
                st.tuples(st.sampled_from(["int", "float"]).flatmap(sub), SMALL_FLOAT.filter(bool)).map(
                    lambda t: f"({t[0]} / {t[1]!r})"
                ),
                st.sampled_from(numeric).flatmap(sub).map(lambda a: f"float({a})"),
            ]
        if kind == "decimal":
            options += [
                st.tuples(same, SMALL_FLOAT).map(lambda t: f"({t[0]} * {t[1]!r})"),
                st.tuples(same, st.integers(-2, 3)).map(lambda t: f"round({t[0]}, {t[1]})"),
                sub("int").map(lambda a: f"decimal({a})"),
            ]
    if kind == "text":
        options += [
            same.map(lambda a: f"lower({a})"),
            same.map(lambda a: f"upper({a})"),
            same.map(lambda a: f"trim({a})"),
            st.tuples(same, same).map(lambda t: f"concat({t[0]}, {t[1]})"),
            st.tuples(same, st.integers(1, 4), st.integers(0, 4)).map(lambda t: f"substr({t[0]}, {t[1]}, {t[2]})"),
            st.tuples(same, TEXT.map(repr), same).map(lambda t: f"replace({t[0]}, {t[1]}, {t[2]})"),
            sub("int").map(lambda a: f"str({a})"),
            st.tuples(same, same).map(lambda t: f"nullif({t[0]}, {t[1]})"),
        ]
    if kind == "bool":
        comparable = st.sampled_from(["numeric", "text", "bool"])

        def comparison(group: str) -> st.SearchStrategy[str]:
            if group == "numeric":
                pair = st.tuples(st.sampled_from(numeric).flatmap(sub), st.sampled_from(numeric).flatmap(sub))
            else:
                pair = st.tuples(sub(group if group == "text" else "bool"), sub(group if group == "text" else "bool"))
            ops = ["==", "!="] if group == "bool" else ["==", "!=", "<", "<=", ">", ">="]
            pair = pair.filter(lambda p: "None" not in p)  # '== None' is refused at compile time
            return st.tuples(pair, st.sampled_from(ops)).map(lambda t: f"({t[0][0]} {t[1]} {t[0][1]})")

        options += [
            comparable.flatmap(comparison),
            st.tuples(same, st.sampled_from(["and", "or"]), same).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            same.map(lambda a: f"(not {a})"),
            st.tuples(st.sampled_from(KINDS).flatmap(sub), st.booleans()).map(
                lambda t: f"({t[0]} is {'not ' if t[1] else ''}None)"
            ),
            st.tuples(sub("int"), st.lists(SMALL_INT, min_size=1, max_size=3)).map(
                lambda t: f"({t[0]} in ({', '.join(map(str, t[1]))},))"
            ),
            st.tuples(sub("text"), st.lists(TEXT, min_size=1, max_size=3), st.booleans()).map(
                lambda t: f"({t[0]} {'not in' if t[2] else 'in'} ({', '.join(map(repr, t[1]))},))"
            ),
        ]
    return st.one_of(*options)


def short(text: str) -> bool:
    return len(text) <= 400


def rows_for(pg: bool) -> st.SearchStrategy[list[dict[str, Any]]]:
    fields: dict[str, st.SearchStrategy[Any]] = {
        "i": SMALL_INT,
        "f": SMALL_FLOAT,
        "s": TEXT,
        "b": st.booleans(),
    }
    if pg:
        fields |= {"n": st.integers(-100, 100), "d": st.integers(-10000, 10000).map(lambda n: Decimal(n) / 100)}
    else:  # SQLite NUMERIC(7,2) and NUMERIC(6,3): x.x5, negative values and 0 among them
        fields |= {"d": st.integers(-99999, 99999).map(lambda n: Decimal(n).scaleb(-2)),
                   "e": st.integers(-9999, 9999).map(lambda n: Decimal(n).scaleb(-3))}
    row = st.fixed_dictionaries({k: st.one_of(st.none(), v) for k, v in fields.items()})
    return st.lists(row, min_size=1, max_size=6)


def equal(py: Any, db: Any) -> bool:
    if py is None or db is None:
        return py is None and db is None
    if isinstance(py, bool) or isinstance(db, bool):
        return bool(py) is bool(db) and type(py) is type(db)
    return py == db  # int/float/Decimal by value, text exactly


def check_agreement(engine: sa.Engine, table: sa.Table, rows: list[dict[str, Any]], texts: list[str],
                    *, overflow: bool = False) -> int:
    """How many of ``texts`` are pushed down, each equal to the row path on every row. ``overflow``: or
    failing the statement with SQLite's "integer overflow" (the run then continues on the row path)."""
    names = [c.name for c in table.columns if c.name != "id"]
    pushed = 0
    with engine.begin() as conn:
        conn.execute(table.delete())
        conn.execute(table.insert(), [{"id": n, **r} for n, r in enumerate(rows)])
        stored = conn.execute(sa.select(*[table.c[c] for c in names]).order_by(table.c.id)).all()
        for text in texts:
            expr = compile_expression(text, names, field="f")
            try:
                sql = expr.to_sql(table.c, engine.dialect.name)
            except NotPushable:
                for values in stored:  # the row path still computes (or reports a row error)
                    with contextlib.suppress(RowError):
                        expr.python(tuple(values))
                continue
            pushed += 1
            try:
                with conn.begin_nested():
                    got = [v for _, v in conn.execute(sa.select(table.c.id, sql).order_by(table.c.id))]
            except sa.exc.OperationalError as err:
                if overflow and SQLITE_GUARD_ERROR in str(err.orig):
                    continue
                raise
            for values, db in zip(stored, got, strict=True):
                py = expr.python(tuple(values))  # a pushable expression never fails on stored values
                assert equal(py, db), f"{text} on {tuple(values)}: python {py!r}, sql {db!r}"
                # an int stays an int (a REAL equal to it by value is the rounding of one that left 64 bits)
                assert not overflow or type(py) is not int or type(db) is int, f"{text}: sql {db!r}"
    return pushed


def agreement_table(engine: sa.Engine, pg: bool) -> sa.Table:
    md = sa.MetaData()
    cols = [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("i", sa.BigInteger),
        sa.Column("f", sa.Double),
        sa.Column("s", sa.Text),
        sa.Column("b", sa.Boolean),
    ]
    if pg:
        cols += [sa.Column("n", sa.Integer), sa.Column("d", sa.Numeric)]
    else:
        cols += [sa.Column("d", sa.Numeric(7, 2)), sa.Column("e", sa.Numeric(6, 3))]
    table = sa.Table("agree", md, *cols)
    md.create_all(engine)
    return table


@pytest.fixture(scope="module")
def sqlite_agreement() -> Iterator[tuple[sa.Engine, sa.Table]]:
    engine = sqlite_engine()
    yield engine, agreement_table(engine, pg=False)
    engine.dispose()


ANY_KIND = st.sampled_from((*KINDS, "decimal"))


@given(
    rows=rows_for(pg=False),
    texts=st.lists(ANY_KIND.flatmap(lambda k: expressions(k, 3, False)).filter(short), min_size=1, max_size=4),
)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_python_and_sqlite_agree(
    sqlite_agreement: tuple[sa.Engine, sa.Table], rows: list[dict[str, Any]], texts: list[str]
) -> None:
    engine, table = sqlite_agreement
    check_agreement(engine, table, rows, texts)


@pytest.fixture(scope="module")
def pg_agreement(pg_server: str) -> Iterator[tuple[sa.Engine, sa.Table]]:
    name = f"t_{uuid.uuid4().hex[:12]}"  # a database of its own for the module (hypothesis reuses it)
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = sa.create_engine(sa.make_url(pg_server).set(database=name))
    try:
        yield engine, agreement_table(engine, pg=True)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
@given(
    rows=rows_for(pg=True),
    texts=st.lists(
        st.sampled_from((*KINDS, "decimal")).flatmap(lambda k: expressions(k, 3, True)).filter(short),
        min_size=1,
        max_size=4,
    ),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_python_and_postgres_agree(
    pg_agreement: tuple[sa.Engine, sa.Table], rows: list[dict[str, Any]], texts: list[str]
) -> None:
    engine, table = pg_agreement
    check_agreement(engine, table, rows, texts)


def test_most_generated_expressions_are_pushed_down(sqlite_agreement: tuple[sa.Engine, sa.Table]) -> None:
    engine, table = sqlite_agreement
    texts = [
        "int(row.f * 100.0)",
        "coalesce(row.s, '') < 'b'",
        "row.i // 3 + row.i % 3",
        "(row.f / 2.0) if row.b else 0.5",
        "concat(lower(row.s), str(row.i))",
        "row.i in (1, 2) or row.s is None",
        "int(row.d * 100) + row.i",
        "row.d * 2.5 > row.e",
        "coalesce(row.d, 0) - abs(row.e)",
    ]
    row = {"i": 7, "f": 0.29, "s": "Ab", "b": True, "d": Decimal("0.29"), "e": Decimal("-1.005")}
    assert check_agreement(engine, table, [row], texts) == len(texts)


# SQLite computes + - * of integers in 64 bits and gives a REAL where the exact result leaves them (the row
# path keeps Python's exact int): the statement fails instead, as PostgreSQL's "bigint out of range" does.
BIG_INT = st.sampled_from([2**62, -(2**62), 2**63 - 1, -(2**63), 3037000500, 2**53 + 1])


@given(
    rows=st.lists(st.fixed_dictionaries({"i": st.one_of(st.none(), BIG_INT, SMALL_INT),
                                         "f": st.one_of(st.none(), st.sampled_from([9.3e18, -9.3e18, 1e300, 0.5]))}),
                  min_size=1, max_size=6),
    texts=st.lists(st.sampled_from(("int", "bool")).flatmap(lambda k: expressions(k, 3, False)).filter(short),
                   min_size=1, max_size=4),
)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_sqlite_integers_beyond_64_bits_agree_or_fail_the_statement(
    sqlite_agreement: tuple[sa.Engine, sa.Table], rows: list[dict[str, Any]], texts: list[str]
) -> None:
    engine, table = sqlite_agreement
    check_agreement(engine, table, rows, texts, overflow=True)


@pytest.mark.parametrize("text", [
    "row.i * 4", "row.i * 4 + 1 - row.i * 4", "row.i * 4 + 1 > row.i * 4", "-row.i", "abs(row.i) * 2",
    "str(row.i + row.i)", "float(row.i * 3)", "coalesce(row.i * 3, 0) // 2", "(row.i - 1 if row.b else 0) in (1,)",
    "int(row.f)",
])
def test_sqlite_integer_beyond_64_bits_fails_the_statement_instead_of_becoming_a_real(
    sqlite_agreement: tuple[sa.Engine, sa.Table], text: str
) -> None:
    engine, table = sqlite_agreement
    names = [c.name for c in table.columns if c.name != "id"]
    row = {"id": 0, "i": -(2**63), "f": 1e19, "b": True}
    expr = compile_expression(text, names, field="f")
    sql = expr.to_sql(table.c, "sqlite")  # pushed down, with the check
    with engine.begin() as conn:
        conn.execute(table.delete())
        conn.execute(table.insert(), [row])
        with pytest.raises(sa.exc.OperationalError, match=SQLITE_GUARD_ERROR):
            conn.execute(sa.select(sql)).all()
        conn.execute(table.update().values(i=2**31, f=1e18))  # within 64 bits: SQL gives the row path's value
        stored = conn.execute(sa.select(*[table.c[c] for c in names])).one()
        assert conn.execute(sa.select(sql)).scalar_one() == expr.python(tuple(stored))


def test_sqlite_integer_literal_beyond_64_bits_is_not_pushed_down() -> None:
    expr = compile_expression("row.i + 99999999999999999999", ["i"], field="f")
    cols = {"i": sa.column("i", sa.BigInteger)}
    with pytest.raises(NotPushable, match="99999999999999999999 does not fit SQLite's 64-bit integers"):
        expr.to_sql(cols, "sqlite")


@pytest.mark.parametrize(("text", "expected"), [("1 is not None", True), ("'a' is None", False),
                                                ("None is None", True), ("(2 + 3) is None", False)])
def test_a_literal_tested_for_none_is_folded_without_a_syntax_warning(text: str, expected: bool) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Python warns about '1 is not None' in generated code
        expression = compile_expression(text, ("a",), field="spec.transform.0.filter")
    assert expression.python((None,)) is expected


def test_a_bare_name_checked_without_columns_is_a_config_error_with_the_hint() -> None:
    # the model's validation checks without columns (known only at run time); this raised TypeError
    from activedataflow.expressions import check_expression

    with pytest.raises(ConfigError, match=r"unknown name 'amount'; did you mean row\.amount\? at position 1"):
        check_expression("amount > 1", field="spec.transform[0].filter")
