"""The CronJob and Job manifests built from a DataFlow (pure builders)."""

from __future__ import annotations

import json

import pytest
from activedataflow.errors import ConfigError
from activedataflow.kube.names import manual_run_name
from activedataflow.model import SecretKeyRef
from activedataflow.operator.cronjob import (
    HEARTBEAT_CRONJOB,
    JOB_DEADLINE_GRACE_SECONDS,
    LOST_RUNNER_RETRIES,
    build_flow_cronjob,
    build_heartbeat_cronjob,
    build_manual_job,
    cron_for_interval,
    cron_schedule,
    cronjob_name,
    manual_job_name,
)

from tests.operator.conftest import dataflow, dataflow_body

STORE = SecretKeyRef(name="adf-store", key="url")
# the conftest flow: timeoutSeconds 3600 for each of 4 attempts, backoffs 30, 60 and 120 s between them
RUNNER_DEADLINE = 4 * 3600 + 30 + 60 + 120 + JOB_DEADLINE_GRACE_SECONDS


def container(cronjob: dict) -> dict:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]


def env_of(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c["env"]}


@pytest.mark.parametrize(
    ("interval", "cron"),
    [
        ("1m", "* * * * *"),
        ("5m", "*/5 * * * *"),
        ("15m", "*/15 * * * *"),
        ("30m", "*/30 * * * *"),
        ("60m", "0 * * * *"),
        ("1h", "0 * * * *"),
        ("2h", "0 */2 * * *"),
        ("6h", "0 */6 * * *"),
        ("12h", "0 */12 * * *"),
        ("24h", "0 0 * * *"),
    ],
)
def test_interval_maps_to_the_equivalent_cron(interval: str, cron: str) -> None:
    flow = dataflow(schedule=None, interval=interval)
    assert cron_schedule(flow) == cron


@pytest.mark.parametrize("interval", ["7m", "90m", "1h30m", "5h", "48h"])
def test_interval_cron_cannot_express_is_refused_naming_spec_interval(interval: str) -> None:
    with pytest.raises(ConfigError) as err:
        dataflow(schedule=None, interval=interval)  # the model refuses it before any CronJob is built
    assert err.value.field == "spec.interval"
    assert str(err.value).startswith(f"spec.interval: '{interval}' cannot be expressed exactly as a cron schedule")


def test_seconds_never_map_to_cron() -> None:
    assert cron_for_interval(90) is None
    assert cron_for_interval(30) is None


@pytest.mark.parametrize("schedule", ["@hourly", "@every 90m", "0 0 ? * *", " 0  2 * * 1-5"])
def test_the_schedule_goes_to_the_cronjob_as_written(schedule: str) -> None:
    # the model accepts what the API server accepts and reads it as the controller does
    assert cron_schedule(dataflow(schedule=schedule)) == schedule


def test_flow_cronjob_maps_the_spec(runner) -> None:
    body = dataflow_body()
    cj = build_flow_cronjob(dataflow(), owner=body, runner=runner, store=STORE)
    spec = cj["spec"]
    assert cj["metadata"]["name"] == "df-paid-orders"
    assert spec["schedule"] == "*/15 * * * *"
    assert spec["timeZone"] == "Europe/Berlin"
    assert spec["suspend"] is False
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 300
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 1)
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == RUNNER_DEADLINE
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "adf-runner"
    assert container(cj)["image"] == "registry.example/adf:1.2"
    assert container(cj)["command"] == ["adf", "heartbeat", "--flow", "paid-orders", "--namespace", "shop"]


def test_the_runner_of_a_flows_cronjob_is_told_its_jobs_name(runner) -> None:
    # the CronJob controller names a Job <cronjob>-<tick in unix minutes>: the runner runs that tick
    cj = build_flow_cronjob(dataflow(), owner=dataflow_body(), runner=runner, store=STORE)
    env = {e["name"]: e for e in container(cj)["env"]}
    assert env["ADF_JOB_NAME"] == {
        "name": "ADF_JOB_NAME",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}},
    }


def test_the_runner_of_the_heartbeat_cronjob_is_told_its_schedule(runner) -> None:
    # from which it computes its flows' status.nextRunAt as the operator does
    flow = dataflow(runtime={"type": "heartbeat"})
    cj = build_heartbeat_cronjob("shop", [(flow, dataflow_body())], runner=runner, store=STORE)
    env = {e["name"]: e.get("value") for e in container(cj)["env"]}
    assert env["ADF_HEARTBEAT_SCHEDULE"] == runner.heartbeat_schedule == cj["spec"]["schedule"]


