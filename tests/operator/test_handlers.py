"""Reconciliation against a real store (SQLite) and an in-memory Kubernetes API."""

from __future__ import annotations

import base64
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest
from activedataflow.kube.client import CRONJOB, DATAFLOW, JOB, SECRET, KubeError
from activedataflow.kube.names import SPEC_HASH_ANNOTATION, STORE_SECRET
from activedataflow.operator.config import Context, OperatorConfig
from activedataflow.operator.handlers.handle_delete import flow_deleted
from activedataflow.operator.handlers.handle_reconcile import reconcile_flow
from activedataflow.operator.handlers.handle_resync import Resyncer, resync_all
from activedataflow.operator.handlers.handle_run_now import handle_run_now
from activedataflow.operator.handlers.handle_startup import sweep_deleted_flows
from activedataflow.store import Counts
from activedataflow.store.registration import register_flow

from tests.memkube import MemoryKube
from tests.operator.conftest import dataflow, dataflow_body

NOW = datetime(2025, 3, 1, 10, 7, 30, tzinfo=UTC)


@pytest.fixture
def kube() -> MemoryKube:
    return MemoryKube()


@pytest.fixture
def ctx(kube: MemoryKube, sqlite_url: str, runner) -> Context:
    context = Context(OperatorConfig(store_url=sqlite_url, runner=runner), kube, clock=lambda: NOW)
    yield context
    context.close()


def apply_flow(kube: MemoryKube, **spec: Any) -> dict[str, Any]:
    name = spec.pop("name", "paid-orders")
    return kube.add(DATAFLOW, dataflow_body(name, **spec))


def reconcile(ctx: Context, kube: MemoryKube, body: dict[str, Any], retry: int = 0) -> dict[str, Any]:
    """One handler pass, then the status patch applied (as kopf does, also on errors)."""
    status: dict[str, Any] = {}
    try:
        reconcile_flow(body, status=status, ctx=ctx, retry=retry)
    finally:
        kube.patch(DATAFLOW, body["metadata"]["namespace"], body["metadata"]["name"], {"status": status}, status=True)
    return status


def fresh(kube: MemoryKube, body: dict[str, Any]) -> dict[str, Any]:
    return kube.get(DATAFLOW, body["metadata"]["namespace"], body["metadata"]["name"])


def gone(kube: MemoryKube, body: dict[str, Any]) -> dict[str, Any]:
    """The DataFlow deleted; its last state, as the watch's DELETED event carries it."""
    last = fresh(kube, body)
    kube.delete(DATAFLOW, body["metadata"]["namespace"], body["metadata"]["name"])
    return last


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


def test_create_stores_the_flow_record(ctx: Context, kube: MemoryKube) -> None:
    reconcile(ctx, kube, apply_flow(kube))
    record = ctx.store().get_flow("paid-orders", "shop")
    assert record is not None
    assert (record.schedule, record.time_zone, record.enabled) == ("*/15 * * * *", "Europe/Berlin", True)
    assert record.spec["sink"]["uniqueBy"] == ["id"]


