"""A small, typed door to the Kubernetes API: plain dicts in and out.

The operator's reconciliation and the runner's reflection talk to Kubernetes
only through :class:`KubeApi` (a Protocol), so they are plain functions that a
unit test can drive with an in-memory implementation. :class:`RestKube` is the
real one, on top of the official ``kubernetes`` client's ``ApiClient`` (auth,
TLS, kubeconfig), speaking JSON to the REST paths of the few kinds used here.

Nothing here imports kopf: the runner uses it too.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ..errors import UserError, redact
from ..model import API_GROUP, API_VERSION

__all__ = [
    "CRONJOB",
    "DATAFLOW",
    "DATAFLOWRUN",
    "EVENT",
    "JOB",
    "SECRET",
    "AlreadyExists",
    "Conflict",
    "Kind",
    "KubeApi",
    "KubeError",
    "RestKube",
    "load_api_client",
    "owner_reference",
    "rfc3339",
]

log = logging.getLogger("activedataflow.kube")

FIELD_MANAGER = "activedataflow"


@dataclass(frozen=True)
class Kind:
    """One namespaced resource kind: where it lives in the REST API."""

    api_version: str
    kind: str
    plural: str

    def collection(self, namespace: str) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        return f"{base}/namespaces/{namespace}/{self.plural}"


CRONJOB = Kind("batch/v1", "CronJob", "cronjobs")
JOB = Kind("batch/v1", "Job", "jobs")
SECRET = Kind("v1", "Secret", "secrets")
EVENT = Kind("v1", "Event", "events")
DATAFLOW = Kind(f"{API_GROUP}/{API_VERSION}", "DataFlow", "dataflows")
DATAFLOWRUN = Kind(f"{API_GROUP}/{API_VERSION}", "DataFlowRun", "dataflowruns")


class KubeError(Exception):
    """The API server refused a request (status code and its message, redacted)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(redact(message))


class AlreadyExists(KubeError):
    """409 on create: an object of that name is already there."""


class Conflict(KubeError):
    """409 on update: the resourceVersion precondition failed."""


