"""Where a source or sink connects: ``connection: {url: ...}`` or ``connection: {secretRef: {name, key}}``.

A ``secretRef`` resolves, in order:

1. the environment variable :func:`secret_env_name` (``ADF_SECRET_<NAME>_<KEY>``).
   The operator's CronJob maps the Secret into the Job's environment under this
   name with ``secretKeyRef``, so in the cluster the kubelet resolves it and the
   runner needs no permission to read Secrets;
2. the Secret itself through the Kubernetes API, when a configuration is
   available (in-cluster service account, or ``KUBECONFIG`` / ``~/.kube/config``);
3. otherwise a :class:`~activedataflow.errors.ConfigError` naming the field and
   the variable to set.

The resolved URL is returned to the caller and never logged or put into a message.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os

from ..errors import ConfigError
from ..kube.names import secret_env_name
from ..model import Connection, SecretKeyRef

__all__ = ["resolve_url", "secret_env_name"]

log = logging.getLogger("activedataflow.connections")

K8S_TIMEOUT_SECONDS = 10


def resolve_url(conn: Connection, *, namespace: str, field: str) -> str:
    """The connection URL of ``conn`` (a ``url`` as is, or the value a ``secretRef`` points to).

    ``field`` is the manifest path of the connection (``spec.source.connection``)
    and ``namespace`` the DataFlow's namespace (where the Secret lives).
    """
    if conn.url is not None:
        return conn.url
    ref = conn.secretRef
    assert ref is not None  # the model guarantees exactly one of url / secretRef
    env = secret_env_name(ref.name, ref.key)
    value = os.environ.get(env)
    if value:
        return value
    return _read_secret(ref, namespace=namespace, field=f"{field}.secretRef", env=env)


def _read_secret(ref: SecretKeyRef, *, namespace: str, field: str, env: str) -> str:
    from urllib3.exceptions import HTTPError

    from ..errors import UserError
    from ..kube.client import SECRET, KubeError, RestKube, load_transport

    what = f"secret {ref.name} key {ref.key}"
    try:  # the pod's service account (without importing the kubernetes client), else a kubeconfig
        kube = RestKube(load_transport(retries=1), timeout=K8S_TIMEOUT_SECONDS)
    except UserError as err:
        log.debug("no usable Kubernetes configuration: %s", err)
        raise ConfigError(
            f"{what} not found (set {env}, or run where a Kubernetes configuration "
            f"can read Secrets in namespace {namespace})",
            field=field,
        ) from None
    try:
        secret = kube.get(SECRET, namespace, ref.name)
    except KubeError as err:
        if err.status in (401, 403):
            raise ConfigError(
                f"not allowed to read secret {ref.name} in namespace {namespace} "
                f"(HTTP {err.status}; grant 'get' on secrets, or set {env})",
                field=field,
            ) from None
        raise ConfigError(f"cannot read secret {ref.name} in namespace {namespace}: HTTP {err.status} {err}",
                          field=field) from None
    except (HTTPError, OSError) as err:
        raise ConfigError(f"cannot read secret {ref.name}: Kubernetes API at {kube.server} unreachable "
                          f"({type(err).__name__}; or set {env})", field=field) from None
    finally:
        kube.transport.close()
    if secret is None:
        raise ConfigError(f"secret {ref.name} not found in namespace {namespace} (or set {env})", field=field)
    data = secret.get("data") or {}
    if ref.key in data:
        try:
            value = base64.b64decode(data[ref.key], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ConfigError(f"{what} in namespace {namespace} is not UTF-8 text", field=field) from None
    else:
        keys = ", ".join(sorted(data)) or "none"
        raise ConfigError(f"secret {ref.name} in namespace {namespace} has no key {ref.key}; keys: {keys}",
                          field=field)
    if not value:
        raise ConfigError(f"{what} in namespace {namespace} is empty", field=field)
    return value
