"""DataFlow manifests generated from the CRD schema, valid and mutated: the model gives a flow or one
ConfigError naming a field path, never a traceback, never a hang; ``adf run`` exits 0/1/2 as the contract says."""

from __future__ import annotations

import copy
import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from activedataflow.errors import ConfigError
from activedataflow.model import (
    DataFlow,
    RedisSink,
    RedisSource,
    SqlSink,
    SqlSource,
    load_manifests,
    parse_dataflow,
)
from activedataflow.operator.crdgen import dataflow_crd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import PAID_ORDERS
from tests.bounded import bounded as guarded
from tests.cli_helpers import adf, sqlite_fact, sqlite_orders

SCHEMA: dict[str, Any] = dataflow_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
FIELD_PATH = re.compile(r"(apiVersion|kind|metadata|spec)(\.[^\s]+)?")


def bounded(fn: Callable[[], Any]) -> Any:
    return guarded(fn, hang='validation did not finish')


# --------------------------------------------------------------------------- valid manifests from the schema

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
EXPRESSIONS = st.sampled_from(["row.id > 1", "row.status == 'paid'", "row.amount is not None and row.id < 10",
                               "coalesce(row.note, '') != ''", "row.id in (1, 2, 3)"])
VALUES = st.sampled_from(["int(row.amount * 100.0)", "lower(row.status)", "concat(row.a, '-', str(row.id))",
                          "row.id + 1", "round(decimal(row.amount), 2)"])
# Strings the schema cannot describe (cron, zones, URLs...) come from samples, by the field's name.
SAMPLES: dict[str, st.SearchStrategy[Any]] = {
    "schedule": st.sampled_from(["*/15 * * * *", "@hourly", "0 3 * * 1-5", "30 2 * * *"]),
    "interval": st.sampled_from(["15m", "1h", "5m", "2h", "24h"]),
    "timeZone": st.sampled_from(["Europe/Berlin", "UTC", "America/New_York", "Australia/Lord_Howe"]),
    "url": st.sampled_from(["sqlite:///shop.db", "postgresql+psycopg://db/shop", "redis://cache:6379/0"]),
    "python": st.sampled_from(["mycompany.flows:enrich", "flows:f"]),
    "keyTemplate": st.sampled_from(["order:{id}", "{id}:{status}"]),
    "filter": EXPRESSIONS,
    "webhook": st.one_of(st.just({"url": "https://hooks.example/x"}), st.just({"secretRef": {"name": "alerts"}})),
}


def from_schema(schema: dict[str, Any], name: str = "") -> st.SearchStrategy[Any]:
    """Values of one structural-schema node; required properties always, optional ones sometimes."""
    if name in SAMPLES:
        return SAMPLES[name]
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        props = schema["properties"]
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: from_schema(v, k) for k, v in props.items() if k in required},
            optional={k: from_schema(v, k) for k, v in props.items() if k not in required},
        )
    if kind == "object":  # additionalProperties: rename / set / labels
        value = VALUES if name == "set" else from_schema(schema.get("additionalProperties", {"type": "string"}))
        return st.dictionaries(NAMES, value, min_size=1, max_size=3)
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), name), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 3), 3), unique=name in ("columns", "uniqueBy"))
    if kind == "string":
        return NAMES if schema.get("minLength") or not schema.get("pattern") else st.just("https://hooks.example/x")
    if kind == "integer":
        low = schema.get("minimum", 0)
        return st.integers(low, schema.get("maximum", low + 10_000))
    if kind == "boolean":
        return st.booleans()
    return st.one_of(st.none(), st.integers(-5, 5), NAMES, st.lists(NAMES, min_size=1, max_size=2))


SPEC = SCHEMA["properties"]["spec"]
VARIANTS = {"source": {"sql": SqlSource, "redis": RedisSource}, "sink": {"sql": SqlSink, "redis": RedisSink}}


