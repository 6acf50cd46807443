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
import re
from pathlib import Path

from ..errors import ConfigError
from ..model import Connection, SecretKeyRef

__all__ = ["resolve_url", "secret_env_name"]

log = logging.getLogger("activedataflow.connections")

K8S_TIMEOUT_SECONDS = 10


def secret_env_name(name: str, key: str) -> str:
    """The environment variable that carries key ``key`` of Secret ``name``.

    ``ADF_SECRET_`` + ``NAME_KEY`` upper-cased, every character other than a
    letter or digit replaced by ``_``: ``shop-db``/``url`` -> ``ADF_SECRET_SHOP_DB_URL``.
    """
    return "ADF_SECRET_" + re.sub(r"[^A-Z0-9]", "_", f"{name}_{key}".upper())


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


def _kube_api_client() -> object | None:
    """An ApiClient from the in-cluster service account or a kubeconfig; None when neither exists."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=cfg)
            return client.ApiClient(cfg)
        except ConfigException:
            pass
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if not any(Path(p).is_file() for p in kubeconfig.split(os.pathsep) if p):
        return None
    try:
        # the path explicitly: the library reads KUBECONFIG once, at import
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg, persist_config=False)
    except (ConfigException, OSError, ValueError, TypeError) as err:
        log.debug("kubeconfig unusable: %s", err)
        return None
    return client.ApiClient(cfg)


def _read_secret(ref: SecretKeyRef, *, namespace: str, field: str, env: str) -> str:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    what = f"secret {ref.name} key {ref.key}"
    api_client = _kube_api_client()
    if api_client is None:
        raise ConfigError(
            f"{what} not found (set {env}, or run where a Kubernetes configuration "
            f"can read Secrets in namespace {namespace})",
            field=field,
        )
    with api_client as api:  # type: ignore[attr-defined]
        try:
            secret = client.CoreV1Api(api).read_namespaced_secret(
                ref.name, namespace, _request_timeout=K8S_TIMEOUT_SECONDS
            )
        except ApiException as err:
            if err.status == 404:
                raise ConfigError(f"secret {ref.name} not found in namespace {namespace} (or set {env})",
                                  field=field) from None
            if err.status in (401, 403):
                raise ConfigError(
                    f"not allowed to read secret {ref.name} in namespace {namespace} "
                    f"(HTTP {err.status}; grant 'get' on secrets, or set {env})",
                    field=field,
                ) from None
            raise ConfigError(f"cannot read secret {ref.name} in namespace {namespace}: HTTP {err.status} "
                              f"{err.reason}", field=field) from None
        except (HTTPError, OSError) as err:
            host = getattr(api.configuration, "host", "the Kubernetes API")  # type: ignore[attr-defined]
            raise ConfigError(f"cannot read secret {ref.name}: Kubernetes API at {host} unreachable "
                              f"({type(err).__name__}; or set {env})", field=field) from None
    data = secret.data or {}
    if ref.key in data:
        try:
            value = base64.b64decode(data[ref.key], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ConfigError(f"{what} in namespace {namespace} is not UTF-8 text", field=field) from None
    elif ref.key in (secret.string_data or {}):
        value = secret.string_data[ref.key]
    else:
        keys = ", ".join(sorted(data)) or "none"
        raise ConfigError(f"secret {ref.name} in namespace {namespace} has no key {ref.key}; keys: {keys}",
                          field=field)
    if not value:
        raise ConfigError(f"{what} in namespace {namespace} is empty", field=field)
    return value
