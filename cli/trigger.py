"""``adf trigger NAME``: ask the cluster for a run now, with the kubeconfig's credentials.

The patch itself (the run-now annotation) is :func:`activedataflow.kube.actions.request_run_now`,
which the monitoring page sends too.
"""

from __future__ import annotations

from ..errors import UnknownFlow, UserError
from ..kube.actions import request_run_now, unreachable
from ..kube.client import KubeError, RestKube, load_transport

__all__ = ["trigger_run"]


def trigger_run(name: str, namespace: str) -> str:
    """Set ``activedataflow.io/run-now`` on DataFlow ``namespace/name`` to the current unix time; returns it.

    UnknownFlow if there is no such DataFlow; UserError naming the server if the
    cluster cannot be reached (or there is no kubeconfig at all).
    """
    import urllib3

    kube = RestKube(load_transport(retries=1), timeout=10)
    try:
        found = request_run_now(kube, namespace, name)
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise unreachable(kube.server, err) from None
    except KubeError as err:
        raise UserError(f"the Kubernetes API server at {kube.server} refused: {err}") from None
    finally:
        kube.close()
    if found is None:
        raise UnknownFlow(f"DataFlow {namespace}/{name} not found in the cluster at {kube.server}")
    return found[0]
