"""kopf's credentials: the Pod's service account, read the way our own client reads it, else the kubeconfig."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf

from ..kube.client import join_host_port, pod_api_server


def service_account_login(env: Mapping[str, str] | None = None) -> kopf.ConnectionInfo | None:
    """The Pod's API server (``KUBERNETES_SERVICE_HOST``/``_PORT``, the address our transport uses, not a DNS
    name) with the service-account token and CA; None outside a Pod or without a token. kopf logs in again
    on a 401, so a rotated token is read then."""
    found = pod_api_server(env)
    if found is None:
        return None
    host, port, root = found
    token_file, ca_file, ns_file = (Path(root) / name for name in ("token", "ca.crt", "namespace"))
    try:
        token = token_file.read_text().strip()
    except OSError:
        return None
    if not token:
        return None
    namespace = ns_file.read_text().strip() if ns_file.is_file() else ""
    return kopf.ConnectionInfo(
        server="https://" + join_host_port(host, port),
        ca_path=str(ca_file) if ca_file.is_file() else None,
        token=token,
        default_namespace=namespace or None,
    )


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The service account in a Pod (no ``kubernetes`` import); else the kubeconfig through the official client."""
    return service_account_login() or kopf.login_via_client(**kwargs)