def test_create_makes_the_flow_cronjob(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube)
    reconcile(ctx, kube, body)
    cj = kube.get(CRONJOB, "shop", "df-paid-orders")
    assert cj is not None
    assert cj["spec"]["schedule"] == "*/15 * * * *"
    assert cj["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    assert kube.names(CRONJOB, "shop") == ["df-paid-orders"]


def test_create_reports_ready_with_next_run_and_an_event(ctx: Context, kube: MemoryKube) -> None:
    status = reconcile(ctx, kube, apply_flow(kube))
    assert status["observedGeneration"] == 1
    assert ready(status)["status"] == "True"
    assert ready(status)["reason"] == "Reconciled"
    assert "CronJob df-paid-orders ('*/15 * * * *' Europe/Berlin)" in ready(status)["message"]
    assert status["nextRunAt"] == "2025-03-01T10:15:00Z"  # never run: the CronJob's next tick
    assert kube.reasons() == ["Created"]


def store_ref(cronjob: dict[str, Any]) -> dict[str, Any]:
    env = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    return next(e for e in env if e["name"] == "ADF_STORE_URL")["valueFrom"]["secretKeyRef"]


def test_store_url_goes_into_the_namespace_store_secret_never_into_the_cronjob(
    ctx: Context, kube: MemoryKube
) -> None:
    reconcile(ctx, kube, apply_flow(kube))
    cj = kube.get(CRONJOB, "shop", "df-paid-orders")
    secret = kube.get(SECRET, "shop", STORE_SECRET)
    assert base64.b64decode(secret["data"]["url"]).decode() == ctx.config.store_url
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "activedataflow"
    assert "ownerReferences" not in secret["metadata"]  # the operator deletes it; no CronJob owns it
    assert store_ref(cj) == {"name": STORE_SECRET, "key": "url"}
    assert ctx.config.store_url not in str(cj)


def test_every_cronjob_of_a_namespace_reads_the_one_store_secret(ctx: Context, kube: MemoryKube) -> None:
    reconcile(ctx, kube, apply_flow(kube, name="one"))
    reconcile(ctx, kube, apply_flow(kube, name="two"))
    reconcile(ctx, kube, apply_flow(kube, name="beat", runtime={"type": "heartbeat"}))
    cronjobs = [kube.get(CRONJOB, "shop", n) for n in ("df-one", "df-two", "adf-heartbeat")]
    assert [store_ref(cj) for cj in cronjobs] == [{"name": STORE_SECRET, "key": "url"}] * 3
    assert kube.names(SECRET, "shop") == [STORE_SECRET]


def test_the_store_secret_goes_with_the_last_dataflow_of_its_namespace(ctx: Context, kube: MemoryKube) -> None:
    one, two = apply_flow(kube, name="one"), apply_flow(kube, name="two", runtime={"type": "heartbeat"})
    reconcile(ctx, kube, one)
    reconcile(ctx, kube, two)
    flow_deleted(gone(kube, one), ctx=ctx)
    assert kube.names(SECRET, "shop") == [STORE_SECRET]
    flow_deleted(gone(kube, two), ctx=ctx)
    assert kube.names(CRONJOB, "shop") == [] and kube.names(SECRET, "shop") == []


def test_the_deletion_of_a_flow_costs_one_small_list_while_others_are_left(ctx: Context, kube: MemoryKube) -> None:
    one = apply_flow(kube, name="one")
    reconcile(ctx, kube, one)
    reconcile(ctx, kube, apply_flow(kube, name="two"))
    last = gone(kube, one)
    kube.requests.clear()
    flow_deleted(last, ctx=ctx)
    assert [r for r in kube.requests if r[1] in ("secrets", "dataflows")] == [
        ("get", "dataflows", "one"), ("list", "dataflows", "limit=1")]  # the record's check, then one listed at most


def test_a_flow_of_the_namespace_deleted_and_made_again_finds_its_store_secret_made_again(
    ctx: Context, kube: MemoryKube
) -> None:
    one = apply_flow(kube, name="one")
    reconcile(ctx, kube, one)
    flow_deleted(gone(kube, one), ctx=ctx)
    assert kube.names(SECRET, "shop") == []
    reconcile(ctx, kube, apply_flow(kube, name="two"))
    assert kube.names(SECRET, "shop") == [STORE_SECRET]


def test_a_further_flow_of_the_namespace_costs_no_secret_request(ctx: Context, kube: MemoryKube) -> None:
    reconcile(ctx, kube, apply_flow(kube, name="one"))
    kube.requests.clear()
    two = apply_flow(kube, name="two")
    reconcile(ctx, kube, two)
    reconcile(ctx, kube, fresh(kube, two))
    assert [verb for verb, plural, _ in kube.requests if plural == "secrets"] == []


def test_a_store_secret_deleted_by_hand_is_made_again_by_the_resync(ctx: Context, kube: MemoryKube) -> None:
    reconcile(ctx, kube, apply_flow(kube))
    kube.delete(SECRET, "shop", STORE_SECRET)
    resync_all(ctx, ["shop"])
    assert base64.b64decode(kube.get(SECRET, "shop", STORE_SECRET)["data"]["url"]).decode() == ctx.config.store_url


def test_a_store_secret_an_earlier_operator_gave_owners_loses_them(ctx: Context, kube: MemoryKube) -> None:
    """CronJobs as owners: the garbage collector would take it with the last of them, flows still there."""
    body = apply_flow(kube)
    reconcile(ctx, kube, body)
    cj = kube.get(CRONJOB, "shop", "df-paid-orders")
    owner = {"apiVersion": "batch/v1", "kind": "CronJob", "name": "df-paid-orders", "uid": cj["metadata"]["uid"]}
    kube.patch(SECRET, "shop", STORE_SECRET, {"metadata": {"ownerReferences": [owner]}})
    ctx.forget_secrets()  # as a new operator starts
    reconcile(ctx, kube, fresh(kube, body))
    assert "ownerReferences" not in kube.get(SECRET, "shop", STORE_SECRET)["metadata"]


def test_flows_of_another_namespace_get_their_own_store_secret(ctx: Context, kube: MemoryKube) -> None:
    reconcile(ctx, kube, apply_flow(kube))
    reconcile(ctx, kube, kube.add(DATAFLOW, dataflow_body("paid-orders", namespace="team-a")))
    for namespace in ("shop", "team-a"):
        assert kube.names(SECRET, namespace) == [STORE_SECRET]


def test_the_operator_touches_no_secret_but_the_store_secret(ctx: Context, kube: MemoryKube) -> None:
    """What the chart's RBAC grants on Secrets (get/patch/delete on STORE_SECRET alone, create) is all it calls."""
    kube.add(SECRET, {"metadata": {"name": "shop-db", "namespace": "shop"}, "data": {"url": "eA=="}})
    kube.requests.clear()
    body = apply_flow(kube)
    reconcile(ctx, kube, body)
    reconcile(ctx, kube, apply_flow(kube, name="beat", runtime={"type": "heartbeat"}))
    ctx.config = OperatorConfig("sqlite:///elsewhere.db", ctx.config.runner)  # a changed URL: a patch
    reconcile(ctx, kube, fresh(kube, body))
    flow_deleted(gone(kube, body), ctx=ctx)
    flow_deleted(gone(kube, fresh(kube, {"metadata": {"namespace": "shop", "name": "beat"}})), ctx=ctx)
    calls = {(verb, name) for verb, plural, name in kube.requests if plural == "secrets"}
    assert {name for _, name in calls} == {STORE_SECRET}
    assert {verb for verb, _ in calls} == {"get", "create", "patch", "delete"}


def test_a_changed_store_url_is_written_into_the_store_secret(ctx: Context, kube: MemoryKube, runner) -> None:
    body = apply_flow(kube)
    reconcile(ctx, kube, body)
    ctx.config = OperatorConfig("postgresql+psycopg://adf@db.example/adf", runner)
    reconcile(ctx, kube, fresh(kube, body))
    data = kube.get(SECRET, "shop", STORE_SECRET)["data"]["url"]
    assert base64.b64decode(data).decode() == "postgresql+psycopg://adf@db.example/adf"


def test_a_secret_of_that_name_not_made_by_the_operator_is_never_overwritten(ctx: Context, kube: MemoryKube) -> None:
    kube.add(SECRET, {"metadata": {"name": STORE_SECRET, "namespace": "shop"}, "data": {"url": "bWluZQ=="}})
    body = apply_flow(kube)
    with pytest.raises(kopf.TemporaryError):
        reconcile(ctx, kube, body)
    assert kube.get(SECRET, "shop", STORE_SECRET)["data"] == {"url": "bWluZQ=="}
    cond = ready(fresh(kube, body)["status"])
    assert (cond["status"], cond["reason"]) == ("False", "KubernetesError")
    assert f"Secret shop/{STORE_SECRET} exists and was not made by ActiveDataFlow" in cond["message"]


def test_an_upgrade_moves_the_cronjob_to_the_store_secret_and_leaves_the_old_mirror_to_its_owner(
    ctx: Context, kube: MemoryKube
) -> None:
    """The previous operator mirrored the URL into a Secret named like the CronJob, owned by it. The
    CronJob now reads the namespace's store Secret; the old one is not read, nor deleted (that would
    need 'delete' on every Secret): it goes with its CronJob."""
    body = apply_flow(kube)
    reconcile(ctx, kube, body)
    cj = kube.get(CRONJOB, "shop", "df-paid-orders")
    kube.add(SECRET, {"metadata": {"name": "df-paid-orders", "namespace": "shop", "labels": {
        "app.kubernetes.io/managed-by": "activedataflow"}, "ownerReferences": [
        {"apiVersion": "batch/v1", "kind": "CronJob", "name": cj["metadata"]["name"], "uid": cj["metadata"]["uid"],
         "controller": True}]}, "data": {"url": "eA=="}})
    kube.requests.clear()
    reconcile(ctx, kube, fresh(kube, body))
    assert store_ref(kube.get(CRONJOB, "shop", "df-paid-orders"))["name"] == STORE_SECRET
    assert not [r for r in kube.requests if r[1] == "secrets" and r[2] != STORE_SECRET]
    flow_deleted(gone(kube, body), ctx=ctx)  # the old mirror goes with its CronJob, the store Secret with the flow
    assert kube.names(SECRET, "shop") == []


def test_a_create_applies_its_cronjob_without_a_look_first(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube)
    kube.requests.clear()
    reconcile_flow(body, status={}, ctx=ctx, created=True, was_heartbeat=False)  # as main.reconcile on create
    verbs = [verb for verb, plural, _ in kube.requests if plural == "cronjobs"]
    assert verbs[0] == "apply" and "get" not in verbs  # (MemoryKube records the create an apply makes)
    assert kube.get(CRONJOB, "shop", "df-paid-orders")["metadata"]["ownerReferences"][0]["uid"] == \
        body["metadata"]["uid"]


def test_a_create_handled_again_after_a_restart_leaves_one_cronjob_as_it_was(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube)
    reconcile_flow(body, status={}, ctx=ctx, created=True, was_heartbeat=False)  # died before kopf recorded it
    before = kube.get(CRONJOB, "shop", "df-paid-orders")
    reconcile_flow(fresh(kube, body), status={}, ctx=ctx, created=True, was_heartbeat=False)
    assert kube.names(CRONJOB, "shop") == ["df-paid-orders"]
    assert kube.get(CRONJOB, "shop", "df-paid-orders")["spec"] == before["spec"]


def test_a_new_heartbeat_flow_deletes_no_cronjob_of_its_own(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube, name="beat", runtime={"type": "heartbeat"})
    kube.requests.clear()
    reconcile_flow(body, status={}, ctx=ctx, created=True, was_heartbeat=False)
    assert not [r for r in kube.requests if r[0] == "delete"]
    assert kube.names(CRONJOB, "shop") == ["adf-heartbeat"]


def test_a_resume_of_a_flow_ready_at_its_generation_does_not_look_at_the_heartbeat_cronjob(
    ctx: Context, kube: MemoryKube
) -> None:
    body = apply_flow(kube)
    reconcile(ctx, kube, body)
    kube.requests.clear()
    reconcile_flow(fresh(kube, body), status={}, ctx=ctx, resync=True)  # was_heartbeat unknown
    assert ("get", "cronjobs", "adf-heartbeat") not in kube.requests


def test_reconciling_again_changes_nothing(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube)
    reconcile(ctx, kube, body)
    before = kube.get(CRONJOB, "shop", "df-paid-orders")["metadata"]["resourceVersion"]
    kube.requests.clear()
    status = reconcile(ctx, kube, fresh(kube, body))
    assert kube.get(CRONJOB, "shop", "df-paid-orders")["metadata"]["resourceVersion"] == before
    assert {verb for verb, plural, _ in kube.requests if plural != "dataflows"} <= {"get"}
    assert kube.reasons() == ["Created"]
    assert status == {}  # the same status again: kopf patches nothing
    assert ready(fresh(kube, body)["status"])["status"] == "True"


def test_spec_change_patches_the_cronjob(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube)
    reconcile(ctx, kube, body)
    body = kube.patch(DATAFLOW, "shop", "paid-orders", {"spec": {"schedule": "0 3 * * *", "suspend": True}})
    status = reconcile(ctx, kube, body)
    cj = kube.get(CRONJOB, "shop", "df-paid-orders")
    assert (cj["spec"]["schedule"], cj["spec"]["suspend"]) == ("0 3 * * *", True)
    assert kube.names(CRONJOB, "shop") == ["df-paid-orders"]
    assert kube.reasons() == ["Created", "Updated"]
    assert (ready(status)["reason"], status["observedGeneration"]) == ("Suspended", 2)
    assert status["nextRunAt"] is None
    assert ctx.store().get_flow("paid-orders", "shop").enabled is False


def test_invalid_spec_is_a_permanent_error_naming_the_field(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube)
    del body["spec"]["sink"]["uniqueBy"]
    with pytest.raises(kopf.PermanentError, match=r"spec\.sink\.uniqueBy: required when mode is upsert"):
        reconcile(ctx, kube, body)
    cond = ready(fresh(kube, body)["status"])
    assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec")
    assert cond["message"] == "spec.sink.uniqueBy: required when mode is upsert"
    (event,) = kube.events
    assert (event["type"], event["reason"], event["message"]) == ("Warning", "InvalidSpec", cond["message"])
    assert kube.names(CRONJOB, "shop") == []
    assert ctx.store().get_flow("paid-orders", "shop") is None


def test_an_expression_with_a_syntax_error_is_invalid_spec_at_apply(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube, transform=[{"filter": "row.amount > >"}])
    with pytest.raises(kopf.PermanentError, match=r"spec\.transform\.0\.filter: invalid expression at position 14"):
        reconcile(ctx, kube, body)
    cond = ready(fresh(kube, body)["status"])
    assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec")
    assert cond["message"].startswith("spec.transform.0.filter: invalid expression at position 14: invalid syntax")
    assert kube.names(CRONJOB, "shop") == []
    assert ctx.store().get_flow("paid-orders", "shop") is None


def test_an_expression_that_compiled_to_a_recursion_error_is_invalid_spec_at_apply(ctx: Context, kube: MemoryKube
                                                                                    ) -> None:
    # a 900-link 'and' chain passed validation and crashed the runner's code generation (RecursionError)
    body = apply_flow(kube, transform=[{"filter": " and ".join(["row.id"] * 900)}])
    with pytest.raises(kopf.PermanentError, match=r"spec\.transform\.0\.filter: expression nested more than 60"):
        reconcile(ctx, kube, body)
    cond = ready(fresh(kube, body)["status"])
    assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec")
    assert kube.names(CRONJOB, "shop") == []


def test_interval_cron_cannot_express_is_invalid_spec_naming_spec_interval(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube, schedule=None, interval="7m")
    with pytest.raises(kopf.PermanentError):
        reconcile(ctx, kube, body)
    cond = ready(fresh(kube, body)["status"])
    assert cond["reason"] == "InvalidSpec"
    assert cond["message"].startswith("spec.interval: '7m' cannot be expressed exactly as a cron schedule")


@pytest.mark.parametrize("schedule", ["0 0 * * 7", "0 0 L * *", "0 0 * * 5L", "0 0 * * 1#2"])
def test_a_schedule_the_api_server_refuses_is_invalid_spec_and_gets_no_cronjob(
    ctx: Context, kube: MemoryKube, schedule: str
) -> None:
    body = apply_flow(kube, schedule=schedule)
    with pytest.raises(kopf.PermanentError):
        reconcile(ctx, kube, body)
    cond = ready(fresh(kube, body)["status"])
    assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec")
    assert cond["message"].startswith(f"spec.schedule: '{schedule}' is not a cron schedule Kubernetes accepts: ")
    assert kube.names(CRONJOB, "shop") == []


@pytest.mark.parametrize("schedule", ["0 0 ? * *", "@every 5m"])
def test_a_schedule_the_api_server_takes_gets_its_cronjob_as_written(
    ctx: Context, kube: MemoryKube, schedule: str
) -> None:
    status = reconcile(ctx, kube, apply_flow(kube, schedule=schedule))
    assert ready(status)["status"] == "True"
    assert kube.get(CRONJOB, "shop", "df-paid-orders")["spec"]["schedule"] == schedule


def test_the_same_interval_is_fine_for_a_heartbeat_flow(ctx: Context, kube: MemoryKube) -> None:
    status = reconcile(ctx, kube, apply_flow(kube, schedule=None, interval="7m", runtime={"type": "heartbeat"}))
    assert ready(status)["status"] == "True"


def test_store_unreachable_is_retried_with_backoff_and_reported(kube: MemoryKube, runner) -> None:
    url = "postgresql+psycopg://adf:s3cret-pw@127.0.0.1:9/adf?connect_timeout=2"
    ctx = Context(OperatorConfig(store_url=url, runner=runner), kube, clock=lambda: NOW)
    body = apply_flow(kube)
    delays = []
    for retry in (0, 1):
        with pytest.raises(kopf.TemporaryError) as err:
            reconcile(ctx, kube, fresh(kube, body), retry=retry)
        delays.append(err.value.delay)
    assert delays[1] > delays[0] > 0
    cond = ready(fresh(kube, body)["status"])
    assert (cond["status"], cond["reason"]) == ("False", "StorageUnavailable")
    assert "127.0.0.1:9" in cond["message"]
    assert kube.reasons() == ["StorageUnavailable"]  # one event, not one per retry
    assert "s3cret-pw" not in str(kube.objects) + str(kube.events) + str(err.value)
    assert kube.names(CRONJOB, "shop") == []


def test_store_back_makes_the_flow_ready(ctx: Context, kube: MemoryKube, runner) -> None:
    body = apply_flow(kube)
    status = {"conditions": [{"type": "Ready", "status": "False", "reason": "StorageUnavailable", "message": "x",
                              "lastTransitionTime": "2025-03-01T10:00:00Z"}]}
    kube.patch(DATAFLOW, "shop", "paid-orders", {"status": status}, status=True)
    out = reconcile(ctx, kube, fresh(kube, body))
    assert ready(out)["status"] == "True"
    assert ready(out)["lastTransitionTime"] == "2025-03-01T10:07:30Z"


def heartbeat_env(kube: MemoryKube) -> list[str]:
    cj = kube.get(CRONJOB, "shop", "adf-heartbeat")
    env = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    return [e["name"] for e in env if e["name"].startswith("ADF_SECRET_")]


def test_heartbeat_flows_share_one_cronjob_with_the_union_of_their_secrets(ctx: Context, kube: MemoryKube) -> None:
    one = apply_flow(kube, name="one", runtime={"type": "heartbeat"})
    two_body = dataflow_body("two", runtime={"type": "heartbeat"})
    two_body["spec"]["source"]["connection"] = {"secretRef": {"name": "crm-db", "key": "url"}}
    two = kube.add(DATAFLOW, two_body)
    reconcile(ctx, kube, one)
    reconcile(ctx, kube, two)
    assert kube.names(CRONJOB, "shop") == ["adf-heartbeat"]
    assert heartbeat_env(kube) == ["ADF_SECRET_CRM_DB_URL", "ADF_SECRET_SHOP_DB_URL", "ADF_SECRET_WAREHOUSE_DB_DSN"]
    owners = kube.get(CRONJOB, "shop", "adf-heartbeat")["metadata"]["ownerReferences"]
    assert sorted(o["name"] for o in owners) == ["one", "two"]


def test_switching_to_heartbeat_removes_the_flows_own_cronjob(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube)
    reconcile(ctx, kube, body)
    body = kube.patch(DATAFLOW, "shop", "paid-orders", {"spec": {"runtime": {"type": "heartbeat"}}})
    reconcile(ctx, kube, body)
    assert kube.names(CRONJOB, "shop") == ["adf-heartbeat"]


def test_switching_back_to_cronjob_leaves_the_heartbeat(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube, runtime={"type": "heartbeat"})
    reconcile(ctx, kube, body)
    body = kube.patch(DATAFLOW, "shop", "paid-orders", {"spec": {"runtime": {"type": "cronjob"}}})
    reconcile(ctx, kube, body)
    assert kube.names(CRONJOB, "shop") == ["df-paid-orders"]


def test_a_resync_pass_over_heartbeat_flows_deletes_no_cronjob_that_was_not_listed(
    ctx: Context, kube: MemoryKube
) -> None:
    for name in ("one", "two"):
        reconcile(ctx, kube, apply_flow(kube, name=name, runtime={"type": "heartbeat"}))
    kube.requests.clear()
    assert resync_all(ctx, ["shop"]) == 0
    assert not [r for r in kube.requests if r[0] == "delete"]


def test_a_resync_pass_deletes_the_own_cronjob_a_heartbeat_flow_still_has(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube)
    reconcile(ctx, kube, body)
    kube.patch(DATAFLOW, "shop", "paid-orders", {"spec": {"runtime": {"type": "heartbeat"}}})  # no event seen
    resync_all(ctx, ["shop"])
    assert kube.names(CRONJOB, "shop") == ["adf-heartbeat"]


def test_an_update_of_a_flow_already_in_the_heartbeat_deletes_nothing(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube, runtime={"type": "heartbeat"})
    reconcile(ctx, kube, body)
    body = kube.patch(DATAFLOW, "shop", "paid-orders", {"spec": {"description": "nightly"}})
    kube.requests.clear()
    reconcile_flow(body, status={}, ctx=ctx, was_heartbeat=True)
    assert not [r for r in kube.requests if r[0] == "delete"]


def test_delete_disables_the_record_and_keeps_history(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube)
    reconcile(ctx, kube, body)
    store = ctx.store()
    run = store.claim("paid-orders", "shop", now=NOW, runner_id="t", lease_seconds=60, require_due=False)
    store.start_run(run.id, now=NOW, lease_seconds=60)
    store.finish_run(run.id, status="success", now=NOW, counts=Counts(1, 1, 0))
    flow_deleted(gone(kube, body), ctx=ctx)
    assert store.get_flow("paid-orders", "shop").enabled is False
    assert [r.id for r in store.list_runs("paid-orders", "shop")] == [run.id]
    assert kube.reasons()[-1] == "Disabled"


def test_the_deletion_of_a_dataflow_recreated_since_leaves_the_new_ones_record_enabled(
    ctx: Context, kube: MemoryKube
) -> None:
    old = apply_flow(kube)
    reconcile(ctx, kube, old)
    old = gone(kube, old)
    reconcile(ctx, kube, apply_flow(kube))  # the same name again, handled before the old one's deletion
    flow_deleted(old, ctx=ctx)
    assert ctx.store().get_flow("paid-orders", "shop").enabled is True
    assert "Disabled" not in kube.reasons()


def test_the_start_disables_the_records_of_dataflows_deleted_while_no_operator_ran(
    ctx: Context, kube: MemoryKube
) -> None:
    for name in ("kept", "deleted"):
        reconcile(ctx, kube, apply_flow(kube, name=name))
    kube.delete(DATAFLOW, "shop", "deleted")  # no event reaches an operator
    assert sweep_deleted_flows(ctx, None) == [("shop", "deleted")]
    assert {f.name: f.enabled for f in ctx.store().list_flows("shop")} == {"kept": True, "deleted": False}
    assert sweep_deleted_flows(ctx, None) == []  # only enabled records are looked at


def test_the_start_deletes_the_store_secret_of_a_namespace_whose_dataflows_were_deleted_while_no_operator_ran(
    ctx: Context, kube: MemoryKube
) -> None:
    reconcile(ctx, kube, apply_flow(kube))
    reconcile(ctx, kube, kube.add(DATAFLOW, dataflow_body("kept", namespace="team-a")))
    kube.delete(DATAFLOW, "shop", "paid-orders")  # no event reaches an operator
    assert sweep_deleted_flows(ctx, None) == [("shop", "paid-orders")]
    assert kube.names(SECRET, "shop") == [] and kube.names(SECRET, "team-a") == [STORE_SECRET]


def test_the_start_sweeps_only_the_watched_namespaces(ctx: Context, kube: MemoryKube) -> None:
    reconcile(ctx, kube, apply_flow(kube))
    kube.delete(DATAFLOW, "shop", "paid-orders")
    assert sweep_deleted_flows(ctx, ["other"]) == []
    assert ctx.store().get_flow("paid-orders", "shop").enabled is True
    assert kube.names(SECRET, "shop") == [STORE_SECRET]


def test_delete_of_an_invalid_flow_that_was_never_stored_is_fine(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube)
    del body["spec"]["source"]
    kube.delete(DATAFLOW, "shop", "paid-orders")
    flow_deleted(body, ctx=ctx)
    assert ctx.store().get_flow("paid-orders", "shop") is None


def test_deleting_the_last_heartbeat_flow_removes_the_heartbeat_cronjob(ctx: Context, kube: MemoryKube) -> None:
    one = apply_flow(kube, name="one", runtime={"type": "heartbeat"})
    two = apply_flow(kube, name="two", runtime={"type": "heartbeat"})
    reconcile(ctx, kube, one)
    reconcile(ctx, kube, two)
    flow_deleted(gone(kube, one), ctx=ctx)
    owners = kube.get(CRONJOB, "shop", "adf-heartbeat")["metadata"]["ownerReferences"]
    assert [o["name"] for o in owners] == ["two"]
    flow_deleted(gone(kube, two), ctx=ctx)
    assert kube.names(CRONJOB, "shop") == []


def annotate(kube: MemoryKube, value: str) -> dict[str, Any]:
    patch = {"metadata": {"annotations": {"activedataflow.io/run-now": value}}}
    return kube.patch(DATAFLOW, "shop", "paid-orders", patch)


def run_now(ctx: Context, kube: MemoryKube, body: dict[str, Any]) -> str | None:
    status: dict[str, Any] = {}
    name = handle_run_now(body, status=status, ctx=ctx)
    if status:
        kube.patch(DATAFLOW, "shop", "paid-orders", {"status": status}, status=True)
    return name


def test_run_now_creates_a_job_from_the_cronjob_and_acknowledges(ctx: Context, kube: MemoryKube) -> None:
    reconcile(ctx, kube, apply_flow(kube))
    job_name = run_now(ctx, kube, annotate(kube, "1700000000"))
    job = kube.get(JOB, "shop", job_name)
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("DataFlow", "paid-orders", True)
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "--force"
    assert kube.get(DATAFLOW, "shop", "paid-orders")["status"]["lastHandledRunNow"] == "1700000000"
    assert kube.reasons()[-1] == "RunRequested"


def test_one_run_now_value_runs_once(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube)
    reconcile(ctx, kube, body)
    annotated = annotate(kube, "1700000000")
    run_now(ctx, kube, annotated)
    run_now(ctx, kube, annotated)  # handled again before the acknowledgement was seen: AlreadyExists
    assert run_now(ctx, kube, fresh(kube, body)) is None  # acknowledged: nothing to do
    assert len(kube.names(JOB, "shop")) == 1
    run_now(ctx, kube, annotate(kube, "1700000100"))
    assert len(kube.names(JOB, "shop")) == 2


def test_run_now_waits_for_the_cronjob(ctx: Context, kube: MemoryKube) -> None:
    apply_flow(kube)
    with pytest.raises(kopf.TemporaryError, match="CronJob df-paid-orders does not exist yet"):
        handle_run_now(annotate(kube, "1"), status={}, ctx=ctx)


def test_run_now_of_a_suspended_flow_is_refused_with_an_event(ctx: Context, kube: MemoryKube) -> None:
    reconcile(ctx, kube, apply_flow(kube, suspend=True))
    assert run_now(ctx, kube, annotate(kube, "1")) is None
    assert kube.names(JOB, "shop") == []
    assert kube.events[-1]["reason"] == "RunNowRefused"
    assert kube.get(DATAFLOW, "shop", "paid-orders")["status"]["lastHandledRunNow"] == "1"


def test_register_keeps_a_due_time_unless_the_timing_changes(ctx: Context) -> None:
    store = ctx.store()
    flow = dataflow()
    register_flow(store, flow, now=NOW)
    due = NOW - timedelta(minutes=1)
    run = store.claim("paid-orders", "shop", now=NOW, runner_id="t", lease_seconds=60, next_run_at=due,
                      require_due=False)
    store.start_run(run.id, now=NOW, lease_seconds=60)
    store.finish_run(run.id, status="success", now=NOW, counts=Counts())
    assert register_flow(store, flow, now=NOW).next_run_at == due  # an operator restart skips nothing
    moved = register_flow(store, dataflow(schedule="0 3 * * *"), now=NOW)
    assert moved.next_run_at == datetime(2025, 3, 2, 2, 0, tzinfo=UTC)  # 03:00 Europe/Berlin


def test_resync_restores_a_cronjob_deleted_by_hand(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube)
    reconcile(ctx, kube, body)
    kube.delete(CRONJOB, "shop", "df-paid-orders")
    status: dict[str, Any] = {}
    reconcile_flow(fresh(kube, body), status=status, ctx=ctx, resync=True)
    assert kube.names(CRONJOB, "shop") == ["df-paid-orders"]
    assert kube.names(SECRET, "shop") == [STORE_SECRET]


def test_the_first_pass_at_a_start_leaves_a_dataflow_never_handled_to_kopfs_create_handler(
    ctx: Context, kube: MemoryKube
) -> None:
    reconcile(ctx, kube, apply_flow(kube, name="handled"))
    kube.delete(CRONJOB, "shop", "df-handled")  # while no operator ran
    apply_flow(kube, name="new")  # created while no operator ran: kopf sees a create
    assert resync_all(ctx, ["shop"], start=True) == 0  # the status of "handled" is unchanged
    assert kube.names(CRONJOB, "shop") == ["df-handled"]  # resumed; "new" is left to its create handler
    assert kube.reasons() == ["Created", "Created"]  # handled's first CronJob, and its remade one


def test_the_resync_thread_resumes_every_dataflow_at_once_then_waits_its_interval(
    ctx: Context, kube: MemoryKube
) -> None:
    reconcile(ctx, kube, apply_flow(kube))
    kube.delete(CRONJOB, "shop", "df-paid-orders")
    applied, real_apply = threading.Event(), kube.apply

    def apply(*args: Any, **kwargs: Any) -> Any:
        try:
            return real_apply(*args, **kwargs)
        finally:
            applied.set()

    kube.apply = apply  # type: ignore[method-assign]
    resyncer = Resyncer(ctx, ["shop"], interval=3600).start()
    try:
        assert applied.wait(10), "the first pass did not run at the start"
    finally:
        resyncer.stop()  # (the MemoryKube is read only once the thread is done)
    assert kube.names(CRONJOB, "shop") == ["df-paid-orders"]


def test_resync_reconciles_a_page_before_it_asks_for_the_next(ctx: Context, kube: MemoryKube) -> None:
    for name in ("one", "two", "three"):
        reconcile(ctx, kube, apply_flow(kube, name=name))
    kube.delete(CRONJOB, "shop", "df-three")
    seen: list[str] = []
    real_pages = kube.pages

    def pages(kind: Any, *args: Any, **kwargs: Any) -> Any:
        for page in real_pages(kind, *args, **{**kwargs, "size": 2}):
            if kind == DATAFLOW:
                seen.append(f"page of {len(page)}")
            yield page

    kube.pages = pages  # type: ignore[method-assign]
    applied = kube.apply

    def apply(kind: Any, namespace: str, body: Any, **kwargs: Any) -> Any:
        seen.append(f"apply {body['metadata']['name']}")
        return applied(kind, namespace, body, **kwargs)

    kube.apply = apply  # type: ignore[method-assign]
    resync_all(ctx, ["shop"])
    assert seen == ["page of 2", "apply df-three", "page of 1"]  # pages by name: [one, three], [two]


def test_resync_of_an_invalid_spec_repeats_no_event(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube, schedule=None, interval="7m")
    with pytest.raises(kopf.PermanentError):
        reconcile(ctx, kube, body)
    with pytest.raises(kopf.PermanentError):
        reconcile_flow(fresh(kube, body), status={}, ctx=ctx, resync=True)
    assert kube.reasons() == ["InvalidSpec"]


def test_a_resync_pass_writes_no_status_of_an_unchanged_flow(ctx: Context, kube: MemoryKube) -> None:
    reconcile(ctx, kube, apply_flow(kube))
    kube.requests.clear()
    assert resync_all(ctx, ["shop"]) == 0
    assert [r for r in kube.requests if r[0].startswith("patch")] == []


def test_a_resync_pass_lists_the_cronjobs_instead_of_reading_each(ctx: Context, kube: MemoryKube) -> None:
    for name in ("one", "two", "three"):
        reconcile(ctx, kube, apply_flow(kube, name=name))
    kube.requests.clear()
    assert resync_all(ctx, ["shop"]) == 0
    assert [(verb, name) for verb, plural, name in kube.requests if plural == "cronjobs"] == [("list", "")]


def test_a_resync_pass_applies_a_cronjob_the_list_shows_out_of_date_or_missing(ctx: Context, kube: MemoryKube) -> None:
    for name in ("one", "two", "three"):
        reconcile(ctx, kube, apply_flow(kube, name=name))
    kube.patch(CRONJOB, "shop", "df-one", {"metadata": {"annotations": {SPEC_HASH_ANNOTATION: "edited"}},
                                           "spec": {"schedule": "* * * * *"}})
    kube.delete(CRONJOB, "shop", "df-two")
    kube.requests.clear()
    resync_all(ctx, ["shop"])
    assert sorted(name for verb, plural, name in kube.requests if verb == "apply") == ["df-one", "df-two"]
    assert kube.get(CRONJOB, "shop", "df-one")["spec"]["schedule"] != "* * * * *"  # type: ignore[index]
    assert kube.names(CRONJOB, "shop") == ["df-one", "df-three", "df-two"]
    assert kube.reasons()[-2:] == ["Updated", "Created"]  # (flows in name order: one, three, two)


def test_a_resync_pass_that_cannot_list_cronjobs_reads_each_instead(ctx: Context, kube: MemoryKube) -> None:
    """An operator upgraded before its role (a chart without ``list`` on cronjobs) still repairs drift."""
    reconcile(ctx, kube, apply_flow(kube, name="one"))
    reconcile(ctx, kube, apply_flow(kube, name="two"))
    kube.delete(CRONJOB, "shop", "df-two")
    real_pages = kube.pages

    def pages(kind: Any, *args: Any, **kwargs: Any) -> Any:
        if kind == CRONJOB:
            raise KubeError(403, 'cronjobs.batch is forbidden: cannot list resource "cronjobs"')
        return real_pages(kind, *args, **kwargs)

    kube.pages = pages  # type: ignore[method-assign]
    kube.requests.clear()
    resync_all(ctx, ["shop"])
    assert [(verb, name) for verb, plural, name in kube.requests if plural == "cronjobs" and verb != "create"] == [
        ("get", "df-one"), ("get", "df-two"), ("apply", "df-two")]  # (MemoryKube's apply records a create too)
    assert kube.names(CRONJOB, "shop") == ["df-one", "df-two"]


def test_a_resync_pass_repairs_each_flow_and_writes_the_status_it_changed(ctx: Context, kube: MemoryKube) -> None:
    first = apply_flow(kube)
    reconcile(ctx, kube, first)
    second = apply_flow(kube, name="refunds")  # never reconciled: no status yet
    kube.delete(CRONJOB, "shop", "df-paid-orders")
    assert resync_all(ctx, None) == 1
    assert kube.names(CRONJOB, "shop") == ["df-paid-orders", "df-refunds"]
    assert ready(fresh(kube, second)["status"])["status"] == "True"


def test_a_resync_pass_leaves_a_flow_changed_since_the_list_to_its_own_event(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube)
    listed = fresh(kube, body)
    kube.patch(DATAFLOW, "shop", "paid-orders", {"spec": {"suspend": True}})  # a change after the list
    kube.list = lambda *_args, **_kw: [listed]  # type: ignore[method-assign]
    assert resync_all(ctx, ["shop"]) == 0  # the status write met the changed resourceVersion
    assert "status" not in fresh(kube, body) or not fresh(kube, body)["status"]


def test_a_resync_pass_goes_on_past_a_flow_that_fails(ctx: Context, kube: MemoryKube) -> None:
    bad = apply_flow(kube, name="bad", schedule=None, interval="7m")
    good = apply_flow(kube, name="good")
    assert resync_all(ctx, ["shop"]) == 2  # both statuses written: the invalid spec as Ready=False
    assert ready(fresh(kube, bad)["status"])["reason"] == "InvalidSpec"
    assert ready(fresh(kube, good)["status"])["status"] == "True"


def test_next_run_is_the_first_cronjob_tick_at_or_after_the_due_time(ctx: Context, kube: MemoryKube) -> None:
    body = apply_flow(kube, schedule=None, interval="15m", timeZone=None)
    reconcile(ctx, kube, body)
    store = ctx.store()
    run = store.claim("paid-orders", "shop", now=NOW, runner_id="t", lease_seconds=60, require_due=False,
                      next_run_at=NOW + timedelta(minutes=15))  # 10:22:30
    store.start_run(run.id, now=NOW, lease_seconds=60)
    store.finish_run(run.id, status="success", now=NOW, counts=Counts())
    status = reconcile(ctx, kube, fresh(kube, body))
    assert status["nextRunAt"] == "2025-03-01T10:30:00Z"  # '*/15 * * * *' fires at 10:30 first


def test_was_heartbeat_is_known_on_create_and_update_and_unknown_otherwise() -> None:
    from activedataflow.operator.handlers.handle_reconcile import was_heartbeat

    assert was_heartbeat("create", None) is False
    assert was_heartbeat("update", {"runtime": {"type": "heartbeat"}}) is True
    assert was_heartbeat("update", {"runtime": {"type": "cronjob"}}) is False
    assert was_heartbeat("update", {}) is False  # runtime defaults to cronjob
    assert was_heartbeat("resume", None) is None
