"""kopf's credentials: the Pod's service account, read the way our own client reads it, else the kubeconfig."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from ..kube.client import ServiceAccountTransport


def service_account_login(env: Mapping[str, str] | None = None) -> kopf.ConnectionInfo | None:
    """The Pod's API server (``KUBERNETES_SERVICE_HOST``/``_PORT``, the address our transport uses, not a DNS
    name) with the service-account token and CA, read as our own transport reads them; None outside a Pod
    or without them. kopf logs in again on a 401, so a rotated token is read then."""
    pod = ServiceAccountTransport.from_env(env)
    if pod is None:
        return None
    pod.close()  # only its reading of the token and the CA is wanted: kopf connects with aiohttp
    ns_file = pod.root / "namespace"
    namespace = ns_file.read_text().strip() if ns_file.is_file() else ""
    return kopf.ConnectionInfo(server=pod.server, ca_path=str(pod.ca_file), token=pod.token(),
                               default_namespace=namespace or None)


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The service account in a Pod (no ``kubernetes`` import); else the kubeconfig through the official client."""
    return service_account_login() or kopf.login_via_client(**kwargs)