class KubeApi(Protocol):
    """What reconciliation and reflection need from the API server."""

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None if it does not exist."""

    def list(self, kind: Kind, namespace: str, *, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Objects of the namespace matching all ``labels``."""

    def create(self, kind: Kind, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST; raises AlreadyExists."""

    def apply(self, kind: Kind, namespace: str, body: Mapping[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply (create or update the fields this manager owns). A
        ``metadata.resourceVersion`` in ``body`` is a precondition (Conflict)."""

    def patch(
        self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any], *, status: bool = False
    ) -> dict[str, Any] | None:
        """JSON merge patch of the object (or its status subresource); None if it does not exist.
        A ``metadata.resourceVersion`` in ``patch`` is a precondition (Conflict)."""

    def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        """Delete (background propagation); False if it did not exist."""

    def post_event(self, obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        """Record a Kubernetes Event about ``obj`` (message redacted)."""


def owner_reference(obj: Mapping[str, Any], *, controller: bool = True) -> dict[str, Any]:
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def rfc3339(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_body(obj: Mapping[str, Any], *, type: str, reason: str, message: str, now: datetime) -> dict[str, Any]:
    """A core/v1 Event about ``obj`` (also what the in-memory test API stores)."""
    meta = obj["metadata"]
    stamp = rfc3339(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type,
        "reason": reason,
        "message": redact(message)[:1024],
        "source": {"component": "activedataflow-operator"},
        "reportingComponent": "activedataflow.io/operator",
        "reportingInstance": os.environ.get("HOSTNAME", "activedataflow-operator"),
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


# --------------------------------------------------------------------------- the real one


def load_api_client(*, retries: int | None = None) -> Any:
    """A ``kubernetes.client.ApiClient`` from the in-cluster service account, else ``KUBECONFIG`` /
    ``~/.kube/config``. Raises UserError when there is no configuration at all.

    ``retries`` bounds urllib3's connection retries (its default is 3)."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    cfg.retries = retries
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=cfg)
            return client.ApiClient(cfg)
        except ConfigException as err:
            log.debug("in-cluster configuration unusable: %s", err)
    path = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if not any(Path(p).is_file() for p in path.split(os.pathsep) if p):
        raise UserError(f"no Kubernetes configuration: not in a cluster and no kubeconfig at {path}")
    try:
        config.load_kube_config(config_file=path, client_configuration=cfg, persist_config=False)
    except (ConfigException, OSError, ValueError, TypeError) as err:
        raise UserError(f"kubeconfig {path} is unusable: {redact(str(err))}") from None
    return client.ApiClient(cfg)


class RestKube:
    """:class:`KubeApi` over the REST API with the official client's ``ApiClient``.

    ``timeout`` bounds every request (seconds), so a hung API server never
    stalls a run or a reconciliation for long.
    """

    def __init__(self, api_client: Any, *, timeout: float = 15.0) -> None:
        self.api = api_client
        self.timeout = timeout

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    # ----------------------------------------------------------------- transport
    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any] | None:
        """One request; the decoded JSON answer, None on 404, KubeError otherwise.

        Connection problems (no server at the address) raise ``OSError`` subclasses
        or urllib3's errors; callers decide what that means.
        """
        headers = {"Accept": "application/json", "Content-Type": content_type}
        req = self.api.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        resp = self.api.call_api(*req, _request_timeout=self.timeout)
        data = resp.read()
        if resp.status == 404:
            return None
        if not 200 <= resp.status < 300:
            raise _error(resp.status, data)
        return json.loads(data) if data else {}

    # ----------------------------------------------------------------- KubeApi
    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        return self.request("GET", f"{kind.collection(namespace)}/{name}")

    def list(self, kind: Kind, namespace: str, *, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        query = [("labelSelector", ",".join(f"{k}={v}" for k, v in labels.items()))] if labels else []
        answer = self.request("GET", kind.collection(namespace), query=query) or {}
        items = answer.get("items") or []
        for item in items:  # lists omit these on items
            item.setdefault("apiVersion", kind.api_version)
            item.setdefault("kind", kind.kind)
        return items

    def create(self, kind: Kind, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        out = self.request("POST", kind.collection(namespace), body=dict(body))
        if out is None:
            raise KubeError(404, f"namespace {namespace} not found")
        return out

    def apply(self, kind: Kind, namespace: str, body: Mapping[str, Any], *, force: bool = True) -> dict[str, Any]:
        name = body["metadata"]["name"]
        query = [("fieldManager", FIELD_MANAGER), ("force", "true" if force else "false")]
        out = self.request(
            "PATCH",
            f"{kind.collection(namespace)}/{name}",
            body=dict(body),
            query=query,
            content_type="application/apply-patch+yaml",
        )
        if out is None:
            raise KubeError(404, f"namespace {namespace} not found")
        return out

    def patch(
        self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any], *, status: bool = False
    ) -> dict[str, Any] | None:
        path = f"{kind.collection(namespace)}/{name}" + ("/status" if status else "")
        return self.request("PATCH", path, body=dict(patch), content_type="application/merge-patch+json")

    def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        return self.request("DELETE", f"{kind.collection(namespace)}/{name}", body=body) is not None

    def post_event(self, obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        namespace = obj["metadata"].get("namespace") or "default"
        body = event_body(obj, type=type, reason=reason, message=message, now=datetime.now(UTC))
        try:
            self.create(EVENT, namespace, body)
        except KubeError as err:  # an event is informative; never fail the caller for it
            log.warning("could not post event %s about %s: %s", reason, obj["metadata"]["name"], err)


def _error(status: int, data: bytes | None) -> KubeError:
    try:
        payload = json.loads(data or b"{}")
    except ValueError:
        payload = {}
    message = payload.get("message") or (data or b"").decode("utf-8", "replace")[:500] or f"HTTP {status}"
    if status == 409:
        return AlreadyExists(status, message) if payload.get("reason") == "AlreadyExists" else Conflict(status, message)
    return KubeError(status, message)
