"""Reconciliation of DataFlows: plain functions that kopf's decorators (``main.py``) call.

Each takes the resource body (a mapping), a mutable ``status`` patch and a
:class:`Context` (configuration, a :class:`~.kube.KubeApi`, the store) and
either returns or raises ``kopf.PermanentError`` / ``kopf.TemporaryError``;
``status`` is filled in either way (kopf applies it even when a handler fails).

Idempotence: every object has a deterministic name, every write is a
create-or-patch (server-side apply) or a create that treats AlreadyExists as
done, and the run-now acknowledgement is written only after its Job exists. The
operator can die at any line; the next pass converges to the same state.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import kopf

from ..errors import ConfigError, StoreUnavailable, UnknownFlow, redact
from ..kube import status as st
from ..kube.client import CRONJOB, DATAFLOW, JOB, SECRET, AlreadyExists, Conflict, KubeApi, KubeError, rfc3339
from ..kube.names import MANAGED_BY, RUN_NOW_ANNOTATION, SPEC_HASH_ANNOTATION, STORE_SECRET, STORE_SECRET_KEY
from ..model import DataFlow, SecretKeyRef, parse_dataflow
from ..schedule import DEFAULT_HEARTBEAT_SCHEDULE, HEARTBEAT_SCHEDULE_ENV, utcnow
from ..schedule import next_run_for_status as status_next_run
from ..store.base import FlowRecord, Store
from ..store.registration import register_flow
from .cronjob import (
    HEARTBEAT_CRONJOB,
    RunnerSettings,
    build_flow_cronjob,
    build_heartbeat_cronjob,
    build_manual_job,
    build_store_secret,
    cron_schedule,
    cronjob_name,
)

__all__ = [
    "Context",
    "OperatorConfig",
    "ensure_store_secret",
    "finalize_flow",
    "handle_run_now",
    "reconcile_flow",
    "register_flow",
    "sync_heartbeat",
]

log = logging.getLogger("activedataflow.operator")

DEFAULT_RUNNER_IMAGE = "activedataflow:0.1.0"
CONFLICT_RETRIES = 8
SECRET_CACHE_SECONDS = 300.0  # how long a store Secret read or written is trusted without a GET


@dataclass(frozen=True)
class OperatorConfig:
    """The operator's settings (from its environment; the Helm chart sets them)."""

    store_url: str
    runner: RunnerSettings

    @classmethod
    def from_env(cls, *, store_url: str | None = None, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """``ADF_STORE_URL``, ``ADF_RUNNER_IMAGE``,
        ``ADF_RUNNER_SERVICE_ACCOUNT``, ``ADF_RUNNER_IMAGE_PULL_POLICY``, ``ADF_RUNNER_RESOURCES``,
        ``ADF_RUNNER_POD_SECURITY_CONTEXT``, ``ADF_RUNNER_SECURITY_CONTEXT`` (JSON objects),
        ``ADF_HEARTBEAT_SCHEDULE``."""
        from ..schedule import check_cron
        from ..store import store_url as effective_store_url

        env = os.environ if env is None else env

        def json_object(var: str) -> dict[str, Any] | None:
            raw = env.get(var)
            if not raw:
                return None
            try:
                value = json.loads(raw)
            except ValueError as err:
                raise ConfigError(f"not JSON: {err}", field=var) from None
            if not isinstance(value, dict):
                raise ConfigError("expected a JSON object", field=var)
            return value

        resources = json_object("ADF_RUNNER_RESOURCES")
        security = {
            key: value
            for key, var in (("pod_security_context", "ADF_RUNNER_POD_SECURITY_CONTEXT"),
                             ("security_context", "ADF_RUNNER_SECURITY_CONTEXT"))
            if (value := json_object(var)) is not None
        }
        schedule = env.get(HEARTBEAT_SCHEDULE_ENV) or DEFAULT_HEARTBEAT_SCHEDULE
        try:
            check_cron(schedule)
        except ValueError as err:
            raise ConfigError(str(err), field=HEARTBEAT_SCHEDULE_ENV) from None
        return cls(
            store_url=store_url or env.get("ADF_STORE_URL") or effective_store_url(None),
            runner=RunnerSettings(
                image=env.get("ADF_RUNNER_IMAGE") or DEFAULT_RUNNER_IMAGE,
                service_account=env.get("ADF_RUNNER_SERVICE_ACCOUNT") or None,
                heartbeat_schedule=schedule,
                image_pull_policy=env.get("ADF_RUNNER_IMAGE_PULL_POLICY") or None,
                resources=resources,
                **security,
            ),
        )


class Context:
    """What the handlers share: configuration, the Kubernetes API and the store.

    The store URL is checked at construction (ConfigError for a malformed one);
    connecting and migrating happen on first use, so an unreachable store is
    retried per resource (Ready=False StorageUnavailable) instead of crashing.
    """

    def __init__(
        self,
        config: OperatorConfig,
        kube: KubeApi,
        *,
        open_store: Callable[..., Store] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if open_store is None:
            from ..store import open_store as default_open_store

            open_store = default_open_store
        self.config = config
        self.kube = kube
        self.clock = clock
        self._store = open_store(config.store_url, migrate=False)
        self._migrated = False
        self._lock = threading.Lock()
        self._secret_locks: dict[str, threading.Lock] = {}
        self._secrets: dict[str, tuple[float, dict[str, Any]]] = {}

    def secret_lock(self, namespace: str) -> threading.Lock:
        """Serialises this operator's writes of one namespace's store Secret (its handlers run in threads)."""
        with self._lock:
            return self._secret_locks.setdefault(namespace, threading.Lock())

    def known_secret(self, namespace: str) -> dict[str, Any] | None:
        """The namespace's store Secret as this operator last read or wrote it, if not older than
        ``SECRET_CACHE_SECONDS`` (a Secret changed by someone else is seen again after that)."""
        entry = self._secrets.get(namespace)
        if entry is None or time.monotonic() - entry[0] > SECRET_CACHE_SECONDS:
            return None
        return entry[1]

    def remember_secret(self, namespace: str, secret: dict[str, Any] | None) -> None:
        if secret is None:
            self._secrets.pop(namespace, None)
        else:
            self._secrets[namespace] = (time.monotonic(), secret)

    def store(self) -> Store:
        if not self._migrated:
            self._store.migrate()  # idempotent; StoreUnavailable naming the address if unreachable
            self._migrated = True
        return self._store

    def close(self) -> None:
        self._store.close()


# --------------------------------------------------------------------------- helpers


def plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A deep, plain-dict copy of a resource body (kopf's Body is a read-only view)."""
    return copy.deepcopy(dict(body))


def backoff(retry: int) -> float:
    """Seconds before retry number ``retry`` (5, 10, 20 ... at most 5 minutes)."""
    return float(min(300, 5 * 2 ** min(retry, 10)))


def _ready(
    obj: Mapping[str, Any], status: MutableMapping[str, Any], ctx: Context, ok: bool, reason: str, message: str
) -> bool:
    """Write the Ready condition; True if its status or reason changed (worth an Event)."""
    previous = (obj.get("status") or {}).get("conditions")
    before = st.condition(previous)
    generation = obj["metadata"].get("generation")
    cond = st.Condition(type=st.READY, status="True" if ok else "False", reason=reason, message=message)
    status["conditions"] = st.set_condition(previous, cond, generation=generation, now=ctx.clock())
    status["observedGeneration"] = generation
    return before is None or before.get("status") != cond.status or before.get("reason") != reason


def _not_ready(
    obj: Mapping[str, Any],
    status: MutableMapping[str, Any],
    ctx: Context,
    reason: str,
    message: str,
    *,
    always_event: bool = False,
) -> None:
    if _ready(obj, status, ctx, False, reason, message) or always_event:
        ctx.kube.post_event(obj, type="Warning", reason=reason, message=message)


@contextmanager
def _reported(obj: Mapping[str, Any], status: MutableMapping[str, Any], ctx: Context, retry: int) -> Iterator[None]:
    """Store and API failures -> Ready=False with the reason, then a retry with backoff."""
    try:
        yield
    except StoreUnavailable as err:
        message = redact(str(err))
        _not_ready(obj, status, ctx, st.STORAGE_UNAVAILABLE, message)
        raise kopf.TemporaryError(message, delay=backoff(retry)) from None
    except (KubeError, OSError) as err:
        message = f"Kubernetes API: {redact(str(err))}"
        _not_ready(obj, status, ctx, st.KUBERNETES_ERROR, message)
        raise kopf.TemporaryError(message, delay=backoff(retry)) from None


def _parse(obj: Mapping[str, Any]) -> DataFlow:
    flow = parse_dataflow(dict(obj))
    if flow.spec.runtime.type == "cronjob":
        cron_schedule(flow)  # an interval cron cannot express raises naming spec.interval
    return flow


def _is_heartbeat(obj: Mapping[str, Any]) -> bool:
    return ((obj.get("spec") or {}).get("runtime") or {}).get("type") == "heartbeat"


def _reconciled_at_this_generation(obj: Mapping[str, Any]) -> bool:
    """Ready=True for the current generation: a whole pass for this spec completed (a pass sets it
    last), so whatever that pass did (such as taking the flow out of the heartbeat CronJob) is done."""
    status = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    ready = st.condition(status.get("conditions"))
    return (generation is not None and status.get("observedGeneration") == generation and ready is not None
            and ready.get("status") == "True")


def was_heartbeat(reason: str, old: Any) -> bool | None:
    """Whether the flow ran in the shared heartbeat CronJob before this event: never on create;
    from the old spec on an update (kopf gives the old value of the watched ``spec`` field);
    unknown (None) otherwise."""
    if reason == "create":
        return False
    if reason == "update" and isinstance(old, Mapping):
        return ((old.get("runtime") or {}).get("type")) == "heartbeat"
    return None


# --------------------------------------------------------------------------- the store


def next_run_for_status(flow: DataFlow, record: FlowRecord, ctx: Context) -> datetime | None:
    """``status.nextRunAt`` (:func:`activedataflow.schedule.next_run_for_status`, the runner's computation too)."""
    return status_next_run(
        flow.spec, record.next_run_at, ctx.clock(), heartbeat_schedule=ctx.config.runner.heartbeat_schedule
    )


# --------------------------------------------------------------------------- workloads


STORE_REF = SecretKeyRef(name=STORE_SECRET, key=STORE_SECRET_KEY)  # where every runner pod reads ADF_STORE_URL


def ensure_store_secret(ctx: Context, cronjob: Mapping[str, Any]) -> None:
    """The namespace's ``STORE_SECRET`` holds the store URL and counts ``cronjob`` among its owners.

    One Secret per namespace, shared by all its CronJobs: the chart grants ``get``/``patch`` on this
    name alone. Read-modify-write under the resourceVersion precondition, so concurrent reconciles of
    flows of one namespace keep each other's owners; owners deleted since are dropped by the garbage
    collector. A Secret of that name the operator did not make is never overwritten (retried, with
    the reason on the flow, until it is renamed or deleted). The operator's own writes of a namespace's
    Secret are serialised and remembered (``Context.known_secret``), so an unchanged Secret costs no
    request and a new owner one patch, not a GET and a race per flow."""
    meta = cronjob["metadata"]
    namespace = meta["namespace"]
    with ctx.secret_lock(namespace):
        _ensure_store_secret(ctx, namespace, meta["uid"], cronjob)


def _ensure_store_secret(ctx: Context, namespace: str, uid: str, cronjob: Mapping[str, Any]) -> None:
    """Under the namespace's lock: the remembered Secret spares the GET (and, when it is already right,
    every request); a write that finds it changed or gone reads it again."""
    desired = build_store_secret(namespace, url=ctx.config.store_url, owners=[cronjob])
    for _ in range(CONFLICT_RETRIES):
        current = ctx.known_secret(namespace) or ctx.kube.get(SECRET, namespace, STORE_SECRET)
        if current is None:
            try:
                ctx.remember_secret(namespace, ctx.kube.create(SECRET, namespace, desired))
                return
            except AlreadyExists:
                continue
        labels = current["metadata"].get("labels") or {}
        if any(labels.get(k) != v for k, v in MANAGED_BY.items()):
            ctx.remember_secret(namespace, None)
            raise KubeError(409, f"Secret {namespace}/{STORE_SECRET} exists and was not made by ActiveDataFlow "
                                 f"(no label app.kubernetes.io/managed-by=activedataflow); the operator keeps the "
                                 f"store URL for runner pods under that name: rename or delete that Secret")
        owners = list(current["metadata"].get("ownerReferences") or [])
        if (current.get("data") or {}) == desired["data"] and uid in {o.get("uid") for o in owners}:
            ctx.remember_secret(namespace, current)
            return
        owners = [o for o in owners if o.get("uid") != uid] + desired["metadata"]["ownerReferences"]
        patch = {
            "metadata": {"resourceVersion": current["metadata"]["resourceVersion"], "ownerReferences": owners},
            "data": desired["data"],
        }
        try:
            written = ctx.kube.patch(SECRET, namespace, STORE_SECRET, patch)
        except Conflict:
            written = None  # changed since (the garbage collector dropped an owner): read again
        ctx.remember_secret(namespace, written)
        if written is not None:
            return
    raise Conflict(409, f"Secret {namespace}/{STORE_SECRET} kept changing; will retry")


def _apply_cronjob(
    ctx: Context, desired: dict[str, Any], current: Mapping[str, Any] | None
) -> tuple[dict[str, Any], str]:
    """Create or patch; returns the live CronJob and what happened ('' / 'created' / 'updated')."""
    if current is not None:
        live_hash = (current["metadata"].get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
        if live_hash == desired["metadata"]["annotations"][SPEC_HASH_ANNOTATION]:
            return dict(current), ""
    live = ctx.kube.apply(CRONJOB, desired["metadata"]["namespace"], desired)
    return live, "created" if current is None else "updated"


def ensure_flow_cronjob(
    ctx: Context, flow: DataFlow, obj: Mapping[str, Any], *, created: bool = False
) -> tuple[dict[str, Any], str]:
    """``created``: the DataFlow is new, so its CronJob is applied without a look first (the apply is
    idempotent; made before a restart, it is applied again unchanged and reported as created)."""
    name = cronjob_name(flow.name)
    desired = build_flow_cronjob(flow, owner=obj, runner=ctx.config.runner, store=STORE_REF)
    if created:
        live, change = ctx.kube.apply(CRONJOB, flow.namespace, desired), "created"
    else:
        live, change = _apply_cronjob(ctx, desired, ctx.kube.get(CRONJOB, flow.namespace, name))
    ensure_store_secret(ctx, live)
    return live, change


def _heartbeat_flows(ctx: Context, namespace: str, exclude_uid: str | None) -> list[tuple[DataFlow, dict[str, Any]]]:
    out: list[tuple[DataFlow, dict[str, Any]]] = []
    for item in ctx.kube.list(DATAFLOW, namespace):
        meta = item["metadata"]
        if meta.get("deletionTimestamp") or meta.get("uid") == exclude_uid or not _is_heartbeat(item):
            continue
        try:
            out.append((parse_dataflow(item), item))
        except ConfigError:
            continue  # an invalid flow is reported on itself and runs nowhere
    return out


def sync_heartbeat(
    ctx: Context, namespace: str, *, exclude_uid: str | None = None
) -> tuple[dict[str, Any] | None, str]:
    """Make the namespace's ``adf-heartbeat`` CronJob match its heartbeat flows (env union,
    owners), or delete it when there are none. Concurrent reconciles of different
    flows are serialised by the resourceVersion precondition."""
    for _ in range(CONFLICT_RETRIES):
        current = ctx.kube.get(CRONJOB, namespace, HEARTBEAT_CRONJOB)
        flows = _heartbeat_flows(ctx, namespace, exclude_uid)
        if not flows:
            if current is not None:
                ctx.kube.delete(CRONJOB, namespace, HEARTBEAT_CRONJOB)
                return None, "deleted"
            return None, ""
        desired = build_heartbeat_cronjob(namespace, flows, runner=ctx.config.runner, store=STORE_REF)
        try:
            if current is None:
                live, change = ctx.kube.create(CRONJOB, namespace, desired), "created"
            else:
                desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                live, change = _apply_cronjob(ctx, desired, current)
        except (AlreadyExists, Conflict):
            continue  # another flow's reconcile wrote first; recompute from the new state
        ensure_store_secret(ctx, live)
        return live, change
    raise Conflict(409, f"CronJob {namespace}/{HEARTBEAT_CRONJOB} kept changing; will retry")


def _drop_flow_from_heartbeat(ctx: Context, flow: DataFlow, uid: str) -> None:
    """A flow switched to runtime.type cronjob: take it out of the shared heartbeat CronJob."""
    current = ctx.kube.get(CRONJOB, flow.namespace, HEARTBEAT_CRONJOB)
    if current is not None and uid in {o.get("uid") for o in current["metadata"].get("ownerReferences") or []}:
        sync_heartbeat(ctx, flow.namespace)


# --------------------------------------------------------------------------- handlers


def reconcile_flow(
    body: Mapping[str, Any],
    *,
    status: MutableMapping[str, Any],
    ctx: Context,
    retry: int = 0,
    resync: bool = False,
    was_heartbeat: bool | None = None,
    created: bool = False,
) -> None:
    """Create / update / resume: validate, store the flow record, keep its CronJob, report status.

    ``resync``: the periodic pass that repairs drift (a CronJob deleted by hand) and
    refreshes ``nextRunAt``; it repeats no Event for an unchanged invalid spec.
    ``created``: a create event (its CronJob is applied without a GET first).
    ``was_heartbeat``: whether the flow ran in the shared heartbeat CronJob before this
    change (False on create); None when unknown (resume, resync), which costs a look.
    """
    obj = plain(body)
    with _only_changes(obj, status) as out:
        _reconcile(obj, out, ctx, retry=retry, resync=resync, was_heartbeat=was_heartbeat, created=created)


@contextmanager
def _only_changes(obj: Mapping[str, Any], status: MutableMapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Collect the status fields a pass computes; only those that differ from the body's status go into
    ``status`` (also when the pass raises). An unchanged flow then costs kopf no status patch: a restart
    or a resync of an idle operator writes nothing."""
    current = obj.get("status") or {}
    out: dict[str, Any] = {}
    try:
        yield out
    finally:
        status.update({key: value for key, value in out.items() if current.get(key) != value})


def _reconcile(
    obj: dict[str, Any],
    status: MutableMapping[str, Any],
    ctx: Context,
    *,
    retry: int,
    resync: bool,
    was_heartbeat: bool | None,
    created: bool,
) -> None:
    meta = obj["metadata"]
    try:
        flow = _parse(obj)
    except ConfigError as err:
        _not_ready(obj, status, ctx, st.INVALID_SPEC, str(err), always_event=not resync)
        raise kopf.PermanentError(f"invalid DataFlow: {err}") from None

    with _reported(obj, status, ctx, retry):
        record = register_flow(ctx.store(), flow, now=ctx.clock())
        if flow.spec.runtime.type == "heartbeat":
            if not created:  # a new flow never had a CronJob of its own
                ctx.kube.delete(CRONJOB, flow.namespace, cronjob_name(flow.name))  # if it switched from cronjob
            live, change = sync_heartbeat(ctx, flow.namespace)
            runs_in = f"the shared CronJob {HEARTBEAT_CRONJOB} ('{ctx.config.runner.heartbeat_schedule}')"
        else:
            live, change = ensure_flow_cronjob(ctx, flow, obj, created=created)
            if was_heartbeat is not False and not _reconciled_at_this_generation(obj):
                _drop_flow_from_heartbeat(ctx, flow, meta["uid"])
            zone = f" {flow.spec.timeZone}" if flow.spec.timeZone else ""
            runs_in = f"CronJob {cronjob_name(flow.name)} ('{cron_schedule(flow)}'{zone})"

    if flow.spec.suspend:
        reason, message = st.SUSPENDED, f"suspended; {runs_in} does not start runs"
    else:
        reason, message = st.RECONCILED, f"flow record stored; runs by {runs_in}"
    _ready(obj, status, ctx, True, reason, message)
    status["nextRunAt"] = rfc3339(next_run_for_status(flow, record, ctx))
    if change and live is not None:
        what = "Created" if change == "created" else "Updated"
        message = f"{what.lower()} CronJob {live['metadata']['name']}"
        ctx.kube.post_event(obj, type="Normal", reason=what, message=message)


def handle_run_now(
    body: Mapping[str, Any], *, status: MutableMapping[str, Any], ctx: Context, retry: int = 0
) -> str | None:
    """``activedataflow.io/run-now`` differs from ``status.lastHandledRunNow``: create a Job from the
    CronJob's template at once and acknowledge the value. Returns the Job name (None: nothing to do)."""
    obj = plain(body)
    meta = obj["metadata"]
    value = (meta.get("annotations") or {}).get(RUN_NOW_ANNOTATION)
    if not value or value == (obj.get("status") or {}).get("lastHandledRunNow"):
        return None
    try:
        flow = _parse(obj)
    except ConfigError as err:
        ctx.kube.post_event(obj, type="Warning", reason="RunNowRefused", message=f"invalid DataFlow: {err}")
        status["lastHandledRunNow"] = value
        raise kopf.PermanentError(f"run-now {value} refused: invalid DataFlow: {err}") from None
    if flow.spec.suspend:
        ctx.kube.post_event(obj, type="Warning", reason="RunNowRefused", message="the flow is suspended")
        status["lastHandledRunNow"] = value
        return None
    cj_name = HEARTBEAT_CRONJOB if flow.spec.runtime.type == "heartbeat" else cronjob_name(flow.name)
    with _reported(obj, status, ctx, retry):
        cron = ctx.kube.get(CRONJOB, flow.namespace, cj_name)
        if cron is None:
            raise kopf.TemporaryError(f"run-now {value}: CronJob {cj_name} does not exist yet", delay=backoff(retry))
        job = build_manual_job(cron, owner=obj, flow_name=flow.name, namespace=flow.namespace, value=value)
        try:
            ctx.kube.create(JOB, flow.namespace, job)
            ctx.kube.post_event(
                obj, type="Normal", reason="RunRequested", message=f"created Job {job['metadata']['name']} (run-now)"
            )
        except AlreadyExists:
            pass  # made before a restart: the same value runs once
    status["lastHandledRunNow"] = value
    return str(job["metadata"]["name"])


def finalize_flow(body: Mapping[str, Any], *, ctx: Context, retry: int = 0) -> None:
    """Deletion (the finalizer): disable the flow record, keeping its run history. The flow's own
    CronJob goes with its owner (garbage collection); the shared heartbeat CronJob is re-synced."""
    obj = plain(body)
    meta = obj["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    try:
        ctx.store().set_enabled(name, namespace, False)
    except UnknownFlow:
        pass  # never stored (it was invalid): nothing to disable
    except StoreUnavailable as err:
        message = f"{redact(str(err))}; the DataFlow is deleted once its flow record can be disabled"
        raise kopf.TemporaryError(message, delay=backoff(retry)) from None
    if _is_heartbeat(obj):
        try:
            sync_heartbeat(ctx, namespace, exclude_uid=meta.get("uid"))
        except (KubeError, OSError) as err:
            raise kopf.TemporaryError(f"Kubernetes API: {redact(str(err))}", delay=backoff(retry)) from None
    ctx.kube.post_event(obj, type="Normal", reason="Disabled", message="flow record disabled; run history kept")
