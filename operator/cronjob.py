"""Pure builders of the CronJob and Job manifests that run DataFlows.

No I/O here: a DataFlow (the pydantic model) and the operator's runner settings
go in, Kubernetes manifests (plain dicts) come out.

Names (deterministic, so a restarted operator finds what it made):

* ``runtime.type: cronjob`` -> one CronJob per flow, ``df-<flow>`` (``df`` is the
  DataFlow short name). CronJob names are at most 52 characters (the controller
  appends ``-<unix minutes>`` to name its Jobs), so a long flow name is cut and a
  hash of the full name appended.
* ``runtime.type: heartbeat`` -> one CronJob per namespace, ``adf-heartbeat``,
  running ``adf heartbeat --namespace NS`` (every due heartbeat flow).
* run-now -> a Job ``<cronjob>-manual-<hash>``; the hash covers the annotation
  value (and the flow, since heartbeat flows share a CronJob). Its run is named
  ``<flow>-manual-<value>`` (``ADF_RUN_NAME``; the value hashed if it is no DNS label).

Interval -> cron mapping (``runtime.type: cronjob`` only; a heartbeat flow's
interval is checked by the heartbeat itself):

==================  =================  ===========================================
interval            cron               rule
==================  =================  ===========================================
1m                  ``* * * * *``
N minutes, 60 % N   ``*/N * * * *``    5m, 10m, 15m, 20m, 30m ...
1h                  ``0 * * * *``
N hours, 24 % N     ``0 */N * * *``    2h, 3h, 4h, 6h, 8h, 12h
24h                 ``0 0 * * *``
anything else       refused            cron cannot express it exactly (7m, 90m,
                                       5h, 48h, 30s): ``spec.interval`` error
==================  =================  ===========================================
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..kube.client import owner_reference
from ..kube.names import (
    HEARTBEAT_LABEL,
    INSTANTIATE_ANNOTATION,
    JOB_NAME_ENV,
    JOB_NAME_LABEL,
    MANAGED_BY,
    RUN_NOW_ANNOTATION,
    SPEC_HASH_ANNOTATION,
    STORE_SECRET,
    STORE_SECRET_KEY,
    bounded_name,
    cronjob_name,
    labels,
    manual_run_name,
    secret_env_name,
    short_hash,
)
from ..model import DataFlow, SecretKeyRef
from ..schedule import DEFAULT_HEARTBEAT_SCHEDULE, HEARTBEAT_SCHEDULE_ENV, cron_for_interval, cronjob_schedule

__all__ = [
    "FLOW_FAILED_EXIT",
    "HEARTBEAT_CRONJOB",
    "LOST_RUNNER_RETRIES",
    "RunnerSettings",
    "build_flow_cronjob",
    "build_heartbeat_cronjob",
    "build_manual_job",
    "build_store_secret",
    "cron_for_interval",
    "cron_schedule",
    "cronjob_name",
    "manual_job_name",
    "runner_job_failure_handling",
    "secret_envs",
]

HEARTBEAT_CRONJOB = "adf-heartbeat"
CONTAINER = "adf"
JOB_NAME_LIMIT = 63
LOST_RUNNER_RETRIES = 2  # Pods of a flow's Job replaced after their runner died (see runner_job_failure_handling)
JOB_DEADLINE_GRACE_SECONDS = 60  # a Job's activeDeadlineSeconds beyond its runner's last attempt: to record the run
MANUAL_JOB_TTL_SECONDS = 86400  # a finished run-now Job (and its Pod's log) is kept for a day; its run for longer
FLOW_FAILED_EXIT = 1  # `adf heartbeat`: a flow run failed, after its in-process retries (CONTRACT.md)


RUNNER_POD_SECURITY_CONTEXT: Mapping[str, Any] = {
    "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"},
}
RUNNER_SECURITY_CONTEXT: Mapping[str, Any] = {
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
}


@dataclass(frozen=True)
class RunnerSettings:
    """How runner pods are made (the operator's ADF_RUNNER_* environment)."""

    image: str
    service_account: str | None = None
    heartbeat_schedule: str = DEFAULT_HEARTBEAT_SCHEDULE
    image_pull_policy: str | None = None
    resources: Mapping[str, Any] | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # The chart gives its podSecurityContext / securityContext (ADF_RUNNER_*SECURITY_CONTEXT); these
    # defaults hold without it: the image's non-root user, enforced, and nothing it does not need.
    pod_security_context: Mapping[str, Any] = field(default_factory=lambda: dict(RUNNER_POD_SECURITY_CONTEXT))
    security_context: Mapping[str, Any] = field(default_factory=lambda: dict(RUNNER_SECURITY_CONTEXT))


def manual_job_name(cronjob: str, value: str, flow_name: str) -> str:
    return bounded_name(cronjob, f"-manual-{short_hash(cronjob, flow_name, value)}", JOB_NAME_LIMIT)


def cron_schedule(flow: DataFlow) -> str:
    """The CronJob schedule of a ``runtime.type: cronjob`` flow (:func:`~activedataflow.schedule.cronjob_schedule`)."""
    return cronjob_schedule(flow.spec)


def secret_envs(flows: Iterable[DataFlow]) -> list[dict[str, Any]]:
    """One env var per distinct Secret key referenced by the flows' connections and notify webhooks,
    via secretKeyRef."""
    seen: dict[str, dict[str, Any]] = {}
    for flow in flows:
        webhooks = [n.webhook for n in flow.spec.notify]
        for conn in (flow.spec.source.connection, flow.spec.sink.connection, *webhooks):
            ref = conn.secretRef
            if ref is None:
                continue
            env = secret_env_name(ref.name, ref.key)
            seen.setdefault(env, {"name": env, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return [seen[k] for k in sorted(seen)]


def _pod_template(
    *,
    runner: RunnerSettings,
    command: list[str],
    namespace: str,
    trigger: str,
    store: SecretKeyRef,
    flows: Iterable[DataFlow],
    pod_labels: dict[str, str],
    job_name: bool = False,
    heartbeat_schedule: str | None = None,
) -> dict[str, Any]:
    """``job_name``: expose the Job's name (the label the Job controller gives its Pods) as
    ``ADF_JOB_NAME``, from which the runner of a flow's CronJob reads the tick it was started for.
    ``heartbeat_schedule``: the shared heartbeat CronJob's, from which its runner computes its flows'
    ``status.nextRunAt`` as the operator does."""
    env: list[dict[str, Any]] = [
        {"name": "ADF_STORE_URL", "valueFrom": {"secretKeyRef": {"name": store.name, "key": store.key}}},
        {"name": "ADF_FLOW_NAMESPACE", "value": namespace},
        {"name": "ADF_TRIGGER", "value": trigger},
        *([{"name": JOB_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_NAME_LABEL}']"}}}]
          if job_name else []),
        *([{"name": HEARTBEAT_SCHEDULE_ENV, "value": heartbeat_schedule}] if heartbeat_schedule else []),
        *({"name": k, "value": v} for k, v in sorted(runner.extra_env.items())),
        *secret_envs(flows),
    ]
    container: dict[str, Any] = {
        "name": CONTAINER, "image": runner.image, "command": command, "env": env,
        "securityContext": copy.deepcopy(dict(runner.security_context)),
        # A read-only root file system: temporary files go to a scratch volume.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if runner.image_pull_policy:
        container["imagePullPolicy"] = runner.image_pull_policy
    if runner.resources:
        container["resources"] = copy.deepcopy(dict(runner.resources))
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": copy.deepcopy(dict(runner.pod_security_context)),
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if runner.service_account:
        pod["serviceAccountName"] = runner.service_account
    return {"metadata": {"labels": pod_labels}, "spec": pod}


def runner_job_failure_handling() -> dict[str, Any]:
    """``backoffLimit`` and ``podFailurePolicy`` of a Job running one flow (its CronJob's, run-now).

    Retries of a failed flow belong to the runner: ``spec.runtime.retries`` runs in-process, each
    attempt its own DataFlowRun with ``attempt`` set, after its backoff (as for heartbeat flows and
    ``adf run``, where no Job retries). Once they are used up the runner exits 1. Were the Job to
    retry too (``backoffLimit: retries.limit``, as before), a failing flow would run
    ``(limit + 1) ** 2`` times. So:

    * exit 1 (``FLOW_FAILED_EXIT``): ``FailJob`` -- the flow failed and was retried already;
    * a ``DisruptionTarget`` condition (eviction, preemption, a node drained or tainted):
      ``Ignore`` -- the Pod is replaced without counting, the slot still has to run. First, so a
      disrupted runner is never taken for a failed flow;
    * anything else -- the runner did not get to finish: killed (OOM 137, SIGTERM 143 of a deleted
      Pod), crashed (3, an internal error), or could not start (2: the store unreachable, the flow
      record missing) -- counts against ``backoffLimit`` = ``LOST_RUNNER_RETRIES``, whatever
      ``retries.limit`` is (0 included), so a killed runner's slot is still run.

    With a ``podFailurePolicy`` the Job replaces a Pod only once it has fully terminated
    (``podReplacementPolicy: Failed``), so two runners of one Job never overlap. The replacement
    (``adf heartbeat --flow``) finds the slot's run by its name (``ADF_RUN_NAME`` or
    ``<flow>-<unix minutes>``): a slot that finished is not run again; one whose runner died is
    taken over as its next attempt (``<name>-<n+1>``) once the dead runner's lease lapsed
    (``runner/heartbeat.py``), so the slot is still run. The policy needs ``restartPolicy: Never``
    (the pod template's).
    """
    return {
        "backoffLimit": LOST_RUNNER_RETRIES,
        "podFailurePolicy": {
            "rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [FLOW_FAILED_EXIT]},
                },
            ]
        },
    }


def _with_hash(manifest: dict[str, Any]) -> dict[str, Any]:
    """Stamp the manifest with a hash of itself, so an unchanged one is recognised with one GET."""
    manifest["metadata"].setdefault("annotations", {})[SPEC_HASH_ANNOTATION] = manifest_hash(manifest)
    return manifest


def manifest_hash(manifest: Mapping[str, Any]) -> str:
    clean = copy.deepcopy(dict(manifest))
    clean["metadata"] = {k: v for k, v in clean["metadata"].items() if k != "annotations"}
    return short_hash(json.dumps(clean, sort_keys=True), length=16)


def build_flow_cronjob(
    flow: DataFlow, *, owner: Mapping[str, Any], runner: RunnerSettings, store: SecretKeyRef
) -> dict[str, Any]:
    """The CronJob of a ``runtime.type: cronjob`` flow, controlled by its DataFlow ``owner``."""
    spec = flow.spec
    flow_labels = labels(flow.name)
    job_spec: dict[str, Any] = {
        **runner_job_failure_handling(),
        "template": _pod_template(
            runner=runner,
            command=["adf", "heartbeat", "--flow", flow.name, "--namespace", flow.namespace],
            namespace=flow.namespace,
            trigger="schedule",
            store=store,
            flows=[flow],
            pod_labels=flow_labels,
            job_name=True,
        ),
    }
    if (runner_deadline := spec.runtime.all_attempts_seconds()) is not None:
        # a backstop: the runner times out each attempt itself and records the run failed; a Job killed first
        # would leave it in_progress until its lease lapsed, and a first attempt's timeout would kill the retries
        job_spec["activeDeadlineSeconds"] = runner_deadline + JOB_DEADLINE_GRACE_SECONDS
    cron: dict[str, Any] = {
        "schedule": cron_schedule(flow),
        "suspend": spec.suspend,
        "concurrencyPolicy": spec.concurrencyPolicy,
        "successfulJobsHistoryLimit": spec.successfulRunsHistoryLimit,
        "failedJobsHistoryLimit": spec.failedRunsHistoryLimit,
        "jobTemplate": {"metadata": {"labels": flow_labels}, "spec": job_spec},
    }
    if spec.timeZone:
        cron["timeZone"] = spec.timeZone
    if spec.startingDeadlineSeconds is not None:
        cron["startingDeadlineSeconds"] = spec.startingDeadlineSeconds
    return _with_hash(
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {
                "name": cronjob_name(flow.name),
                "namespace": flow.namespace,
                "labels": flow_labels,
                "ownerReferences": [owner_reference(owner, controller=True)],
            },
            "spec": cron,
        }
    )


def build_heartbeat_cronjob(
    namespace: str,
    flows: Sequence[tuple[DataFlow, Mapping[str, Any]]],
    *,
    runner: RunnerSettings,
    store: SecretKeyRef,
) -> dict[str, Any]:
    """The namespace's shared heartbeat CronJob for its ``runtime.type: heartbeat`` flows.

    ``flows`` are (model, DataFlow object) pairs; every DataFlow is an owner (none
    is the controller), so the CronJob is garbage-collected with the last of them.
    Its env is the union of the flows' Secret references.
    """
    models = [f for f, _ in sorted(flows, key=lambda p: p[0].name)]
    owners = [owner_reference(obj, controller=False) for _, obj in sorted(flows, key=lambda p: p[0].name)]
    hb_labels = labels(None)
    return _with_hash(
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {
                "name": HEARTBEAT_CRONJOB,
                "namespace": namespace,
                "labels": hb_labels,
                "ownerReferences": owners,
            },
            "spec": {
                "schedule": runner.heartbeat_schedule,  # checked by OperatorConfig.from_env
                "suspend": False,
                # Each flow's own concurrencyPolicy is enforced by the store's claim, so
                # a long flow never holds up the other flows' heartbeats.
                "concurrencyPolicy": "Allow",
                "startingDeadlineSeconds": 60,
                "successfulJobsHistoryLimit": 1,
                "failedJobsHistoryLimit": 1,
                "jobTemplate": {
                    "metadata": {"labels": hb_labels},
                    "spec": {
                        # A failed or dead heartbeat is not retried: the next beat, a minute later,
                        # runs what is still due (a dead runner's run is reaped by its lease).
                        "backoffLimit": 0,
                        "template": _pod_template(
                            runner=runner,
                            command=["adf", "heartbeat", "--namespace", namespace],
                            namespace=namespace,
                            trigger="heartbeat",
                            store=store,
                            flows=models,
                            pod_labels=hb_labels,
                            heartbeat_schedule=runner.heartbeat_schedule,
                        ),
                    },
                },
            },
        }
    )


def build_manual_job(
    cronjob: Mapping[str, Any], *, owner: Mapping[str, Any], flow_name: str, namespace: str, value: str
) -> dict[str, Any]:
    """A Job from the CronJob's jobTemplate running ``flow_name`` now (as ``kubectl create job --from``).

    Controlled by the DataFlow ``owner``, not by the CronJob: the CronJob controller takes every
    unfinished Job it controls but did not start for its own ("UnexpectedJob" events) and counts it
    for its concurrencyPolicy. The store's claim is what keeps a Forbid flow to one run at a time,
    run-now included; the Job goes with its DataFlow, or ``MANUAL_JOB_TTL_SECONDS`` after it finished.

    Retries as :func:`runner_job_failure_handling` (also for a heartbeat flow, whose CronJob never
    retries). The command gains ``--force`` (run even if not due), ``ADF_TRIGGER=manual`` and
    ``ADF_RUN_NAME``, the run's name derived from the annotation ``value``
    (:func:`~activedataflow.runner.executor.manual_run_name`): like a scheduled slot's name it
    is the same for every Pod of the Job, so a Pod started twice runs the flow once.
    """
    template = copy.deepcopy(dict(cronjob["spec"]["jobTemplate"]))
    job_spec = template["spec"]
    job_spec.update(runner_job_failure_handling())  # also from the heartbeat CronJob, which never retries
    pod = job_spec["template"]["spec"]
    container = next((c for c in pod["containers"] if c["name"] == CONTAINER), pod["containers"][0])
    container["command"] = ["adf", "heartbeat", "--flow", flow_name, "--namespace", namespace, "--force"]
    env = [e for e in container.get("env", []) if e["name"] not in ("ADF_TRIGGER", "ADF_RUN_NAME")]
    container["env"] = [
        *env,
        {"name": "ADF_TRIGGER", "value": "manual"},
        {"name": "ADF_RUN_NAME", "value": manual_run_name(flow_name, value)},
    ]
    template_labels = (template.get("metadata") or {}).get("labels") or {}
    job_labels = {k: v for k, v in template_labels.items() if k != HEARTBEAT_LABEL} | labels(flow_name)
    job_spec["template"]["metadata"] = {**(job_spec["template"].get("metadata") or {}), "labels": dict(job_labels)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": manual_job_name(cronjob["metadata"]["name"], value, flow_name),
            "namespace": namespace,
            "labels": job_labels,
            "annotations": {INSTANTIATE_ANNOTATION: "manual", RUN_NOW_ANNOTATION: value},
            "ownerReferences": [owner_reference(owner, controller=True)],
        },
        "spec": {**job_spec, "ttlSecondsAfterFinished": MANUAL_JOB_TTL_SECONDS},
    }


def build_store_secret(namespace: str, *, url: str) -> dict[str, Any]:
    """The namespace's Secret ``STORE_SECRET`` holding the store URL for the runner pods. No owner
    references: the operator deletes it with the namespace's last DataFlow (see :mod:`.store_secret`)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": STORE_SECRET, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "type": "Opaque",
        "data": {STORE_SECRET_KEY: base64.b64encode(url.encode()).decode()},
    }