WHERE = st.one_of(
    st.tuples(NAMES, st.sampled_from(["=", "!=", "<", ">=", "like"]), st.integers(-5, 5) | NAMES).map(
        lambda t: {"column": t[0], "op": t[1], "value": t[2]}),
    st.tuples(NAMES, st.sampled_from(["in", "not in"]), st.lists(st.integers(0, 9), min_size=1, max_size=3)).map(
        lambda t: {"column": t[0], "op": t[1], "value": t[2]}),
    st.tuples(NAMES, st.sampled_from(["is null", "is not null"])).map(lambda t: {"column": t[0], "op": t[1]}),
)
UNIQUE = st.lists(NAMES, min_size=1, max_size=2, unique=True)
# What the variants require of each other (CEL rules and model validators), drawn explicitly:
# (part, tag) -> (the fields drawn here, a strategy of them)
RULED: dict[tuple[str, str], st.SearchStrategy[dict[str, Any]]] = {
    ("source", "sql"): st.fixed_dictionaries(
        {"table": NAMES},
        optional={"where": st.lists(WHERE, max_size=2), "incremental": NAMES.map(lambda c: {"cursorColumn": c})}),
    ("source", "redis"): st.one_of(NAMES.map(lambda n: {"stream": n}), NAMES.map(lambda n: {"keyPattern": n + ":*"}))
    .flatmap(lambda d: st.fixed_dictionaries({k: st.just(v) for k, v in d.items()},
                                             optional={"incremental": st.booleans()})),
    ("sink", "sql"): st.one_of(
        st.fixed_dictionaries({"table": NAMES}, optional={"mode": st.just("insert")}),
        st.tuples(NAMES, UNIQUE, st.none() | UNIQUE).map(lambda t: {
            "table": t[0], "mode": "upsert", "uniqueBy": t[1],
            **({} if t[2] is None else {"updateOnly": [c for c in t[2] if c not in t[1]]})})),
    ("sink", "redis"): SAMPLES["keyTemplate"].map(lambda k: {"keyTemplate": k}),
}
RULED_FIELDS = {"table", "where", "incremental", "stream", "keyPattern", "mode", "uniqueBy", "updateOnly",
                "keyTemplate"}


def endpoint(part: str) -> st.SearchStrategy[dict[str, Any]]:
    """A source or sink: the CRD merges the variants into one object; keep one variant's fields."""
    props = SPEC["properties"][part]["properties"]

    def of(tag: str) -> st.SearchStrategy[dict[str, Any]]:
        fields = {f.alias or n for n, f in VARIANTS[part][tag].model_fields.items()}
        fields -= {"type", "connection", *RULED_FIELDS}
        variant = {"type": "object", "properties": {k: v for k, v in props.items() if k in fields}}
        return st.tuples(from_schema(variant), RULED[(part, tag)], connection()).map(
            lambda t, tag=tag: {**t[0], **t[1], "type": tag, "connection": t[2]})

    return st.sampled_from(sorted(VARIANTS[part])).flatmap(of)


def connection() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(SAMPLES["url"].map(lambda u: {"url": u}),
                     NAMES.map(lambda n: {"secretRef": {"name": n.replace("_", "-"), "key": "url"}}))


STEP = st.one_of(
    st.dictionaries(NAMES, NAMES, min_size=1, max_size=2).map(lambda d: {"rename": d}),
    st.lists(NAMES, min_size=1, max_size=3, unique=True).map(lambda c: {"select": c}),
    st.lists(NAMES, min_size=1, max_size=2, unique=True).map(lambda c: {"drop": c}),
    st.dictionaries(NAMES, VALUES, min_size=1, max_size=2).map(lambda d: {"set": d}),
    EXPRESSIONS.map(lambda e: {"filter": e}),
    SAMPLES["python"].map(lambda p: {"python": p}),
)
TRIGGER = st.one_of(SAMPLES["schedule"].map(lambda s: {"schedule": s}),
                    SAMPLES["interval"].map(lambda s: {"interval": s}))
SIMPLE = {k: v for k, v in SPEC["properties"].items()
          if k not in ("source", "sink", "transform", "schedule", "interval", "notify")}
SPECS = st.tuples(from_schema({"type": "object", "properties": SIMPLE}), TRIGGER, endpoint("source"),
                  endpoint("sink"), st.lists(STEP, max_size=4),
                  st.lists(from_schema(SPEC["properties"]["notify"]["items"]), max_size=2)).map(
    lambda t: {**t[0], **t[1], "source": t[2], "sink": t[3], "transform": t[4], "notify": t[5]})