def test_flow_cronjob_is_controlled_by_its_dataflow_and_labelled(runner) -> None:
    body = dataflow_body()
    cj = build_flow_cronjob(dataflow(), owner=body, runner=runner, store=STORE)
    (ref,) = cj["metadata"]["ownerReferences"]
    assert ref == {
        "apiVersion": "activedataflow.io/v1alpha1",
        "kind": "DataFlow",
        "name": "paid-orders",
        "uid": body["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    for labels in (cj["metadata"]["labels"], cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]):
        assert labels["app.kubernetes.io/managed-by"] == "activedataflow"
        assert labels["activedataflow.io/flow"] == "paid-orders"


def test_store_url_and_connection_secrets_come_from_secrets_by_env(runner) -> None:
    cj = build_flow_cronjob(dataflow(), owner=dataflow_body(), runner=runner, store=STORE)
    env = env_of(container(cj))
    assert env["ADF_STORE_URL"] == {
        "name": "ADF_STORE_URL",
        "valueFrom": {"secretKeyRef": {"name": "adf-store", "key": "url"}},
    }
    assert env["ADF_SECRET_SHOP_DB_URL"]["valueFrom"] == {"secretKeyRef": {"name": "shop-db", "key": "url"}}
    assert env["ADF_SECRET_WAREHOUSE_DB_DSN"]["valueFrom"] == {"secretKeyRef": {"name": "warehouse-db", "key": "dsn"}}
    assert env["ADF_FLOW_NAMESPACE"]["value"] == "shop"
    assert env["ADF_TRIGGER"]["value"] == "schedule"
    assert "://" not in json.dumps(cj)  # no URL is ever inlined


def test_optional_fields_are_left_out_when_unset(runner) -> None:
    flow = dataflow(timeZone=None, startingDeadlineSeconds=None, runtime={"type": "cronjob"})
    cj = build_flow_cronjob(flow, owner=dataflow_body(), runner=runner, store=STORE)
    assert "timeZone" not in cj["spec"]
    assert "startingDeadlineSeconds" not in cj["spec"]
    assert "activeDeadlineSeconds" not in cj["spec"]["jobTemplate"]["spec"]


# Retries: the runner retries a failed flow in-process (each attempt a DataFlowRun) and then exits 1;
# the Job only replaces a runner that did not get to finish (killed, OOM, evicted, crashed).
RUNNER_RETRY_POLICY = {
    "rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "adf", "operator": "In", "values": [1]}},
    ]
}


def job_failure_handling(job_spec: dict) -> tuple[object, object, object]:
    return job_spec.get("backoffLimit"), job_spec.get("podFailurePolicy"), job_spec["template"]["spec"]["restartPolicy"]


@pytest.mark.parametrize("retries", [None, {"limit": 0}, {"limit": 3, "backoffSeconds": 30}, {"limit": 100}])
def test_the_job_never_reruns_a_runner_whose_flow_failed_only_one_that_died(runner, retries) -> None:
    """Not (limit+1)**2 attempts: exit 1 (the flow failed, retried in-process already) fails the Job; a crash
    (any other exit: OOM kill, SIGTERM of a deleted Pod, an internal error, an unreachable store) is replaced
    up to LOST_RUNNER_RETRIES times whatever retries.limit is; a disruption (eviction, preemption, node
    drain) is replaced without counting. podFailurePolicy needs restartPolicy Never."""
    runtime = {"type": "cronjob"} if retries is None else {"type": "cronjob", "retries": retries}
    cj = build_flow_cronjob(dataflow(runtime=runtime), owner=dataflow_body(), runner=runner, store=STORE)
    job = cj["spec"]["jobTemplate"]["spec"]
    assert job_failure_handling(job) == (LOST_RUNNER_RETRIES, RUNNER_RETRY_POLICY, "Never")
    assert LOST_RUNNER_RETRIES >= 1
    assert container(cj)["name"] == "adf"  # the container the exit-code rule names


def test_a_manual_job_has_the_same_failure_handling(runner) -> None:
    cj = build_flow_cronjob(dataflow(), owner=dataflow_body(), runner=runner, store=STORE)
    cj["metadata"]["uid"] = "cj-uid"
    job = build_manual_job(cj, owner=dataflow_body(), flow_name="paid-orders", namespace="shop", value="1700000000")
    assert job_failure_handling(job["spec"]) == (LOST_RUNNER_RETRIES, RUNNER_RETRY_POLICY, "Never")


def test_a_manual_job_of_a_heartbeat_flow_is_replaced_when_its_runner_dies(runner) -> None:
    """The shared heartbeat CronJob never retries (the next beat, a minute later, picks up a flow whose runner
    died); a run-now Job made from its template runs one flow once, so it is replaced like a flow's Job."""
    body = dataflow_body(runtime={"type": "heartbeat"})
    cj = build_heartbeat_cronjob("shop", [(dataflow(runtime={"type": "heartbeat"}), body)], runner=runner, store=STORE)
    assert job_failure_handling(cj["spec"]["jobTemplate"]["spec"]) == (0, None, "Never")
    cj["metadata"]["uid"] = "cj-uid"
    job = build_manual_job(cj, owner=dataflow_body(), flow_name="paid-orders", namespace="shop", value="1700000000")
    assert job_failure_handling(job["spec"]) == (LOST_RUNNER_RETRIES, RUNNER_RETRY_POLICY, "Never")


def test_suspend_is_carried_to_the_cronjob(runner) -> None:
    cj = build_flow_cronjob(dataflow(suspend=True), owner=dataflow_body(), runner=runner, store=STORE)
    assert cj["spec"]["suspend"] is True


def test_same_spec_gives_the_same_manifest_and_hash(runner) -> None:
    body = dataflow_body()
    a = build_flow_cronjob(dataflow(), owner=body, runner=runner, store=STORE)
    b = build_flow_cronjob(dataflow(), owner=body, runner=runner, store=STORE)
    c = build_flow_cronjob(dataflow(schedule="*/5 * * * *"), owner=body, runner=runner, store=STORE)
    hash_of = lambda cj: cj["metadata"]["annotations"]["activedataflow.io/spec-hash"]  # noqa: E731
    assert a == b
    assert hash_of(a) != hash_of(c)


def test_long_flow_names_give_valid_distinct_cronjob_names() -> None:
    # "df-" + 52 characters is 55, over the 52 the CronJob controller leaves room for: the name is cut to
    # 43 and "-" + the first 8 hex digits of the SHA-256 of the flow name appended (sha256sum by hand).
    a, b = "x" * 50 + "-a", "x" * 50 + "-b"
    assert cronjob_name(a) == "df-" + "x" * 40 + "-7c337b30"
    assert cronjob_name(b) == "df-" + "x" * 40 + "-ab7b7eb5"
    assert len(cronjob_name(a)) == 52
    assert cronjob_name("short") == "df-short"


def test_heartbeat_cronjob_env_is_the_union_of_the_flows_secrets(runner) -> None:
    one = dataflow_body("one", runtime={"type": "heartbeat"})
    two = dataflow_body("two", runtime={"type": "heartbeat"})
    two["spec"]["sink"]["connection"] = {"secretRef": {"name": "other-db"}}
    flows = [(dataflow(**one["spec"]), one), (dataflow(**two["spec"]), two)]
    cj = build_heartbeat_cronjob("shop", flows, runner=runner, store=STORE)
    assert cj["metadata"]["name"] == HEARTBEAT_CRONJOB == "adf-heartbeat"
    assert cj["spec"]["schedule"] == "* * * * *"
    assert container(cj)["command"] == ["adf", "heartbeat", "--namespace", "shop"]
    names = [e["name"] for e in container(cj)["env"] if e["name"].startswith("ADF_SECRET_")]
    assert names == ["ADF_SECRET_OTHER_DB_URL", "ADF_SECRET_SHOP_DB_URL", "ADF_SECRET_WAREHOUSE_DB_DSN"]
    owners = cj["metadata"]["ownerReferences"]
    assert {o["uid"] for o in owners} == {one["metadata"]["uid"], two["metadata"]["uid"]}
    assert not any(o["controller"] for o in owners)


def test_heartbeat_schedule_comes_from_the_settings(runner) -> None:
    from dataclasses import replace

    body = dataflow_body(runtime={"type": "heartbeat"})
    flows = [(dataflow(runtime={"type": "heartbeat"}), body)]
    cj = build_heartbeat_cronjob("shop", flows, runner=replace(runner, heartbeat_schedule="*/2 * * * *"), store=STORE)
    assert cj["spec"]["schedule"] == "*/2 * * * *"


def test_manual_job_is_made_from_the_cronjob_template(runner) -> None:
    cj = build_flow_cronjob(dataflow(), owner=dataflow_body(), runner=runner, store=STORE)
    cj["metadata"]["uid"] = "cj-uid"
    body = dataflow_body()
    job = build_manual_job(cj, owner=body, flow_name="paid-orders", namespace="shop", value="1700000000")
    meta = job["metadata"]
    assert meta["name"] == manual_job_name("df-paid-orders", "1700000000", "paid-orders")
    assert meta["name"].startswith("df-paid-orders-manual-")
    assert meta["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    # The DataFlow's, not the CronJob's: the CronJob controller would adopt it ("UnexpectedJob").
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "activedataflow.io/v1alpha1",
            "kind": "DataFlow",
            "name": "paid-orders",
            "uid": body["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["adf", "heartbeat", "--flow", "paid-orders", "--namespace", "shop", "--force"]
    assert env_of(c)["ADF_TRIGGER"]["value"] == "manual"
    assert env_of(c)["ADF_STORE_URL"] == env_of(container(cj))["ADF_STORE_URL"]
    assert job["spec"]["activeDeadlineSeconds"] == RUNNER_DEADLINE


def test_manual_job_names_its_run_from_the_annotation_value(runner) -> None:
    """ADF_RUN_NAME: a second Pod of the Job finds the run already there instead of running the flow again."""
    body = dataflow_body()
    cj = build_flow_cronjob(dataflow(), owner=body, runner=runner, store=STORE)
    cj["metadata"]["uid"] = "cj-uid"
    job = build_manual_job(cj, owner=body, flow_name="paid-orders", namespace="shop", value="1700000000")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert env_of(c)["ADF_RUN_NAME"] == {"name": "ADF_RUN_NAME", "value": "paid-orders-manual-1700000000"}
    again = build_manual_job(cj, owner=body, flow_name="paid-orders", namespace="shop", value="1700000000")
    assert again == job  # the same value, the same Job and run name (an operator restarted between)
    other = build_manual_job(cj, owner=body, flow_name="paid-orders", namespace="shop", value="1700000001")
    assert env_of(other["spec"]["template"]["spec"]["containers"][0])["ADF_RUN_NAME"]["value"] == (
        "paid-orders-manual-1700000001"
    )


def test_manual_job_of_a_heartbeat_flow_names_the_run_of_that_flow(runner) -> None:
    one, two = dataflow(runtime={"type": "heartbeat"}), dataflow(name="two", runtime={"type": "heartbeat"})
    flows = [(one, dataflow_body(runtime={"type": "heartbeat"})), (two, dataflow_body(name="two"))]
    cj = build_heartbeat_cronjob("shop", flows, runner=runner, store=STORE)
    cj["metadata"]["uid"] = "cj-uid"
    job = build_manual_job(cj, owner=dataflow_body(), flow_name="two", namespace="shop", value="Now please!")
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert env["ADF_RUN_NAME"]["value"] == manual_run_name("two", "Now please!")
    assert env["ADF_RUN_NAME"]["value"].startswith("two-manual-")  # the value is hashed: not a DNS label
    assert [e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]].count("ADF_RUN_NAME") == 1


def test_manual_job_names_differ_per_value_and_stay_valid() -> None:
    long_cj = cronjob_name("y" * 52)
    a = manual_job_name(long_cj, "1", "f")
    b = manual_job_name(long_cj, "2", "f")
    assert a != b
    assert len(a) <= 63 and a[-1].isalnum()
    assert manual_job_name(HEARTBEAT_CRONJOB, "1", "one") != manual_job_name(HEARTBEAT_CRONJOB, "1", "two")


def test_runner_pods_run_as_the_images_non_root_user_enforced_with_a_read_only_root(runner) -> None:
    cj = build_flow_cronjob(dataflow(), owner=dataflow_body(), runner=runner, store=STORE)
    pod = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    security = container(cj)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container(cj)["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]


def test_the_charts_security_contexts_reach_the_runner_pods() -> None:
    from activedataflow.operator.config import OperatorConfig

    config = OperatorConfig.from_env(env={
        "ADF_STORE_URL": "sqlite:///x.db",
        "ADF_RUNNER_POD_SECURITY_CONTEXT": json.dumps({"runAsNonRoot": True, "runAsUser": 4242, "fsGroup": 4242}),
        "ADF_RUNNER_SECURITY_CONTEXT": json.dumps({"readOnlyRootFilesystem": False}),
    })
    cj = build_flow_cronjob(dataflow(), owner=dataflow_body(), runner=config.runner, store=STORE)
    pod = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 4242, "fsGroup": 4242}
    assert container(cj)["securityContext"] == {"readOnlyRootFilesystem": False}


def test_a_security_context_that_is_not_a_json_object_is_refused_naming_the_variable() -> None:
    from activedataflow.operator.config import OperatorConfig

    with pytest.raises(ConfigError, match="ADF_RUNNER_SECURITY_CONTEXT"):
        OperatorConfig.from_env(env={"ADF_STORE_URL": "sqlite:///x.db", "ADF_RUNNER_SECURITY_CONTEXT": "[1]"})


def test_notify_webhook_secrets_come_by_env_too(runner) -> None:
    notify = [{"on": ["failure"], "webhook": {"secretRef": {"name": "alerts", "key": "url"}}},
              {"webhook": {"secretRef": {"name": "shop-db", "key": "url"}}}]  # shared with the source: one var
    cj = build_flow_cronjob(dataflow(notify=notify), owner=dataflow_body(), runner=runner, store=STORE)
    names = [e["name"] for e in container(cj)["env"]]
    env = env_of(container(cj))
    assert env["ADF_SECRET_ALERTS_URL"]["valueFrom"] == {"secretKeyRef": {"name": "alerts", "key": "url"}}
    assert names.count("ADF_SECRET_SHOP_DB_URL") == 1
    assert "://" not in json.dumps(cj)
