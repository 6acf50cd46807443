"""The names the operator and the runner agree on: labels, annotations, Secret variables, run names.

Both sides derive the same name from the same facts, so a restarted operator or a
second runner finds what the first one made. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime

__all__ = [
    "CRONJOB_NAME_LIMIT",
    "FLOW_LABEL",
    "HEARTBEAT_LABEL",
    "INSTANTIATE_ANNOTATION",
    "JOB_NAME_ENV",
    "JOB_NAME_LABEL",
    "MANAGED_BY",
    "RUN_NAME_LIMIT",
    "RUN_NOW_ANNOTATION",
    "SPEC_HASH_ANNOTATION",
    "STORE_SECRET",
    "STORE_SECRET_KEY",
    "attempt_name",
    "bounded_name",
    "cronjob_name",
    "labels",
    "manual_run_name",
    "run_name_for",
    "secret_env_name",
    "short_hash",
    "tick_of_job",
]

MANAGED_BY = {"app.kubernetes.io/managed-by": "activedataflow"}
FLOW_LABEL = "activedataflow.io/flow"
HEARTBEAT_LABEL = "activedataflow.io/heartbeat"
RUN_NOW_ANNOTATION = "activedataflow.io/run-now"
SPEC_HASH_ANNOTATION = "activedataflow.io/spec-hash"
INSTANTIATE_ANNOTATION = "cronjob.kubernetes.io/instantiate"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # the Job controller's label on the Pods of a Job
JOB_NAME_ENV = "ADF_JOB_NAME"  # the runner's Job, from that label by the downward API
CRONJOB_NAME_LIMIT = 52  # the CronJob controller appends "-<unix minutes>" to name its Jobs (63 at most)


def cronjob_name(flow_name: str) -> str:
    """The CronJob of a ``runtime.type: cronjob`` flow: ``df-<flow>``, a long name cut and a hash of it appended."""
    name = f"df-{flow_name}"
    if len(name) <= CRONJOB_NAME_LIMIT:
        return name
    return bounded_name(name, f"-{short_hash(flow_name)}", CRONJOB_NAME_LIMIT)


def tick_of_job(job_name: str, flow_name: str) -> datetime | None:
    """The tick the CronJob controller started Job ``job_name`` of flow ``flow_name``'s CronJob for
    (it names the Job ``<cronjob>-<tick in unix minutes>``), or None for any other Job (run-now)."""
    prefix = f"{cronjob_name(flow_name)}-"
    minutes = job_name[len(prefix):] if job_name.startswith(prefix) else ""
    if not (minutes.isascii() and minutes.isdigit()) or len(minutes) > 12:
        return None
    return datetime.fromtimestamp(int(minutes) * 60, UTC)

# The one Secret per flow namespace that holds the store URL for the runner pods (the operator's mirror of
# the store Secret of the release namespace; every CronJob of the namespace reads ADF_STORE_URL from it).
# A fixed name, so the chart grants the operator get/patch on this name alone (RBAC resourceNames). Not
# ending in "-store", so it never meets the chart's own <fullname>-store Secret.
STORE_SECRET = "adf-store-url"
STORE_SECRET_KEY = "url"


def labels(flow_name: str | None = None) -> dict[str, str]:
    """The labels of what is made for flow ``flow_name`` (its DataFlowRuns, CronJob, Jobs), or of a
    namespace's shared heartbeat CronJob when ``flow_name`` is None."""
    out = dict(MANAGED_BY)
    if flow_name is not None:
        out[FLOW_LABEL] = flow_name
    else:
        out[HEARTBEAT_LABEL] = "true"
    return out


def secret_env_name(name: str, key: str) -> str:
    """The environment variable that carries key ``key`` of Secret ``name``.

    ``ADF_SECRET_`` + ``NAME_KEY`` upper-cased, every character other than a
    letter or digit replaced by ``_``: ``shop-db``/``url`` -> ``ADF_SECRET_SHOP_DB_URL``.
    The operator maps the Secret into a runner's environment under this name; the runner reads it.
    """
    return "ADF_SECRET_" + re.sub(r"[^A-Z0-9]", "_", f"{name}_{key}".upper())


RUN_NAME_LIMIT = 253  # a DataFlowRun name is a DNS-1123 subdomain
_ATTEMPT_ROOM = 4  # "-101": retries.limit is at most 100
_VALUE_LIMIT = 40  # longer run-now values are hashed
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def run_name_for(flow: str, slot: datetime, attempt: int = 1, *, manual: bool = False) -> str:
    """``<flow>-<unix minutes>`` for a scheduled slot (as CronJob names its Jobs), so a second
    runner for the same slot finds the run already there. A manual run given no name (``adf run``,
    ``adf heartbeat --force`` outside a cluster) is unique instead: ``<flow>-manual-<unix seconds>-<hex>``;
    in a cluster the run-now Job names it with :func:`manual_run_name`. Retries add ``-<attempt>``."""
    if manual:
        base = f"{flow}-manual-{int(slot.timestamp())}-{uuid.uuid4().hex[:4]}"
    else:
        base = f"{flow}-{int(slot.timestamp() // 60)}"
    return attempt_name(base, attempt)


def attempt_name(base: str, attempt: int) -> str:
    """The name of attempt ``attempt`` of the run named ``base`` (the first attempt is ``base``)."""
    return base if attempt == 1 else f"{base}-{attempt}"


def manual_run_name(flow: str, value: str) -> str:
    """The name of the run a run-now annotation value asks for: ``<flow>-manual-<value>``.

    Deterministic, so a second runner for the same request (the run-now Job's Pod started
    twice) finds the run already there. A value that is not a lowercase DNS label of at most
    40 characters (``adf trigger`` and ``date +%s`` give unix seconds, which are) is replaced
    by 12 hex digits of its SHA-256. The name is a DNS-1123 subdomain short enough for the
    ``-<attempt>`` of retries; a long flow name is cut and a hash of the whole name appended.
    """
    token = value if len(value) <= _VALUE_LIMIT and _LABEL.fullmatch(value) else short_hash(value, length=12)
    name = f"{flow}-manual-{token}"
    limit = RUN_NAME_LIMIT - _ATTEMPT_ROOM
    if len(name) <= limit:
        return name
    return bounded_name(name, f"-{short_hash(name)}-manual-{token}", limit)


def short_hash(*parts: str, length: int = 8) -> str:
    """Hex digits of the SHA-256 of ``parts`` (joined by NUL): a stable stand-in for a long or odd name."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def bounded_name(base: str, suffix: str, limit: int) -> str:
    """``base + suffix`` cut to ``limit`` characters (``base`` cut, ending as a valid DNS label does)."""
    return base[: limit - len(suffix)].rstrip("-.") + suffix