MANIFESTS = st.tuples(st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True), SPECS).map(
    lambda t: {"apiVersion": "activedataflow.io/v1alpha1", "kind": "DataFlow",
               "metadata": {"name": t[0], "namespace": "shop"}, "spec": t[1]})


# --------------------------------------------------------------------------- mutations

WRONG_TYPES = st.sampled_from([None, 0, -1, 1.5, float("nan"), True, "", "x", [], [1], {}, {"a": 1}, 10**30])
OUT_OF_RANGE = st.sampled_from([-1, 0, 10**6 + 1, 2**63, 10**4000, -(2**63) - 1])
BAD_EXPRESSIONS = st.sampled_from([
    "row.", "row.amount > >", "__import__('os')", "row.a ** 2", "lambda: 1", "x" * 10_001, "-" * 5000 + "row.a",
    " and ".join(["row.id"] * 900), " < ".join(["row.id"] * 1100), "0x" + "f" * 4000, "9" * 4301,
    "(" * 500 + "1" + ")" * 500, "not " * 2400 + "row.a", "f'{row.a}'", "row['a'", "\x00", "row.a if", "",
])
BAD_SCHEDULES = st.sampled_from(["61 * * * *", "* * *", "", " ", "@every 5m", "@often", "a b c d e", "*/0 * * * *",
                                 "1," * 5000 + "1 * * * *", "0 0 31 2 *", "\x00", "0 0 * * 8", "60-70 * * * *"])
BAD_STRINGS = st.sampled_from(["", " ", "\x00", "a" * 100_000, "Europe", "Europe/", "../../etc/passwd",
                               "é" * 300, "-", "A_b", "9" * 5000 + "h", "0s", "x:y:z", "{id"])


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def aliased(levels: int, width: int = 10) -> Any:
    """What YAML aliases make: each level lists the one below ``width`` times (width**levels values)."""
    value: Any = ["x"] * width
    for _ in range(levels):
        value = [value] * width
    return value


