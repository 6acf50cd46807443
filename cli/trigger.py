"""``adf trigger NAME``: ask the cluster for a run now, by setting the run-now annotation.

The operator sees the new value, creates a Job from the flow's CronJob template
and acknowledges the value in ``status.lastHandledRunNow``, so one value runs once.
The value (unix seconds) is a DNS label, so the run is named ``<flow>-manual-<value>``
as it is (:func:`~activedataflow.kube.names.manual_run_name`).
"""

from __future__ import annotations

import time

from ..errors import UnknownFlow, UserError, redact
from ..kube.client import DATAFLOW, KubeError, RestKube, load_transport
from ..kube.names import RUN_NOW_ANNOTATION

__all__ = ["trigger_run"]


def trigger_run(name: str, namespace: str) -> str:
    """Set ``activedataflow.io/run-now`` on DataFlow ``namespace/name`` to the current unix time; returns it.

    UnknownFlow if there is no such DataFlow; UserError naming the server if the
    cluster cannot be reached (or there is no kubeconfig at all).
    """
    import urllib3

    kube = RestKube(load_transport(retries=1), timeout=10)
    value = str(int(time.time()))
    patch = {"metadata": {"annotations": {RUN_NOW_ANNOTATION: value}}}
    try:
        found = kube.patch(DATAFLOW, namespace, name, patch)
    except (urllib3.exceptions.HTTPError, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise UserError(f"cannot reach the Kubernetes API server at {kube.server}: {redact(str(reason))}") from None
    except KubeError as err:
        raise UserError(f"the Kubernetes API server at {kube.server} refused: {err}") from None
    if found is None:
        raise UnknownFlow(f"DataFlow {namespace}/{name} not found in the cluster at {kube.server}")
    return value
