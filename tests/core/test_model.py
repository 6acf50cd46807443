"""The DataFlow model: every validation rule reads ``<field path>: <reason>``; specs round-trip."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from activedataflow.errors import ConfigError
from activedataflow.model import (
    MAX_BACKOFF_SECONDS,
    MAX_COLUMN_NAME,
    MAX_COLUMNS,
    MAX_INTERVAL_TEXT,
    MAX_KEY_TEMPLATE,
    MAX_PYTHON_TEXT,
    MAX_STEPS,
    MAX_URL,
    MAX_WEBHOOKS,
    DataFlow,
    DataFlowSpec,
    Retries,
    Runtime,
    load_manifests,
    parse_dataflow,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import PAID_ORDERS

EXAMPLE = PAID_ORDERS
BASE: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())


def error_of(change: Callable[[dict[str, Any]], Any]) -> str:
    doc = copy.deepcopy(BASE)
    change(doc)
    with pytest.raises(ConfigError) as info:
        parse_dataflow(doc)
    return str(info.value)


def test_the_contract_example_validates() -> None:
    (flow,) = load_manifests(EXAMPLE)
    assert flow.key == ("shop", "paid-orders")
    spec = flow.spec
    assert spec.schedule == "*/15 * * * *" and spec.timeZone == "Europe/Berlin"
    assert spec.runtime.retries.limit == 3
    assert spec.source.type == "sql" and spec.source.incremental is not None
    assert spec.source.incremental.cursorColumn == "updated_at"
    assert [s.kind for s in spec.transform] == ["rename", "filter", "set", "drop"]
    assert spec.sink.type == "sql" and spec.sink.uniqueBy == ["id"]


def test_defaults_are_the_contracts() -> None:
    doc = copy.deepcopy(BASE)
    for key in ("suspend", "concurrencyPolicy", "successfulRunsHistoryLimit", "failedRunsHistoryLimit", "runtime"):
        doc["spec"].pop(key)
    spec = parse_dataflow(doc).spec
    assert (spec.suspend, spec.concurrencyPolicy, spec.runtime.type) == (False, "Forbid", "cronjob")
    assert (spec.successfulRunsHistoryLimit, spec.failedRunsHistoryLimit) == (3, 1)


REFUSED_CRON = "is not a cron schedule Kubernetes accepts"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["spec"]["sink"].pop("uniqueBy"), "spec.sink.uniqueBy: required when mode is upsert"),
        (lambda d: d["spec"].update(interval="15m"), "spec.schedule: exactly one of schedule or interval is required"),
        (lambda d: d["spec"].pop("schedule"), "spec.schedule: exactly one of schedule or interval is required"),
        (
            lambda d: d["spec"].update(schedule="61 * * * *"),
            f"spec.schedule: '61 * * * *' {REFUSED_CRON}: end of range (61) above maximum (59)",
        ),
        (lambda d: d["spec"].update(schedule="* * *"),
         f"spec.schedule: '* * *' {REFUSED_CRON}: expected exactly 5 fields"),
        (lambda d: d["spec"].update(schedule="@fortnightly"),
         f"spec.schedule: '@fortnightly' {REFUSED_CRON}: unrecognized descriptor"),
        (lambda d: d["spec"].update(schedule="0 0 * * 7"),
         f"spec.schedule: '0 0 * * 7' {REFUSED_CRON}: end of range (7) above maximum (6)"),
        (lambda d: d["spec"].update(schedule="0 0 31 2 *"), "spec.schedule: '0 0 31 2 *' never fires (no such day)"),
        (lambda d: d["spec"].update(timeZone="Mars/Base"), "spec.timeZone: unknown IANA time zone 'Mars/Base'"),
        (lambda d: d["spec"]["source"].update(type="mongo"), "spec.source.type: unknown type 'mongo'"),
        (lambda d: d["spec"]["source"].pop("type"), "spec.source.type: required"),
        (lambda d: d["spec"]["sink"].update(type="s3"), "spec.sink.type: unknown type 's3'"),
        (lambda d: d["spec"].update(colour="red"), "spec.colour: unknown field"),
        (lambda d: d["spec"]["sink"].update(colour="red"), "spec.sink.colour: unknown field"),
        (lambda d: d["spec"]["source"].pop("table"), "spec.source.table: required"),
        (
            lambda d: d["spec"]["transform"].append({"filter": "row.a > 0", "drop": ["a"]}),
            "spec.transform.4: each step needs exactly one of rename, select, drop, set, filter, python "
            "(got drop, filter)",
        ),
        (lambda d: d["spec"]["transform"].append({}), "spec.transform.4: each step needs exactly one of"),
        (lambda d: d["spec"]["transform"].append({"python": "no colon"}), "spec.transform.4.python: expected"),
        (
            lambda d: d["spec"]["source"]["where"].append({"column": "a", "op": "in", "value": 3}),
            "spec.source.where.1.value: a non-empty list is required with op 'in'",
        ),
        (
            lambda d: d["spec"]["source"]["where"].append({"column": "a", "value": None}),
            "spec.source.where.1.value: required with op '=' (use 'is null' to match nulls)",
        ),
        (
            lambda d: d["spec"]["source"]["where"].append({"column": "a", "op": "is null", "value": 1}),
            "spec.source.where.1.value: must be omitted with op 'is null'",
        ),
        (
            lambda d: d["spec"]["source"]["where"].append({"column": "a", "op": "~", "value": 1}),
            "spec.source.where.1.op: must be one of",
        ),
        (
            lambda d: d["spec"]["source"]["connection"].update(url="sqlite://"),
            "spec.source.connection.url: exactly one of url or secretRef is required",
        ),
        (lambda d: d["spec"]["source"].update(batchSize=0), "spec.source.batchSize: "),
        (lambda d: d["spec"]["sink"].update(mode="insert"), "spec.sink.updateOnly: only allowed when mode is upsert"),
        (
            lambda d: d["spec"]["sink"].update(updateOnly=["id"]),
            "spec.sink.updateOnly: must not repeat uniqueBy columns (id)",
        ),
        (lambda d: d["spec"]["sink"].update(transaction="sometimes"), "spec.sink.transaction: must be one of"),
        (
            lambda d: d["spec"].update(schedule=None, interval="15x"),
            "spec.interval: '15x' is not an interval like 15m, 1h30m or 90s",
        ),
        (lambda d: d["spec"].update(schedule=None, interval="90s"), "spec.interval: '90s' cannot be expressed exactly"),
        (lambda d: d["metadata"].update(name="Bad_Name"), "metadata.name: 'Bad_Name' is not a valid name"),
        (lambda d: d["metadata"].pop("name"), "metadata.name: required"),
        (lambda d: d["spec"].update(concurrencyPolicy="Sometimes"), "spec.concurrencyPolicy: must be one of"),
        (lambda d: d["spec"]["runtime"].update(type="lambda"), "spec.runtime.type: must be one of"),
        (
            lambda d: d["spec"].update(sink={"type": "redis", "connection": {"url": "redis://x"}, "keyTemplate": "k"}),
            "spec.sink.keyTemplate: needs at least one {column} placeholder",
        ),
        (
            lambda d: d["spec"].update(source={"type": "redis", "connection": {"url": "redis://x"}}),
            "spec.source.stream: exactly one of stream or keyPattern is required",
        ),
        (lambda d: d.update(kind="Other"), "kind: expected DataFlow, got 'Other'"),
        (lambda d: d.update(apiVersion="activedataflow.io/v2"), "apiVersion: must be one of"),
    ],
)
def test_every_rule_names_the_field(change: Callable[[dict[str, Any]], Any], message: str) -> None:
    assert message in error_of(change)


def test_the_error_carries_the_field_and_every_problem() -> None:
    doc = copy.deepcopy(BASE)
    doc["spec"]["sink"].pop("uniqueBy")
    doc["spec"]["colour"] = "red"
    with pytest.raises(ConfigError) as info:
        parse_dataflow(doc)
    assert info.value.field in ("spec.colour", "spec.sink.uniqueBy")
    assert "and 1 more" in str(info.value)


def test_an_interval_with_the_heartbeat_runtime_may_be_any_duration() -> None:
    doc = copy.deepcopy(BASE)
    doc["spec"].update(schedule=None, interval="1h30m", runtime={"type": "heartbeat"})
    doc["spec"].pop("schedule")
    assert parse_dataflow(doc).spec.interval_seconds == 5400


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flows.yaml"
    path.write_text(text)
    return path


def test_multi_document_manifests_skip_other_kinds(tmp_path: Path) -> None:
    second = copy.deepcopy(BASE)
    second["metadata"]["name"] = "second"
    other = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shop-db"}, "stringData": {"url": "x"}}
    path = write(tmp_path, yaml.safe_dump_all([BASE, other, None, second]))
    assert [f.name for f in load_manifests(path)] == ["paid-orders", "second"]


def test_a_list_kind_is_unpacked(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [BASE]}))
    assert [f.name for f in load_manifests(path)] == ["paid-orders"]


def test_duplicate_flow_names_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump_all([BASE, BASE]))
    with pytest.raises(ConfigError, match="DataFlow shop/paid-orders appears twice"):
        load_manifests(path)


def test_the_same_name_in_two_namespaces_is_two_flows(tmp_path: Path) -> None:
    other = copy.deepcopy(BASE)
    other["metadata"]["namespace"] = "other"
    assert len(load_manifests(write(tmp_path, yaml.safe_dump_all([BASE, other])))) == 2


def test_a_manifest_without_dataflows_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no DataFlow found"):
        load_manifests(write(tmp_path, "kind: Secret\napiVersion: v1\n"))


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid YAML at line 2"):
        load_manifests(write(tmp_path, "kind: DataFlow\n  spec: [\n"))


def test_errors_in_a_file_name_the_file(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE)
    doc["spec"]["sink"].pop("uniqueBy")
    path = write(tmp_path, yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=rf"^{tmp_path}/flows.yaml: spec.sink.uniqueBy: required when mode is upsert"):
        load_manifests(path)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read manifest"):
        load_manifests(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- round trip

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
CONNECTION = st.one_of(
    st.builds(
        lambda u: {"url": u}, st.sampled_from(["sqlite:///a.db", "postgresql+psycopg://h/db", "redis://h:6379/0"])
    ),
    st.builds(lambda n, k: {"secretRef": {"name": n, "key": k}}, st.sampled_from(["db", "warehouse"]), NAMES),
)
WHERE = st.one_of(
    st.builds(
        lambda c, op, v: {"column": c, "op": op, "value": v},
        NAMES,
        st.sampled_from(["=", "!=", "<", ">="]),
        st.one_of(st.integers(-5, 5), st.text(max_size=5), st.booleans()),
    ),
    st.builds(lambda c, op: {"column": c, "op": op}, NAMES, st.sampled_from(["is null", "is not null"])),
    st.builds(
        lambda c, v: {"column": c, "op": "in", "value": v}, NAMES, st.lists(st.integers(0, 9), min_size=1, max_size=3)
    ),
)
SQL_SOURCE = st.fixed_dictionaries(
    {"type": st.just("sql"), "connection": CONNECTION, "table": NAMES},
    optional={
        "schema": NAMES,
        "columns": st.lists(NAMES, min_size=1, max_size=4),
        "where": st.lists(WHERE, max_size=3),
        "orderBy": st.lists(NAMES, max_size=2),
        "limit": st.integers(1, 100),
        "batchSize": st.integers(1, 10_000),
        "incremental": st.builds(lambda c: {"cursorColumn": c}, NAMES),
    },
)
REDIS_SOURCE = st.fixed_dictionaries(
    {"type": st.just("redis"), "connection": CONNECTION},
    optional={"batchSize": st.integers(1, 100)},
).flatmap(lambda d: st.sampled_from([{**d, "stream": "events"}, {**d, "keyPattern": "order:*"}]))
STEP = st.one_of(
    st.builds(lambda a, b: {"rename": {a: b}}, NAMES, NAMES),
    st.builds(lambda c: {"select": c}, st.lists(NAMES, min_size=1, max_size=3)),
    st.builds(lambda c: {"drop": c}, st.lists(NAMES, min_size=1, max_size=3)),
    st.builds(lambda c: {"set": {c: "row.a + 1"}}, NAMES),
    st.just({"filter": "row.amount > 0"}),
    st.just({"python": "my.flows:enrich"}),
)


def sql_sink(draw: st.DrawFn) -> dict[str, Any]:
    sink: dict[str, Any] = {"type": "sql", "connection": draw(CONNECTION), "table": draw(NAMES)}
    sink["mode"] = draw(st.sampled_from(["insert", "upsert"]))
    if sink["mode"] == "upsert":
        sink["uniqueBy"] = ["id"]
        if draw(st.booleans()):
            sink["updateOnly"] = draw(st.lists(NAMES.filter(lambda n: n != "id"), min_size=1, max_size=3))
    sink["transaction"] = draw(st.sampled_from(["batch", "run", "none"]))
    return sink


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "description": draw(st.text(max_size=20)),
        "source": draw(st.one_of(SQL_SOURCE, REDIS_SOURCE)),
        "transform": draw(st.lists(STEP, max_size=4)),
        "suspend": draw(st.booleans()),
        "concurrencyPolicy": draw(st.sampled_from(["Forbid", "Allow", "Replace"])),
        "runtime": {
            "type": draw(st.sampled_from(["cronjob", "heartbeat"])),
            "retries": {"limit": draw(st.integers(0, 5))},
        },
    }
    if draw(st.booleans()):
        spec["schedule"] = draw(st.sampled_from(["*/15 * * * *", "@hourly", "0 2 * * 1-5", "30 2 * * *"]))
    else:
        spec["interval"] = draw(
            st.sampled_from(["15m", "1h", "24h"] + (["90s", "1h30m"] if spec["runtime"]["type"] == "heartbeat" else []))
        )
    if draw(st.booleans()):
        spec["timeZone"] = draw(st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]))
    spec["sink"] = draw(
        st.one_of(
            st.builds(sql_sink_of, st.data()),
            st.builds(
                lambda c, f: {"type": "redis", "connection": c, "keyTemplate": "o:{id}", "format": f},
                CONNECTION,
                st.sampled_from(["hash", "json"]),
            ),
        )
    )
    return spec


def sql_sink_of(data: st.DataObject) -> dict[str, Any]:
    return sql_sink(data.draw)


@given(spec=specs())
@settings(max_examples=50, deadline=None)
def test_a_valid_spec_round_trips_through_spec_dict(spec: dict[str, Any]) -> None:
    flow = parse_dataflow(
        {
            "apiVersion": "activedataflow.io/v1alpha1",
            "kind": "DataFlow",
            "metadata": {"name": "f", "namespace": "ns"},
            "spec": spec,
        }
    )
    dumped = flow.spec_dict()
    again = parse_dataflow({**flow.model_dump(mode="json", by_alias=True, exclude={"spec"}), "spec": dumped})
    assert again.spec == flow.spec
    assert again.spec_dict() == dumped
    assert DataFlowSpec.model_validate(yaml.safe_load(yaml.safe_dump(dumped))) == flow.spec  # survives YAML too


def test_a_dataflow_ignores_status() -> None:
    doc = copy.deepcopy(BASE)
    doc["status"] = {"lastRunStatus": "Succeeded"}
    assert isinstance(parse_dataflow(doc), DataFlow)


@pytest.mark.parametrize(
    ("index", "step", "expected"),
    [
        (1, {"filter": "row.amount > >"},
         "spec.transform.1.filter: invalid expression at position 14: invalid syntax in 'row.amount > >'"),
        (2, {"set": {"amount_cents": "int(row.amount *)"}},
         "spec.transform.2.set.amount_cents: invalid expression at position 17: invalid syntax"),
        (1, {"filter": "__import__('os')"}, "spec.transform.1.filter: unknown function '__import__' (functions: abs,"),
        (1, {"filter": "row.amount.real > 0"},
         "spec.transform.1.filter: attribute access is not allowed (only row.<column>)"),
    ],
)
def test_a_filter_or_set_expression_is_checked_at_validation_naming_field_and_position(
    index: int, step: dict[str, Any], expected: str
) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["spec"]["transform"][index] = step

    assert error_of(change).startswith(expected)


def test_columns_of_an_expression_are_left_to_the_run_which_knows_the_table() -> None:
    doc = copy.deepcopy(BASE)
    doc["spec"]["transform"][1] = {"filter": "row.no_such_column > 0"}
    assert parse_dataflow(doc).spec.transform[1].filter == "row.no_such_column > 0"


def test_notify_defaults_and_the_contract_example() -> None:
    doc = copy.deepcopy(BASE)
    doc["spec"]["notify"] = yaml.safe_load(
        "- on: [failure, recovery]\n  webhook: {secretRef: {name: alerts, key: url}}\n"  # YAML 1.1: `on` is true
        "- webhook: {url: 'https://hooks.example/T0'}\n"
        "- {'on': [success], webhook: {secretRef: {name: alerts}}}\n"
    )
    first, second, third = parse_dataflow(doc).spec.notify
    assert first.on == ["failure", "recovery"] and first.webhook.secretRef is not None
    assert first.webhook.secretRef.name == "alerts" and first.webhook.secretRef.key == "url"
    assert second.on == ["failure", "recovery"] and second.webhook.url == "https://hooks.example/T0"
    assert third.on == ["success"]
    assert parse_dataflow(copy.deepcopy(BASE)).spec.notify == []


def test_a_bare_on_key_as_kubectl_reads_it_means_on() -> None:
    doc = copy.deepcopy(BASE)
    doc["spec"]["notify"] = [{"true": ["success"], "webhook": {"url": "https://hooks.example/T0"}}]  # Go's YAML 1.1
    assert parse_dataflow(doc).spec.notify[0].on == ["success"]


@pytest.mark.parametrize(
    ("notify", "message"),
    [
        ([{"on": ["sometimes"], "webhook": {"url": "https://h.example/x"}}], "spec.notify.0.on.0: must be one of"),
        ([{"on": [], "webhook": {"url": "https://h.example/x"}}], "spec.notify.0.on:"),
        ([{"webhook": {}}], "spec.notify.0.webhook.url: exactly one of url or secretRef is required"),
        ([{"webhook": {"url": "ftp://h.example/x"}}], "spec.notify.0.webhook.url: must be an http:// or https:// URL"),
        ([{}], "spec.notify.0.webhook: required"),
        ([{"on": ["success"], "true": ["failure"], "webhook": {"url": "https://h.example/x"}}],
         "spec.notify.0: `on` is given twice (a bare `on:` key reads as `true` in YAML 1.1)"),
    ],
)
def test_notify_errors_name_the_field(notify: list[dict[str, Any]], message: str) -> None:
    assert message in error_of(lambda d: d["spec"].__setitem__("notify", notify))


@given(timeout=st.integers(1, 10**6), limit=st.integers(0, 100), backoff=st.integers(0, 3600))
def test_all_attempts_outlast_every_attempt_and_backoff(timeout: int, limit: int, backoff: int) -> None:
    """The Job's deadline (operator/cronjob.py) comes from this: never before the runner's last attempt ends."""
    from activedataflow.model import Runtime

    spec = {"timeoutSeconds": timeout, "retries": {"limit": limit, "backoffSeconds": backoff}}
    runtime = Runtime.model_validate(spec)
    total = runtime.all_attempts_seconds()
    assert total is not None
    assert total >= (limit + 1) * timeout + backoff * limit  # each backoff at least backoffSeconds
    assert total >= (limit + 1) * timeout + (runtime.retries.delay(limit) if limit else 0)


def test_a_run_without_a_timeout_has_no_deadline() -> None:
    from activedataflow.model import Runtime

    assert Runtime.model_validate({"retries": {"limit": 3}}).all_attempts_seconds() is None


@pytest.mark.parametrize(("path", "value"), [
    (("source", "limit"), 10**29),
    (("sink", "maxFailedRecords"), 2**53),
    (("runtime", "timeoutSeconds"), 10**12),
    (("runtime", "retries", "backoffSeconds"), 10**9),
    (("startingDeadlineSeconds",), 2**63),
    (("successfulRunsHistoryLimit",), 2**31),
])
def test_an_integer_beyond_what_the_run_can_hold_is_refused_naming_it(path: tuple[str, ...], value: int) -> None:
    def change(doc: dict[str, Any]) -> None:
        node = doc["spec"]
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    assert f"spec.{'.'.join(path)}: " in error_of(change)


def test_the_wait_between_attempts_doubles_up_to_a_day() -> None:
    retries = Retries(limit=100, backoffSeconds=30)
    assert [retries.delay(n) for n in (1, 2, 3)] == [30, 60, 120]
    assert retries.delay(100) == MAX_BACKOFF_SECONDS == 86_400
    runtime = Runtime(timeoutSeconds=60, retries=retries)
    assert runtime.all_attempts_seconds() is not None and runtime.all_attempts_seconds() < 2**63  # an activeDeadline


# Each length bound of the model (the CRD has it too: tests/k8s/test_crds.py): the field as an error names it,
# the bound, and the changes to the example's spec (dotted paths under spec; None removes) that pass it by one.
_REDIS_SINK = {"type": "redis", "connection": {"url": "redis://r"}, "keyTemplate": "{id}"}
_WEBHOOK = {"webhook": {"url": "https://h.example/x"}}
BOUND_CASES: list[tuple[str, int, dict[str, Any]]] = [
    ("spec.interval", MAX_INTERVAL_TEXT, {"schedule": None, "interval": "0" * (MAX_INTERVAL_TEXT - 1) + "5m"}),
    ("spec.transform", MAX_STEPS, {"transform": [{"drop": ["x"]}] * (MAX_STEPS + 1)}),
    ("spec.transform.0.python", MAX_PYTHON_TEXT, {"transform": [{"python": "m:" + "f" * (MAX_PYTHON_TEXT - 1)}]}),
    ("spec.sink.uniqueBy", MAX_COLUMNS, {"sink.uniqueBy": [f"c{i}" for i in range(MAX_COLUMNS + 1)]}),
    ("spec.sink.uniqueBy.0", MAX_COLUMN_NAME, {"sink.uniqueBy": ["c" * (MAX_COLUMN_NAME + 1)]}),
    ("spec.sink.updateOnly", MAX_COLUMNS, {"sink.updateOnly": [f"u{i}" for i in range(MAX_COLUMNS + 1)]}),
    ("spec.sink.updateOnly.0", MAX_COLUMN_NAME, {"sink.updateOnly": ["u" * (MAX_COLUMN_NAME + 1)]}),
    ("spec.sink.keyTemplate", MAX_KEY_TEMPLATE,
     {"sink": {**_REDIS_SINK, "keyTemplate": "{id}" + "x" * (MAX_KEY_TEMPLATE - 3)}}),
    ("spec.notify", MAX_WEBHOOKS, {"notify": [_WEBHOOK] * (MAX_WEBHOOKS + 1)}),
    ("spec.notify.0.webhook.url", MAX_URL,
     {"notify": [{"webhook": {"url": "https://h.example/" + "x" * (MAX_URL - 17)}}]}),
]


def change_spec(spec: dict[str, Any], changes: dict[str, Any]) -> None:
    """Apply BOUND_CASES changes to ``spec`` (a copy of the caller's)."""
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = spec
        for part in parents:
            node = node[part]
        if value is None:
            del node[last]
        else:
            node[last] = copy.deepcopy(value)


@pytest.mark.parametrize(("field", "bound", "changes"), BOUND_CASES, ids=[c[0] for c in BOUND_CASES])
def test_a_value_past_a_length_bound_is_refused_naming_the_field_and_the_bound(
    field: str, bound: int, changes: dict[str, Any]
) -> None:
    message = error_of(lambda d: change_spec(d["spec"], changes))
    assert message.startswith(f"{field}: ") and f"at most {bound} " in message


def test_the_values_at_the_length_bounds_are_accepted() -> None:
    doc = copy.deepcopy(BASE)
    change_spec(doc["spec"], {
        "transform": [{"python": "m:" + "f" * (MAX_PYTHON_TEXT - 2)}] + [{"drop": ["x"]}] * (MAX_STEPS - 1),
        "sink.uniqueBy": ["c" * MAX_COLUMN_NAME] + [f"c{i}" for i in range(MAX_COLUMNS - 1)],
        "sink.updateOnly": ["u" * MAX_COLUMN_NAME] + [f"u{i}" for i in range(MAX_COLUMNS - 1)],
        "notify": [{"webhook": {"url": "https://h.example/" + "x" * (MAX_URL - 18)}}] * MAX_WEBHOOKS,
    })
    spec = parse_dataflow(doc).spec
    assert (len(spec.transform), len(spec.sink.uniqueBy), len(spec.notify)) == (MAX_STEPS, MAX_COLUMNS, MAX_WEBHOOKS)
    assert len(spec.transform[0].python or "") == MAX_PYTHON_TEXT
    assert len(spec.notify[0].webhook.url or "") == MAX_URL
