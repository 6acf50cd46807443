"""What a person asks of a DataFlow: run it now, suspend it, resume it.

``adf trigger`` and the monitoring page send these same patches, each with whatever
credentials its :class:`~activedataflow.kube.client.KubeApi` holds (the caller's own:
RBAC decides, as it does for ``kubectl annotate`` and ``kubectl patch``).

* run now: the ``activedataflow.io/run-now`` annotation set to the current unix time.
  The operator sees the new value, creates a Job from the flow's CronJob template and
  acknowledges it in ``status.lastHandledRunNow``, so one value runs once; the value is
  a DNS label, so the run is named ``<flow>-manual-<value>``
  (:func:`~activedataflow.kube.names.manual_run_name`). A suspended flow's run-now is
  acknowledged and refused by the operator.
* suspend / resume: ``spec.suspend`` true / false (the operator reconciles the flow record).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..errors import UserError, redact
from .client import DATAFLOW, KubeApi, RestKube
from .names import RUN_NOW_ANNOTATION

__all__ = ["request_run_now", "set_suspend", "unreachable", "whoami"]


def request_run_now(
    kube: KubeApi, namespace: str, name: str, *, clock: Callable[[], float] = time.time
) -> tuple[str, dict[str, Any]] | None:
    """Set the run-now annotation of DataFlow ``namespace/name`` to the current unix time.

    Returns (the value, the patched DataFlow), or None if there is no such DataFlow.
    KubeError when the API server refuses (403: RBAC).
    """
    value = str(int(clock()))
    found = kube.patch(DATAFLOW, namespace, name, {"metadata": {"annotations": {RUN_NOW_ANNOTATION: value}}})
    return None if found is None else (value, found)


def set_suspend(kube: KubeApi, namespace: str, name: str, suspend: bool) -> dict[str, Any] | None:
    """Patch ``spec.suspend`` of DataFlow ``namespace/name``; the patched DataFlow, None if there is none."""
    return kube.patch(DATAFLOW, namespace, name, {"spec": {"suspend": suspend}})


def whoami(kube: RestKube) -> str:
    """The user ``kube``'s credentials authenticate as (a SelfSubjectReview, what ``kubectl auth whoami``
    sends; every authenticated user may). KubeError 401 when the API server does not accept them."""
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    answer = kube.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=review) or {}
    return str(((answer.get("status") or {}).get("userInfo") or {}).get("username") or "?")


def unreachable(server: str, err: BaseException) -> UserError:
    """The error for a connection problem (``OSError`` or urllib3's errors) with the API server at ``server``."""
    reason = getattr(err, "reason", None) or err
    return UserError(f"cannot reach the Kubernetes API server at {server}: {redact(str(reason))}")