BLOAT = st.sampled_from([nested(60), nested(800), aliased(8), {"a": aliased(5, 100)}])


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``doc`` (dict keys, list indexes), the root excluded."""
    out: list[tuple[Any, ...]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        out.append((*prefix, key))
        out.extend(paths(value, (*prefix, key)))
    return out


def mutate(doc: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    how = data.draw(st.sampled_from(["type", "delete", "unknown", "range", "expression", "schedule", "string",
                                     "bloat"]))
    if how == "expression":
        steps = doc["spec"].setdefault("transform", [])
        text = data.draw(BAD_EXPRESSIONS)
        steps.insert(data.draw(st.integers(0, len(steps))),
                     data.draw(st.sampled_from([{"filter": text}, {"set": {"x": text}}])))
        return doc
    if how == "schedule":
        doc["spec"].pop("interval", None)
        doc["spec"]["schedule"] = data.draw(BAD_SCHEDULES)
        return doc
    path = data.draw(st.sampled_from(paths(doc)))
    *parent_path, key = path
    parent: Any = doc
    for part in parent_path:
        parent = parent[part]
    if how == "delete":
        del parent[key]
    elif how == "unknown":
        target = parent[key] if isinstance(parent[key], dict) else parent
        if isinstance(target, dict):
            target[data.draw(st.sampled_from(["extra", "Type", "tabel", "schema_", True, 1]))] = data.draw(WRONG_TYPES)
    elif how == "type":
        parent[key] = data.draw(WRONG_TYPES)
    elif how == "range":
        parent[key] = data.draw(OUT_OF_RANGE)
    elif how == "bloat":
        parent[key] = data.draw(BLOAT)
    else:
        parent[key] = data.draw(BAD_STRINGS)
    return doc


def check(doc: Any) -> DataFlow | ConfigError:
    """What the property asks of every manifest: a flow that round-trips, or one ConfigError naming a field."""
    try:
        flow = bounded(lambda: parse_dataflow(doc))
    except ConfigError as err:
        assert err.field, f"no field named: {err}"
        assert FIELD_PATH.fullmatch(err.field), err.field
        assert str(err).startswith(err.field), str(err)
        assert "Traceback" not in str(err)
        return err
    again = parse_dataflow({**doc, "spec": json.loads(json.dumps(flow.spec_dict()))})  # as the store keeps it
    assert again.spec == flow.spec
    return flow


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(MANIFESTS)
def test_manifests_generated_from_the_crd_schema_give_a_flow_or_a_config_error(doc: dict[str, Any]) -> None:
    check(doc)


@FUZZ
@given(MANIFESTS, st.data())
def test_mutated_manifests_give_a_flow_or_one_config_error_naming_a_field(doc: dict[str, Any],
                                                                          data: st.DataObject) -> None:
    check(mutate(doc, data))


def test_the_generator_makes_mostly_valid_manifests() -> None:
    """The property above is only worth something if the unmutated manifests validate."""
    valid: list[bool] = []

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(MANIFESTS)
    def collect(doc: dict[str, Any]) -> None:
        valid.append(isinstance(check(doc), DataFlow))

    collect()
    assert sum(valid) >= len(valid) // 2, f"{sum(valid)} of {len(valid)} valid"


# --------------------------------------------------------------------------- inputs the fuzzer found

BASE: dict[str, Any] = yaml.safe_load(PAID_ORDERS.read_text())


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        # ZoneInfo raised IsADirectoryError / OSError (a traceback) for these
        (lambda d: d["spec"].update(timeZone="Europe"), "spec.timeZone", "unknown IANA time zone 'Europe'"),
        (lambda d: d["spec"].update(timeZone="a" * 5000), "spec.timeZone", "unknown IANA time zone"),
        # stored as seconds, it overflowed the store's INTEGER column (adf run: a traceback, exit 3)
        (lambda d: (d["spec"].pop("schedule"), d["spec"].update(interval="99999999999999999999h",
                                                                runtime={"type": "heartbeat"})),
         "spec.interval", "must be at most 87600h (ten years)"),
        (lambda d: (d["spec"].pop("schedule"), d["spec"].update(interval="9" * 5000 + "h")),
         "spec.interval", "at most 32 characters"),  # MAX_INTERVAL_TEXT, as the CRD's maxLength
        # the kind was named in the message only: the error had no field
        (lambda d: d.update(kind="Foo"), "kind", "expected DataFlow, got 'Foo'"),
        (lambda d: d.pop("kind"), "kind", "expected DataFlow, got None"),
    ],
)
def test_inputs_that_used_to_crash_or_name_no_field(change: Callable[[dict[str, Any]], Any], field: str,
                                                    reason: str) -> None:
    doc = copy.deepcopy(BASE)
    change(doc)
    err = check(doc)
    assert isinstance(err, ConfigError)
    assert err.field == field and reason in str(err)


BASE_TEXT = PAID_ORDERS.read_text()
WHERE_PAID = 'op: "=", value: paid}'


def laughs(levels: int) -> str:
    """The "billion laughs": YAML aliases that expand to 10**levels values."""
    anchors = ["  l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    anchors += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return BASE_TEXT.replace("metadata:", "x-anchors:\n" + "\n".join(anchors) + "\nmetadata:", 1).replace(
        WHERE_PAID, f"op: in, value: *l{levels - 1}}}", 1)




@pytest.mark.parametrize(
    ("text", "message"),
    [
        # these hung (10**9 values validated and serialized) or crashed with RecursionError (exit 3, a traceback)
        (laughs(9), r"spec\.source\.where\.0\.value\.\d: the manifest holds more than 100000 values"),
        ("kind: DataFlow\nx: " + "[" * 5000 + "]" * 5000, "invalid YAML: nested more than 50 levels deep"),
        (BASE_TEXT.replace(WHERE_PAID, "op: in, value: " + "[" * 60 + "1" + "]" * 60 + "}", 1),
         r"spec\.source\.where\.0\.value\.0: nested more than 50 levels deep"),
    ],
    ids=["billion-laughs", "deep-yaml", "deep-value"],
)
def test_manifests_that_would_not_end_are_refused_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    assert WHERE_PAID in BASE_TEXT  # what the cases edit
    path = tmp_path / "flow.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        bounded(lambda: load_manifests(path))
    assert re.search(message, str(info.value)), str(info.value)


def test_a_manifest_with_a_few_aliases_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(laughs(2))  # 100 values
    (flow,) = load_manifests(path)
    assert flow.spec.source.type == "sql" and len(flow.spec.source.where[0].value) == 10


# --------------------------------------------------------------------------- adf run: exit status 0 / 1 / 2

ORDERS = [(1, 11, "10.00", "paid", "2026-01-01 10:00:00"), (2, 12, "5.50", "1e999999999", "2026-01-01 10:00:01")]
RUN_MANIFEST = """\
apiVersion: activedataflow.io/v1alpha1
kind: DataFlow
metadata: {{name: hostile, namespace: shop}}
spec:
  schedule: "*/15 * * * *"{spec}
  source:
    type: sql
    connection: {{url: "{src}"}}
    table: orders
    columns: [id, customer_id, amount, status, updated_at]
    batchSize: {batch}
  transform:
    - rename: {{customer_id: customer}}
    - filter: "{filter}"
    - set: {{amount_cents: "{value}"}}
    - drop: [amount]
  sink:
    type: sql
    connection: {{url: "{sink}"}}
    table: fact_orders
    mode: upsert
    uniqueBy: [id]{sink_extra}
