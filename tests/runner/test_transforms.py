"""The transform pipeline: steps in order, errors naming the step, row errors, python steps and SQL push-down."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from activedataflow.errors import ConfigError
from activedataflow.expressions import NotPushable, RowError
from activedataflow.model import TransformStep, load_manifests
from activedataflow.runner.transforms import Pipeline, compile_transforms
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import PAID_ORDERS
from tests.flows import CONTRACT_STEPS, ORDERS


def pipeline(steps: list[dict[str, Any]], columns: tuple[str, ...] = ORDERS) -> Pipeline:
    return compile_transforms([TransformStep.model_validate(s) for s in steps], columns)


def test_the_contract_example() -> None:
    p = pipeline(CONTRACT_STEPS)
    assert p.columns == ("id", "customer", "status", "updated_at", "amount_cents")
    rows = [(1, 10, 0.29, "paid", "t1"), (2, 11, 0.0, "paid", "t2"), (3, 12, Decimal("0.29"), "paid", "t3")]
    assert p.apply(rows) == [(1, 10, "paid", "t1", 28), (3, 12, "paid", "t3", 29)]


def test_the_example_manifest_compiles() -> None:
    flow = load_manifests(PAID_ORDERS)[0]
    assert compile_transforms(flow.spec.transform, ORDERS).columns[-1] == "amount_cents"


def test_no_steps_is_the_identity() -> None:
    rows = [(1, 2, 3, "s", "u")]
    assert pipeline([]).apply(rows) is rows


def test_rename_swaps_and_keeps_positions() -> None:
    p = pipeline([{"rename": {"id": "status", "status": "id"}}])
    assert p.columns == ("status", "customer_id", "amount", "id", "updated_at")
    assert p.apply([(1, 2, 3, "s", "u")]) == [(1, 2, 3, "s", "u")]


def test_select_orders_and_drop_removes() -> None:
    assert pipeline([{"select": ["status", "id"]}]).apply([(1, 2, 3, "s", "u")]) == [("s", 1)]
    assert pipeline([{"select": ["status"]}]).apply([(1, 2, 3, "s", "u")]) == [("s",)]
    assert pipeline([{"drop": ["amount", "id"]}]).apply([(1, 2, 3, "s", "u")]) == [(2, "s", "u")]


def test_set_replaces_in_place_and_appends_new_columns_seeing_the_step_input() -> None:
    p = pipeline([{"set": {"amount": "row.amount * 2", "double": "row.amount * 2", "id": "row.id + 100"}}])
    assert p.columns == (*ORDERS, "double")
    assert p.apply([(1, 2, 3, "s", "u")]) == [(101, 2, 6, "s", "u", 6)]


def test_later_steps_see_earlier_results() -> None:
    p = pipeline(
        [
            {"set": {"cents": "int(row.amount * 100)"}},
            {"filter": "row.cents >= 100"},
            {"rename": {"cents": "amount_cents"}},
            {"select": ["id", "amount_cents"]},
        ]
    )
    assert p.apply([(1, 0, 0.5, "s", "u"), (2, 0, 1.5, "s", "u")]) == [(2, 150)]


def test_filter_keeps_only_true_not_none() -> None:
    p = pipeline([{"filter": "row.amount > 1"}])
    rows = [(1, 0, 2, "s", "u"), (2, 0, None, "s", "u"), (3, 0, 0, "s", "u")]
    assert p.apply(rows) == [rows[0]]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"rename": {"customer": "c"}}], "spec.transform.0.rename.customer: unknown column 'customer' (columns: id,"),
        ([{"rename": {"id": "status"}}], "spec.transform.0.rename.id: column 'status' would exist twice"),
        ([{"select": ["id", "nope"]}], "spec.transform.0.select.1: unknown column 'nope'"),
        ([{"select": ["id", "id"]}], "spec.transform.0.select.1: column 'id' is listed twice"),
        ([{"drop": list(ORDERS)}], "spec.transform.0.drop: no column would be left"),
        (
            [{"drop": ["amount"]}, {"set": {"cents": "row.amount * 100"}}],
            "spec.transform.1.set.cents: unknown column 'amount' at position 1",
        ),
        (
            [{"rename": {"customer_id": "customer"}}, {"filter": "row.customer_id > 0"}],
            "spec.transform.1.filter: unknown",
        ),
        ([{"filter": "row.amount * 2"}], "spec.transform.0.filter: must be a condition"),
        ([{"filter": "lower(row.status)"}], "spec.transform.0.filter: must be a condition"),
    ],
)
def test_compile_errors_name_the_step(steps: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        pipeline(steps)
    assert message in str(info.value)


def test_row_errors_are_reported_and_the_rest_of_the_batch_goes_on() -> None:
    p = pipeline([{"set": {"ratio": "row.amount / row.customer_id"}}, {"filter": "row.status > 'a'"}])
    rows = [(1, 2, 3, "b", "u"), (2, 0, 3, "b", "u"), (3, 1, 1, 7, "u"), (4, 4, 2, "c", "u")]
    failed: list[tuple[tuple[Any, ...], RowError]] = []
    out = p.apply(rows, on_error=lambda row, err: failed.append((row, err)))
    assert out == [(1, 2, 3, "b", "u", 1.5), (4, 4, 2, "c", "u", 0.5)]
    assert [(row[0], err.field, err.reason) for row, err in failed] == [
        (2, "spec.transform.0.set.ratio", "division by zero"),
        (3, "spec.transform.1.filter", "'>' not supported between instances of 'int' and 'str'"),
    ]


def test_hostile_values_fail_their_rows_with_the_reason_and_the_batch_goes_on() -> None:
    # int(decimal('1e999999999')) used to build a billion-digit integer: minutes of CPU for one row
    p = pipeline([{"set": {"n": "int(decimal(row.status))"}},
                  {"set": {"twice": "replace(replace(row.updated_at, 'a', row.updated_at), 'a', row.updated_at)"}}])
    rows = [(1, 0, 0, "1e999999999", "u"), (2, 0, 0, "12", "a" * 5000), (3, 0, 0, "7.9", "ab")]
    failed: list[tuple[int, str, str]] = []
    out = p.apply(rows, on_error=lambda row, err: failed.append((row[0], err.field or "", err.reason)))
    assert out == [(3, 0, 0, "7.9", "ab", 7, "abbb")]
    assert failed == [
        (1, "spec.transform.0.set.n", "int() of Decimal 1E+999999999: more than 4300 digits"),
        (2, "spec.transform.1.set.twice", "replace() would make text of 25000000 characters (more than 10000000)"),
    ]


def test_without_on_error_a_row_error_is_raised() -> None:
    p = pipeline([{"set": {"x": "int(row.status)"}}])
    with pytest.raises(RowError, match=r"spec.transform.0.set.x: int\(\) of text 'paid'"):
        p.apply([(1, 2, 3, "paid", "u")])


# --------------------------------------------------------------------------- python steps


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "adf_user_flows.py").write_text(
        textwrap.dedent(
            """
            def enrich(row):
                if row["status"] == "skip":
                    return None
                if row["status"] == "boom":
                    raise ValueError("cannot enrich")
                return {"id": row["id"], "label": row["status"].title(), "big": row["amount"] > 100}
            enrich.columns = ["id", "label", "big"]

            def undeclared(row):
                return {"id": row["id"], "twice": row["amount"] * 2}

            def wrong(row):
                return [row["id"]]

            not_callable = 3
            """
        )
    )
    (tmp_path / "adf_broken_module.py").write_text("raise RuntimeError('broken at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "adf_user_flows"
    for name in ("adf_user_flows", "adf_broken_module"):
        sys.modules.pop(name, None)


def test_python_step_with_declared_columns(user_module: str) -> None:
    p = pipeline([{"python": f"{user_module}:enrich"}, {"filter": "row.big"}])
    assert p.columns == ("id", "label", "big")
    failed: list[RowError] = []
    rows = [(1, 0, 500, "paid", "u"), (2, 0, 5, "paid", "u"), (3, 0, 500, "skip", "u"), (4, 0, 500, "boom", "u")]
    assert p.apply(rows, on_error=lambda row, err: failed.append(err)) == [(1, "Paid", True)]
    assert [str(e) for e in failed] == [
        f"spec.transform.0.python: {user_module}:enrich raised ValueError: cannot enrich"
    ]
    assert (
        p.pushdown_reason == "spec.transform.0.python: python steps run in the runner and cannot be pushed down to SQL"
    )


def test_python_step_columns_from_the_first_row(user_module: str) -> None:
    p = pipeline([{"python": f"{user_module}:undeclared"}, {"set": {"more": "row.twice + 1"}}])
    assert not p.columns_known
    with pytest.raises(ConfigError, match=r"declare them: undeclared\.columns"):
        _ = p.columns
    assert p.apply([(1, 0, 5, "s", "u"), (2, 0, 6, "s", "u")]) == [(1, 10, 11), (2, 12, 13)]
    assert p.columns == ("id", "twice", "more")


def test_python_step_checks_later_steps_when_the_columns_are_known(user_module: str) -> None:
    p = pipeline([{"python": f"{user_module}:undeclared"}, {"filter": "row.amount > 0"}])
    with pytest.raises(ConfigError, match=r"spec\.transform\.1\.filter: unknown column 'amount'"):
        p.apply([(1, 0, 5, "s", "u")])


def test_python_step_must_return_a_dict(user_module: str) -> None:
    p = pipeline([{"python": f"{user_module}:wrong"}])
    failed: list[RowError] = []
    assert p.apply([(1, 0, 5, "s", "u")], on_error=lambda row, err: failed.append(err)) == []
    assert "returned list; expected a dict or None" in str(failed[0])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("adf_no_such_module:fn", "cannot import module 'adf_no_such_module'"),
        ("adf_user_flows:missing", "module 'adf_user_flows' has no attribute 'missing'"),
        ("adf_user_flows:not_callable", "'adf_user_flows:not_callable' is not callable"),
        ("adf_broken_module:fn", "importing 'adf_broken_module' failed: RuntimeError: broken at import"),
    ],
)
def test_python_step_import_errors_name_the_step(user_module: str, spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        pipeline([{"rename": {"id": "key"}}, {"python": spec}])
    assert str(info.value).startswith("spec.transform.1.python: ")
    assert message in str(info.value)


# --------------------------------------------------------------------------- push-down


def orders_table(engine: sa.Engine) -> sa.Table:
    md = sa.MetaData()
    table = sa.Table(
        "orders",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("customer_id", sa.Integer),
        sa.Column("amount", sa.Float),
        sa.Column("status", sa.String),
        sa.Column("updated_at", sa.String),
    )
    md.create_all(engine)
    return table


@pytest.fixture
def orders() -> Iterator[tuple[sa.Engine, sa.Table]]:
    engine = sa.create_engine("sqlite://")
    yield engine, orders_table(engine)
    engine.dispose()


def run_sql(engine: sa.Engine, table: sa.Table, p: Pipeline) -> list[tuple[Any, ...]]:
    plan = p.to_sql(table.c, engine.dialect.name)
    assert list(plan.columns) == list(p.columns)
    with engine.connect() as conn:
        stmt = sa.select(*plan.select_list()).select_from(table).where(*plan.where).order_by(table.c.id)
        return [tuple(r) for r in conn.execute(stmt)]


def test_the_contract_example_pushed_down_equals_the_row_path(orders: tuple[sa.Engine, sa.Table]) -> None:
    engine, table = orders
    rows = [(1, 10, 0.29, "paid", "t"), (2, 11, -1.0, "paid", "t"), (3, 12, None, "open", "t"), (4, 13, 12.5, "x", "t")]
    with engine.begin() as conn:
        conn.execute(table.insert(), [dict(zip(ORDERS, r, strict=True)) for r in rows])
    p = pipeline(CONTRACT_STEPS)
    assert run_sql(engine, table, p) == p.apply(rows) == [(1, 10, "paid", "t", 28), (4, 13, "x", "t", 1250)]


def test_insert_select_can_be_built_from_the_plan(orders: tuple[sa.Engine, sa.Table]) -> None:
    engine, table = orders
    md = sa.MetaData()
    fact = sa.Table(
        "fact",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("customer", sa.Integer),
        sa.Column("status", sa.String),
        sa.Column("updated_at", sa.String),
        sa.Column("amount_cents", sa.Integer),
    )
    md.create_all(engine)
    p = pipeline(CONTRACT_STEPS)
    plan = p.to_sql(table.c, "sqlite")
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": 1, "customer_id": 5, "amount": 1.5, "status": "paid", "updated_at": "t"}])
        select = sa.select(*plan.select_list()).where(*plan.where)
        conn.execute(fact.insert().from_select(list(plan.columns), select))
        assert conn.execute(sa.select(fact)).all() == [(1, 5, "paid", "t", 150)]


def test_push_down_names_the_step_it_cannot_compute() -> None:
    p = pipeline([{"rename": {"customer_id": "c"}}, {"set": {"r": "row.amount / row.c"}}])
    cols = {c: sa.column(c, sa.Float if c == "amount" else sa.Integer) for c in ORDERS}
    reason = p.explain_pushdown(cols, "sqlite")
    assert reason is not None and reason.startswith("spec.transform.1.set.r: '/' by a non-literal could divide by zero")
    with pytest.raises(NotPushable):
        p.to_sql(cols, "sqlite")
    assert pipeline(CONTRACT_STEPS).explain_pushdown(cols, "sqlite") is None


STEP = st.one_of(
    st.just({"filter": "row.amount > 0"}),
    st.just({"filter": "row.status in ('paid', 'open') or row.amount is None"}),
    st.just({"set": {"amount": "coalesce(row.amount, 0.0) * 2.5"}}),
    st.just({"set": {"label": "concat(upper(coalesce(row.status, '?')), '-', str(row.id))"}}),
    st.just({"set": {"bucket": "row.customer_id // 3"}}),
    st.just({"set": {"cents": "int(row.amount * 100.0)"}}),
)


@given(
    steps=st.lists(STEP, max_size=5),
    rows=st.lists(
        st.tuples(
            st.none() | st.integers(-50, 50),
            st.none() | st.integers(-1000, 1000).map(lambda n: n / 8),
            st.none() | st.sampled_from(["paid", "open", "Paid", "é"]),
        ),
        max_size=8,
    ),
)
@settings(max_examples=40, deadline=None)
def test_pushed_down_pipelines_equal_the_row_path_on_sqlite(
    steps: list[dict[str, Any]], rows: list[tuple[Any, ...]]
) -> None:
    engine = sa.create_engine("sqlite://")
    table = orders_table(engine)
    data = [(i, c, a, s, "t") for i, (c, a, s) in enumerate(rows)]
    with engine.begin() as conn:
        if data:
            conn.execute(table.insert(), [dict(zip(ORDERS, r, strict=True)) for r in data])
    p = pipeline(steps)
    assert run_sql(engine, table, p) == p.apply(data)
    engine.dispose()
