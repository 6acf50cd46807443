"""The DataFlow and DataFlowRun CRDs: generated from the model, enforced by the real API server."""

from __future__ import annotations

import copy
import json
import re
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from activedataflow.errors import ConfigError
from activedataflow.kube.status import BACKTRACE_LIMIT
from activedataflow.model import WEBHOOK_URL, DataFlowSpec, parse_dataflow
from activedataflow.operator import crdgen
from pydantic import BaseModel

from tests.core.test_model import BOUND_CASES, change_spec
from tests.k8s.cluster import Cluster

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "paid-orders.yaml"
CRD_NAMES = ("dataflows.activedataflow.io", "dataflowruns.activedataflow.io")


def _schema(crd_name: str) -> dict[str, Any]:
    crd = yaml.safe_load((REPO / "crds" / f"{crd_name}.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


# --------------------------------------------------------------------------- without a cluster


def test_the_committed_crds_are_what_the_model_generates() -> None:
    stale = crdgen.check()
    assert stale == [], f"run `python -m activedataflow.operator.crdgen` ({', '.join(map(str, stale))})"


def test_the_check_flag_reports_a_stale_file(tmp_path: Path) -> None:
    crdgen.write((tmp_path,))
    assert crdgen.check((tmp_path,)) == []
    stale = tmp_path / "dataflows.activedataflow.io.yaml"
    stale.write_text(stale.read_text().replace("shortNames:\n    - df", "shortNames:\n    - dfx"))
    assert crdgen.check((tmp_path,)) == [stale]


def _model_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every field path of a model, through nested models, lists, dicts and unions."""
    for name, field in model.model_fields.items():
        path = (*prefix, field.alias or name)
        yield path
        yield from _nested(field.annotation, path)


def _nested(annotation: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from _model_paths(annotation, path)
        return
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        yield from _nested(args[0], path)
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _nested(arg, path)
    elif origin is list:
        yield from _nested(args[0], (*path, "[]"))
    elif origin is dict:
        yield from _nested(args[1], (*path, "{}"))


def _lookup(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for part in path:
        if node is None:
            return None
        if node.get("x-kubernetes-preserve-unknown-fields") and "type" not in node:
            return node  # a free value, or typed differently per variant: the model checks it
        if part == "[]":
            node = node.get("items")
        elif part == "{}":
            node = node.get("additionalProperties")
        else:
            node = node.get("properties", {}).get(part)
    return node


@pytest.mark.parametrize(("model", "crd", "root"), [
    (DataFlowSpec, "dataflows.activedataflow.io", "spec"),
    (crdgen.DataFlowStatus, "dataflows.activedataflow.io", "status"),
    (crdgen.DataFlowRunSpec, "dataflowruns.activedataflow.io", "spec"),
    (crdgen.DataFlowRunStatus, "dataflowruns.activedataflow.io", "status"),
])
def test_every_field_of_the_model_is_in_the_schema(model: type[BaseModel], crd: str, root: str) -> None:
    schema = _schema(crd)
    paths = list(_model_paths(model, (root,)))
    assert len(paths) >= len(model.model_fields) >= 3
    missing = [".".join(p) for p in paths if _lookup(schema, p) is None]
    assert missing == []


def test_a_field_added_to_the_model_appears_in_the_generated_schema() -> None:
    from pydantic import Field

    class Extended(crdgen.DataFlowRunStatus):
        rowsPerSecond: float | None = Field(default=None, ge=0, description="throughput")

    schema = crdgen.structural_schema(Extended)
    assert schema["properties"]["rowsPerSecond"] == {
        "minimum": 0, "type": "number", "description": "throughput", "nullable": True}


def test_free_values_alone_keep_unknown_fields() -> None:
    preserved: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("x-kubernetes-preserve-unknown-fields"):
            preserved.append(path)
        for name, child in node.get("properties", {}).items():
            walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(_schema("dataflows.activedataflow.io"), "")
    walk(_schema("dataflowruns.activedataflow.io"), "run")
    # source.incremental: an object for sql, a boolean for redis: no one structural type.
    assert sorted(preserved) == [".spec.source.incremental", ".spec.source.where[].value", ".status.cursor"]


def _schema_node(field: str) -> dict[str, Any]:
    """The CRD schema of ``field`` as an error names it (``spec.sink.uniqueBy.0``: an item of that list)."""
    node = _schema("dataflows.activedataflow.io")
    for part in field.split("."):
        node = node["items"] if part.isdigit() else node["properties"][part]
    return node


@pytest.mark.parametrize(("field", "bound"), [c[:2] for c in BOUND_CASES], ids=[c[0] for c in BOUND_CASES])
def test_the_crd_holds_each_length_bound_the_model_enforces(field: str, bound: int) -> None:
    node = _schema_node(field)
    assert node["maxItems" if node["type"] == "array" else "maxLength"] == bound


def test_the_crd_requires_a_webhook_url_of_the_models_pattern() -> None:
    assert _schema_node("spec.notify.0.webhook.url")["pattern"] == WEBHOOK_URL


def test_the_schema_is_structural_without_titles_refs_or_anyof() -> None:
    text = json.dumps([_schema(n) for n in CRD_NAMES])
    for word in ('"title"', '"$ref"', '"anyOf"', '"oneOf"', '"allOf"', '"$defs"'):
        assert word not in text


# --------------------------------------------------------------------------- against the API server


def _example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def _flow(namespace: str, name: str = "paid-orders", **spec_changes: Any) -> dict[str, Any]:
    doc = _example()
    doc["metadata"] = {"name": name, "namespace": namespace}
    doc["spec"].update(spec_changes)
    return doc




@pytest.mark.k8s
def test_the_crds_install_with_their_names_short_names_and_category(kube_crds: Cluster, namespace: str) -> None:
    resources = kube_crds.kubectl("api-resources", "--api-group=activedataflow.io", "-o", "wide").stdout
    assert "dataflows " in resources and " df " in resources and "DataFlow " in resources
    assert "dataflowruns " in resources and " dfr " in resources and "DataFlowRun " in resources
    assert resources.count("activedataflow") >= 2
    for name in ("df", "dfr", "activedataflow"):
        assert kube_crds.kubectl("get", name, "-n", namespace).returncode == 0


@pytest.mark.k8s
def test_the_contract_example_is_accepted_and_stored_as_a_valid_dataflow(kube_crds: Cluster, namespace: str) -> None:
    kube_crds.apply(_flow(namespace))
    stored = kube_crds.get("dataflow", "paid-orders", "-n", namespace)
    flow = parse_dataflow(stored)  # the API server's defaults still make a valid model
    assert flow.spec.sink.mode == "upsert"
    assert stored["spec"]["suspend"] is False
    assert stored["spec"]["runtime"]["retries"] == {"limit": 3, "backoffSeconds": 30}


@pytest.mark.k8s
def test_a_notify_entry_with_a_bare_on_key_is_accepted_and_read_as_on(kube_crds: Cluster, namespace: str) -> None:
    """YAML 1.1 (kubectl's) reads a bare ``on:`` key as the boolean true and sends the key "true"; the
    contract's example writes it bare."""
    doc = _flow(namespace, "bare-on")
    webhook = {"secretRef": {"name": "alerts", "key": "url"}}
    doc["spec"]["notify"] = [{"bare_on": ["failure", "recovery"], "webhook": webhook}]
    text = yaml.safe_dump(doc, sort_keys=False).replace("bare_on:", "on:")
    assert "- on:" in text
    kube_crds.kubectl("apply", "-f", "-", input=text)
    stored = kube_crds.get("dataflow", "bare-on", "-n", namespace)
    assert stored["spec"]["notify"][0]["true"] == ["failure", "recovery"]
    assert parse_dataflow(stored).spec.notify[0].on == ["failure", "recovery"]


@pytest.mark.k8s
def test_a_redis_to_redis_flow_gets_no_defaults_of_the_sql_variants(kube_crds: Cluster, namespace: str) -> None:
    doc = _flow(namespace, name="events", schedule=None, interval="5m")
    doc["spec"] = {
        "interval": "5m",
        "source": {"type": "redis", "connection": {"url": "redis://cache:6379/0"}, "stream": "events",
                   "incremental": True},
        "sink": {"type": "redis", "connection": {"url": "redis://cache:6379/1"}, "keyTemplate": "event:{id}"},
    }
    kube_crds.apply(doc)
    stored = kube_crds.get("dataflow", "events", "-n", namespace)
    flow = parse_dataflow(stored)
    assert flow.spec.source.type == "redis" and flow.spec.sink.type == "redis"
    assert "mode" not in stored["spec"]["sink"] and "transaction" not in stored["spec"]["sink"]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = spec
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is _DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return change


_DELETE = object()
_REDIS_SOURCE = {"type": "redis", "connection": {"url": "redis://r:6379/0"}, "stream": "s"}

CEL_CASES: list[tuple[str, list[Callable[[dict[str, Any]], None]], str]] = [
    ("schedule-and-interval", [_set("interval", "15m")],
     "spec.schedule: Required value: exactly one of schedule or interval is required"),
    ("neither-schedule-nor-interval", [_set("schedule", _DELETE)],
     "spec.schedule: Required value: exactly one of schedule or interval is required"),
    ("bad-interval", [_set("schedule", _DELETE), _set("interval", "fortnightly")],
     "spec.interval: Invalid value"),
    ("interval-not-whole-minutes-for-a-cronjob", [_set("schedule", _DELETE), _set("interval", "1m30s")],
     "spec.interval: Invalid value: cannot be expressed exactly as a cron schedule"),
    ("schedule-with-TZ", [_set("schedule", "CRON_TZ=UTC 0 0 * * *")],
     "spec.schedule: Invalid value: cannot use TZ or CRON_TZ in schedule, use timeZone instead"),
    ("schedule-unknown-descriptor", [_set("schedule", "@fortnightly")],
     "spec.schedule: Invalid value: unknown descriptor"),
    ("interval-not-dividing-an-hour-for-a-cronjob", [_set("schedule", _DELETE), _set("interval", "7m")],
     "spec.interval: Invalid value: cannot be expressed exactly as a cron schedule"),
    ("upsert-without-uniqueBy", [_set("sink.uniqueBy", _DELETE), _set("sink.updateOnly", _DELETE)],
     "spec.sink.uniqueBy: Required value: required when mode is upsert"),
    ("updateOnly-with-insert", [_set("sink.mode", "insert")],
     "spec.sink.updateOnly: Forbidden: only allowed when mode is upsert"),
    ("updateOnly-repeats-uniqueBy", [_set("sink.updateOnly", ["id", "status"])],
     "spec.sink.updateOnly: Invalid value: must not repeat uniqueBy columns"),
    ("url-and-secretRef", [_set("source.connection.url", "postgresql://db/shop")],
     "spec.source.connection.url: Required value: exactly one of url or secretRef is required"),
    ("neither-url-nor-secretRef", [_set("sink.connection", {})],
     "spec.sink.connection.url: Required value: exactly one of url or secretRef is required"),
    ("step-with-two-keys", [_set("transform.0", {"rename": {"a": "b"}, "drop": ["c"]})],
     "spec.transform[0]: Invalid value: each step needs exactly one of rename, select, drop, set, "
     "filter, python"),
    ("empty-step", [_set("transform.0", {})], "spec.transform[0]: Invalid value: each step needs"),
    ("python-step-not-module-function", [_set("transform.0", {"python": "os.system('rm')"})],
     "spec.transform[0].python: Invalid value: expected 'module.path:function'"),
    ("sql-source-without-table", [_set("source.table", _DELETE)],
     "spec.source.table: Required value: required when type is sql"),
    ("redis-source-with-table", [_set("source", {**_REDIS_SOURCE, "table": "orders"})],
     "spec.source: Forbidden: not allowed when type is redis: table"),
    ("redis-source-stream-and-keyPattern", [_set("source", {**_REDIS_SOURCE, "keyPattern": "order:*"})],
     "spec.source.stream: Required value: exactly one of stream or keyPattern is required"),
    ("redis-sink-without-placeholder", [_set("sink", {"type": "redis", "connection": {"url": "redis://r"},
                                                      "keyTemplate": "orders"})],
     "spec.sink.keyTemplate: Invalid value: needs at least one {column} placeholder"),
    ("unknown-sink-type", [_set("sink.type", "kafka")],
     "spec.sink.type: Unsupported value: \"kafka\": supported values: \"sql\", \"redis\""),
    ("batch-size-over-limit", [_set("source.batchSize", 2_000_000)],
     "spec.source.batchSize: Invalid value: 2000000: spec.source.batchSize in body should be less than or equal"),
]


@pytest.mark.k8s
@pytest.mark.parametrize(("changes", "message"), [c[1:] for c in CEL_CASES], ids=[c[0] for c in CEL_CASES])
def test_a_manifest_breaking_a_rule_is_refused_by_the_api_server_and_the_model(
    kube_crds: Cluster, namespace: str, changes: list[Callable[[dict[str, Any]], None]], message: str
) -> None:
    doc = _flow(namespace, name="broken")
    spec = copy.deepcopy(doc["spec"])
    for change in changes:
        change(spec)
    doc["spec"] = spec
    with pytest.raises(ConfigError):  # the rule mirrors the model: never stricter than what the operator accepts
        parse_dataflow(doc)
    result = kube_crds.apply(doc, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert kube_crds.kubectl("get", "dataflow", "broken", "-n", namespace, check=False).returncode != 0


@pytest.mark.k8s
@pytest.mark.parametrize(("field", "bound", "changes"), BOUND_CASES, ids=[c[0] for c in BOUND_CASES])
def test_a_value_past_a_length_bound_is_refused_by_the_api_server_as_by_the_model(
    kube_crds: Cluster, namespace: str, field: str, bound: int, changes: dict[str, Any]
) -> None:
    doc = _flow(namespace, name="too-long")
    change_spec(doc["spec"], changes)
    with pytest.raises(ConfigError, match=f"^{re.escape(field)}: .*at most {bound} "):
        parse_dataflow(doc)
    result = kube_crds.apply(doc, check=False)
    assert result.returncode != 0
    kube_field = re.sub(r"\.(\d+)", r"[\1]", field)  # spec.transform[0].python, as the API server names it
    (line,) = [line for line in result.stderr.splitlines() if f"{kube_field}: Too " in line] or [result.stderr]
    assert re.search(rf"\b{bound}\b", line), result.stderr  # "Too long: may not be more than 32 bytes"...


@pytest.mark.k8s
def test_the_api_server_takes_every_schedule_a_cronjob_takes(kube_crds: Cluster, namespace: str) -> None:
    """The schedule rules are what CEL can say of robfig's parser: never stricter than the model."""
    from tests.core.test_schedule_oracle import ACCEPTED

    never = {"0 0 31 2 *", ", * * * *"}  # accepted by Kubernetes, but they never fire: the model refuses them
    for i, schedule in enumerate(s for s in ACCEPTED if s not in never):
        doc = _flow(namespace, name=f"cron-{i}", schedule=schedule)
        parse_dataflow(doc)
        result = kube_crds.apply(doc, check=False)
        assert result.returncode == 0, (schedule, result.stderr)


@pytest.mark.k8s
def test_a_name_longer_than_a_cronjob_name_can_be_is_refused(kube_crds: Cluster, namespace: str) -> None:
    doc = _flow(namespace, name="x" * 53)
    with pytest.raises(ConfigError):
        parse_dataflow(doc)
    result = kube_crds.apply(doc, check=False)
    assert result.returncode != 0
    assert "metadata.name: at most 52 characters" in result.stderr


def _table(output: str) -> list[dict[str, str]]:
    """kubectl's table output as rows of {HEADER: cell}, cut at the header's column starts (cells may hold spaces)."""
    header, *rows = output.splitlines()
    names = header.split()
    starts = [header.index(f" {n} ") + 1 if i else 0 for i, n in enumerate(names[:-1])] + [header.rindex(names[-1])]
    ends = [*starts[1:], None]
    return [{n: row[a:b].strip() for n, a, b in zip(names, starts, ends, strict=True)} for row in rows]


@pytest.mark.k8s
def test_kubectl_get_dataflows_prints_the_contract_columns(kube_crds: Cluster, namespace: str) -> None:
    kube_crds.apply(_flow(namespace))
    kube_crds.kubectl("patch", "dataflow", "paid-orders", "-n", namespace, "--subresource=status", "--type=merge",
                      "-p", json.dumps({"status": {
                          "observedGeneration": 1,
                          "conditions": [{"type": "Ready", "status": "True", "reason": "Scheduled", "message": "ok",
                                          "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                          "lastRunName": "paid-orders-29000000", "lastRunStatus": "Succeeded",
                          "lastRunAt": "2026-01-01T00:00:00Z", "nextRunAt": "2030-01-01T00:15:00Z",
                          "succeeded": 4, "failed": 1, "cursor": "2026-01-01T00:00:00", "lastHandledRunNow": "17",
                      }}))
    output = kube_crds.kubectl("get", "dataflows", "-n", namespace).stdout
    assert output.split()[:9] == ["NAME", "SCHEDULE", "INTERVAL", "SUSPENDED", "READY", "LAST-RUN", "LAST-RUN-AT",
                                  "NEXT-RUN", "AGE"]
    [row] = _table(output)
    assert row["NAME"] == "paid-orders"
    assert row["SCHEDULE"] == "*/15 * * * *"
    assert row["INTERVAL"] == ""
    assert (row["SUSPENDED"], row["READY"], row["LAST-RUN"]) == ("false", "True", "Succeeded")
    assert row["LAST-RUN-AT"].endswith("d")  # an age, as for AGE
    assert row["NEXT-RUN"] == "2030-01-01T00:15:00Z"
    [wide] = _table(kube_crds.kubectl("get", "df", "-n", namespace, "-o", "wide").stdout)
    assert (wide["REASON"], wide["SUCCEEDED"], wide["FAILED"]) == ("Scheduled", "4", "1")


_INTERVALS = ["1m", "2m", "7m", "15m", "45m", "60m", "90m", "1h30m", "120s", "90s", "3600s", "5h", "8h", "24h",
              "48h", "1h0m30s"]


@pytest.mark.k8s
def test_the_api_server_takes_exactly_the_intervals_the_model_takes_for_a_cronjob(
    kube_crds: Cluster, namespace: str
) -> None:
    """The CEL rule mirrors schedule.cron_for_interval: a CronJob can only tick at divisors of an hour or a day."""
    docs = []
    for i, interval in enumerate(_INTERVALS):
        doc = _flow(namespace, name=f"every-{i}", interval=interval)
        del doc["spec"]["schedule"]
        docs.append(doc)
    model_ok = set()
    for doc in docs:
        try:
            parse_dataflow(doc)
            model_ok.add(doc["spec"]["interval"])
        except ConfigError:
            pass
    assert model_ok == {"1m", "2m", "15m", "60m", "120s", "3600s", "8h", "24h"}
    api_ok = {doc["spec"]["interval"] for doc in docs if kube_crds.apply(doc, check=False).returncode == 0}
    assert api_ok == model_ok


@pytest.mark.k8s
@pytest.mark.parametrize(("interval", "runtime"), [("2m", "cronjob"), ("120s", "cronjob"), ("1h0m30s", "heartbeat")])
def test_an_interval_is_accepted_where_the_model_accepts_it(
    kube_crds: Cluster, namespace: str, interval: str, runtime: str
) -> None:
    doc = _flow(namespace, name="interval", interval=interval, runtime={"type": runtime})
    del doc["spec"]["schedule"]
    parse_dataflow(doc)
    kube_crds.apply(doc)


@pytest.mark.k8s
def test_the_interval_of_a_flow_shows_in_kubectl_get(kube_crds: Cluster, namespace: str) -> None:
    doc = _flow(namespace, name="every-15m", interval="15m")
    del doc["spec"]["schedule"]
    kube_crds.apply(doc)
    [row] = _table(kube_crds.kubectl("get", "df", "every-15m", "-n", namespace).stdout)
    assert (row["SCHEDULE"], row["INTERVAL"], row["READY"]) == ("", "15m", "")


@pytest.mark.k8s
def test_the_status_is_only_written_through_the_status_subresource(kube_crds: Cluster, namespace: str) -> None:
    doc = _flow(namespace)
    doc["status"] = {"lastRunStatus": "Succeeded"}
    kube_crds.apply(doc)
    assert "status" not in kube_crds.get("dataflow", "paid-orders", "-n", namespace)


@pytest.mark.k8s
def test_a_status_outside_the_schema_is_refused(kube_crds: Cluster, namespace: str) -> None:
    kube_crds.apply(_flow(namespace))
    result = kube_crds.kubectl("patch", "dataflow", "paid-orders", "-n", namespace, "--subresource=status",
                               "--type=merge", "-p", '{"status": {"lastRunStatus": "Exploded"}}', check=False)
    assert result.returncode != 0
    assert 'status.lastRunStatus: Unsupported value: "Exploded"' in result.stderr


@pytest.mark.k8s
def test_kubectl_get_dataflowruns_prints_the_contract_columns(kube_crds: Cluster, namespace: str) -> None:
    kube_crds.apply({
        "apiVersion": "activedataflow.io/v1alpha1", "kind": "DataFlowRun",
        "metadata": {"name": "paid-orders-29000000", "namespace": namespace,
                     "labels": {"activedataflow.io/flow": "paid-orders"}},
        "spec": {"flow": "paid-orders", "scheduledFor": "2026-01-01T00:00:00Z", "trigger": "manual"},
    })
    kube_crds.kubectl("patch", "dataflowrun", "paid-orders-29000000", "-n", namespace, "--subresource=status",
                      "--type=merge", "-p", json.dumps({"status": {
                          "phase": "Failed", "startedAt": "2026-01-01T00:00:00Z",
                          "finishedAt": "2026-01-01T00:00:02Z", "durationSeconds": 2.5, "recordsRead": 120,
                          "recordsWritten": 118, "recordsFailed": 2, "attempt": 1, "trigger": "manual",
                          "error": {"message": "boom", "backtrace": "Traceback ..."}}}))
    output = kube_crds.kubectl("get", "dataflowruns", "-n", namespace).stdout
    assert output.split()[:8] == ["NAME", "FLOW", "PHASE", "READ", "WRITTEN", "DURATION", "STARTED", "AGE"]
    [row] = _table(output)
    assert [row[c] for c in ("NAME", "FLOW", "PHASE", "READ", "WRITTEN", "DURATION")] == [
        "paid-orders-29000000", "paid-orders", "Failed", "120", "118", "2.5"]
    [wide] = _table(kube_crds.kubectl("get", "dfr", "-n", namespace, "-o", "wide").stdout)
    assert (wide["FAILED"], wide["TRIGGER"], wide["ERROR"]) == ("2", "manual", "boom")


@pytest.mark.k8s
def test_a_run_error_backtrace_is_bounded(kube_crds: Cluster, namespace: str) -> None:
    kube_crds.apply({"apiVersion": "activedataflow.io/v1alpha1", "kind": "DataFlowRun",
                     "metadata": {"name": "r-1", "namespace": namespace}, "spec": {"flow": "f"}})
    too_long = "x" * (BACKTRACE_LIMIT + 1)
    result = kube_crds.kubectl("patch", "dataflowrun", "r-1", "-n", namespace, "--subresource=status",
                               "--type=merge", "-p", json.dumps({"status": {"phase": "Failed", "error": {
                                   "message": "boom", "backtrace": too_long}}}), check=False)
    assert result.returncode != 0
    assert "status.error.backtrace: Too long" in result.stderr