"""
HOSTILE_SET = "int(decimal(row.status)) if row.status != 'paid' else 1"


def run_manifest(tmp_path: Path, **parts: str) -> tuple[int, str, int]:
    """``adf run`` on the orders above with parts of the manifest replaced: (exit status, stderr, rows written)."""
    sqlite_orders(tmp_path / "shop.db", ORDERS)
    sqlite_fact(tmp_path / "wh.db")
    fields = {"spec": "", "batch": "10", "filter": "row.amount > 0", "value": "int(row.amount * 100)",
              "sink_extra": "", "src": f"sqlite:///{tmp_path / 'shop.db'}", "sink": f"sqlite:///{tmp_path / 'wh.db'}"}
    path = tmp_path / "flow.yaml"
    path.write_text(RUN_MANIFEST.format(**(fields | parts)))
    result = adf("--store", f"sqlite:///{tmp_path / 'adf.db'}", "run", str(path))
    with sqlite3.connect(tmp_path / "wh.db") as db:
        written = int(db.execute("SELECT count(*) FROM fact_orders").fetchone()[0])
    return result.returncode, result.stderr, written


@pytest.mark.parametrize(
    ("parts", "code", "message", "written"),  # written: rows in the sink afterwards
    [
        ({}, 0, "", 2),
        # a row whose int() would not end fails with the reason: the run fails (1) unless the sink allows it
        ({"value": HOSTILE_SET}, 1, "spec.transform.2.set.amount_cents: int() of Decimal 1E+999999999: more than",
         None),  # what stays written is the transaction mode's to say
        ({"value": HOSTILE_SET, "sink_extra": "\n    maxFailedRecords: 1"}, 0, "", 1),
        # refused from the text: exit 2 naming the field and the position, before anything runs
        ({"filter": " and ".join(["row.id"] * 900)}, 2,
         "spec.transform.1.filter: expression nested more than 60 levels deep (a chain of 900) at position 1", 0),
        ({"filter": "row.id > 0x" + "f" * 4000}, 2,
         "spec.transform.1.filter: integer literal of more than 4300 digits at position 10", 0),
        ({"spec": "\n  timeZone: Europe"}, 2, "spec.timeZone: unknown IANA time zone 'Europe'", 0),
        ({"spec": "\n  tabel: x"}, 2, "spec.tabel: unknown field", 0),
        ({"batch": "0"}, 2, "spec.source.batchSize: Input should be greater than or equal to 1", 0),
    ],
    ids=["valid", "row-fails", "row-fails-allowed", "deep-chain", "huge-literal", "zone-directory", "unknown-field",
         "out-of-range"],
)
def test_adf_run_exits_as_the_contract_says(tmp_path: Path, parts: dict[str, str], code: int, message: str,
                                            written: int | None) -> None:
    returncode, stderr, rows = run_manifest(tmp_path, **parts)
    assert returncode == code, stderr
    assert message in stderr
    if code == 2:
        assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert written is None or rows == written
