"""A small, typed door to the Kubernetes API: plain dicts in and out.

The operator's reconciliation and the runner's reflection talk to Kubernetes
only through :class:`KubeApi` (a Protocol), so they are plain functions that a
unit test can drive with an in-memory implementation. :class:`RestKube` is the
real one, speaking JSON to the REST paths of the few kinds used here over a
:class:`Transport` that :func:`load_transport` picks:

* in a pod (``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` set, the
  service-account ``token`` and ``ca.crt`` present): :class:`ServiceAccountTransport`,
  plain urllib3, so a runner pod never imports the ``kubernetes`` package (+11 MB,
  hundreds of generated modules). ``ADF_SERVICEACCOUNT_DIR`` points it at another
  directory than ``/var/run/secrets/kubernetes.io/serviceaccount`` (tests);
* elsewhere: :class:`ApiClientTransport`, the official client's ``ApiClient`` from
  ``KUBECONFIG`` / ``~/.kube/config`` (auth plugins, client certificates).

A server that acts for other people (the monitoring page in the operator Pod) holds a
:class:`KubeEndpoint` instead: the API server's address and CA and no credentials of
its own; :meth:`KubeEndpoint.transport` sends one caller's bearer token.

Nothing here imports kopf: the runner uses it too.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

from ..errors import UserError, redact
from ..model import API_GROUP, API_VERSION

__all__ = [
    "CRONJOB",
    "DATAFLOW",
    "DATAFLOWRUN",
    "EVENT",
    "JOB",
    "LIST_PAGE",
    "SECRET",
    "AlreadyExists",
    "ApiClientTransport",
    "Conflict",
    "Kind",
    "KubeApi",
    "KubeEndpoint",
    "KubeError",
    "RestKube",
    "ServiceAccountTransport",
    "Transport",
    "join_host_port",
    "load_transport",
    "owner_reference",
    "rfc3339",
]

log = logging.getLogger("activedataflow.kube")

FIELD_MANAGER = "activedataflow"
USER_AGENT = "activedataflow"
SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
POOL_CONNECTIONS = 16  # per API server address (see _verified_pool)
LIST_PAGE = 500  # objects per LIST request (kubectl's own page size): a large namespace is never one answer
TOKEN_MAX_AGE = 60.0  # seconds; bound service-account tokens rotate, the official client re-reads each minute


@dataclass(frozen=True)
class Kind:
    """One namespaced resource kind: where it lives in the REST API."""

    api_version: str
    kind: str
    plural: str

    def collection(self, namespace: str | None) -> str:
        """The objects of ``namespace``; None: of every namespace (to list)."""
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        return f"{base}/{self.plural}" if namespace is None else f"{base}/namespaces/{namespace}/{self.plural}"


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

    def list(
        self, kind: Kind, namespace: str | None, *, labels: Mapping[str, str] | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Objects of the namespace (None: of all) matching all ``labels``; ``limit``: at most that many."""

    def pages(
        self, kind: Kind, namespace: str | None, *, labels: Mapping[str, str] | None = None, size: int = LIST_PAGE
    ) -> Iterator[builtins.list[dict[str, Any]]]:
        """The objects :meth:`list` returns, ``size`` per request: a caller that handles a page before it
        asks for the next one never holds more than a page of a large namespace."""

    def create(self, kind: Kind, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST; raises AlreadyExists."""

    def apply(self, kind: Kind, namespace: str, body: Mapping[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply (create or update the fields this manager owns). A
        ``metadata.resourceVersion`` in ``body`` is a precondition (Conflict)."""

    def patch(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        status: bool = False,
    ) -> dict[str, Any] | None:
        """JSON merge patch of the object (or its status subresource); None if it does not exist.
        A ``metadata.resourceVersion`` in ``patch`` is a precondition (Conflict)."""

    def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        """Delete (background propagation); False if it did not exist."""

    def post_event(self, obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        """Record a Kubernetes Event about ``obj`` (message redacted)."""


def owner_reference(obj: Mapping[str, Any], *, controller: bool = True, block: bool = True) -> dict[str, Any]:
    """An ownerReference to ``obj``. ``block`` (blockOwnerDeletion): a foreground deletion of the owner
    waits for this dependent; setting it needs ``update`` on the owner's ``finalizers`` where the
    OwnerReferencesPermissionEnforcement admission plugin runs."""
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": block,
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


# --------------------------------------------------------------------------- transports


class Transport(Protocol):
    """One HTTP exchange with the API server: what :class:`RestKube` stands on.

    ``path`` is the REST path (``/api/v1/...``), ``query`` its parameters (encoded
    by the transport), ``body`` a JSON-serialisable value or None. Returns the
    status code and the raw answer. Connection problems raise ``OSError``
    subclasses or urllib3's errors.
    """

    @property
    def server(self) -> str:
        """The API server's base URL (no credentials)."""

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: Any,
        timeout: float,
    ) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


def join_host_port(host: str, port: str | int) -> str:
    """``host:port``, an IPv6 address in brackets (like Go's ``net.JoinHostPort``)."""
    if (":" in host or "%" in host) and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def request_url(server: str, path: str, query: Sequence[tuple[str, str]] = ()) -> str:
    """``server`` + ``path`` with ``query`` percent-encoded."""
    url = server.rstrip("/") + "/" + path.lstrip("/")
    return f"{url}?{urlencode(list(query))}" if query else url


def pod_api_server(env: Mapping[str, str] | None = None) -> tuple[str, str, str] | None:
    """(host, port, service-account directory) of the pod's API server, None outside a pod."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    if not (host and port):
        return None
    return host, port, env.get("ADF_SERVICEACCOUNT_DIR") or SERVICEACCOUNT_DIR


def _verified_pool(ca_file: Path, *, retries: int | None) -> Any:
    """A urllib3 pool that verifies every connection against ``ca_file`` (never unverified)."""
    import urllib3

    pool_kw: dict[str, Any] = {} if retries is None else {"retries": retries}
    # maxsize: connections kept for reuse, made only when needed. The operator's handlers run in kopf's pool of
    # min(32, CPUs + 4) threads beside the resync thread; at 4, urllib3 discarded connections under load
    # ("Connection pool is full", 3,000 flows) and each next request paid a new TLS handshake on both sides.
    return urllib3.PoolManager(num_pools=2, maxsize=POOL_CONNECTIONS, cert_reqs="CERT_REQUIRED", ca_certs=str(ca_file),
                               **pool_kw)


def _bearer_request(
    pool: Any, server: str, token: str, method: str, path: str, *, query: Sequence[tuple[str, str]],
    headers: Mapping[str, str] | None, body: Any, timeout: float,
) -> tuple[int, bytes]:
    """One request to ``server`` with ``token`` as the bearer token; redirects are not followed (the
    token must never travel to another host)."""
    import urllib3

    resp = pool.request(
        method,
        request_url(server, path, query),
        body=None if body is None else json.dumps(body).encode(),
        headers={**(headers or {}), "User-Agent": USER_AGENT, "Authorization": f"Bearer {token}"},
        timeout=urllib3.Timeout(total=timeout),
        redirect=False,
    )
    return resp.status, resp.data or b""


class ServiceAccountTransport:
    """HTTPS to the API server with the pod's service account, over urllib3 alone.

    The CA is ``<root>/ca.crt`` (every connection is verified against it, never
    unverified) and the bearer token ``<root>/token``, re-read once it is older
    than ``token_max_age`` seconds: bound service-account tokens rotate and the
    kubelet rewrites the file. ``retries`` bounds urllib3's retries (its default
    is 3). The token is never logged, shown in a repr or put in an error.
    """

    def __init__(
        self,
        host: str,
        port: str | int,
        *,
        root: str | os.PathLike[str] = SERVICEACCOUNT_DIR,
        retries: int | None = None,
        token_max_age: float = TOKEN_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not host or not str(port):
            raise ValueError("KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are empty")
        self._server = "https://" + join_host_port(host, port)
        self.root = Path(root)
        self.ca_file = self.root / "ca.crt"
        self.token_file = self.root / "token"
        if not self.ca_file.is_file() or self.ca_file.stat().st_size == 0:
            raise FileNotFoundError(f"no service-account CA at {self.ca_file}")
        self.token_max_age = token_max_age
        self._clock = clock
        self._token = self._read_token()
        self._token_read_at = clock()
        self._pool = _verified_pool(self.ca_file, retries=retries)

    @property
    def server(self) -> str:
        return self._server

    def __repr__(self) -> str:
        return f"ServiceAccountTransport(server={self._server!r}, root={str(self.root)!r})"

    def _read_token(self) -> str:
        try:
            token = self.token_file.read_text().strip()
        except OSError as err:
            raise FileNotFoundError(f"no service-account token at {self.token_file} ({err.strerror})") from None
        if not token:
            raise ValueError(f"the service-account token file {self.token_file} is empty")
        return token

    def token(self) -> str:
        """The bearer token, re-read from its file once older than ``token_max_age``."""
        now = self._clock()
        if now - self._token_read_at >= self.token_max_age:
            try:
                self._token = self._read_token()
            except (OSError, ValueError) as err:  # keep the last one; the kubelet may be mid-rewrite
                log.warning("could not re-read the service-account token: %s", err)
            self._token_read_at = now
        return self._token

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float = 15.0,
    ) -> tuple[int, bytes]:
        return _bearer_request(self._pool, self._server, self.token(), method, path, query=query,
                               headers=headers, body=body, timeout=timeout)

    def close(self) -> None:
        self._pool.clear()

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, retries: int | None = None
    ) -> ServiceAccountTransport | None:
        """In a pod: the transport from ``KUBERNETES_SERVICE_HOST``/``_PORT`` and the service-account
        directory (``ADF_SERVICEACCOUNT_DIR``, else the standard mount); None when any is missing."""
        found = pod_api_server(env)
        if found is None:
            return None
        host, port, root = found
        try:
            return cls(host, port, root=root, retries=retries)
        except (OSError, ValueError) as err:
            log.debug("in-cluster configuration unusable: %s", err)
            return None


class ApiClientTransport:
    """The official client's ``kubernetes.client.ApiClient`` (kubeconfig: auth plugins, client
    certificates, proxies) as a :class:`Transport`."""

    def __init__(self, api_client: Any) -> None:
        self.api = api_client

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    def __repr__(self) -> str:
        return f"ApiClientTransport(server={self.server!r})"

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float = 15.0,
    ) -> tuple[int, bytes]:
        req = self.api.param_serialize(
            method,
            path,
            query_params=list(query),
            header_params=dict(headers or {}),
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self.api.call_api(*req, _request_timeout=timeout)
        return resp.status, resp.read() or b""

    def close(self) -> None:
        self.api.close()

    @classmethod
    def from_kubeconfig(cls, env: Mapping[str, str] | None = None, *, retries: int | None = None) -> ApiClientTransport:
        """From ``KUBECONFIG`` / ``~/.kube/config``; UserError when there is none or it is unusable."""
        env = os.environ if env is None else env
        path = env.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        if not any(Path(p).is_file() for p in path.split(os.pathsep) if p):
            raise UserError(f"no Kubernetes configuration: not in a cluster and no kubeconfig at {path}")
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        cfg = client.Configuration()
        cfg.retries = retries
        try:
            # the kubernetes package ships py.typed but leaves load_kube_config unannotated
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, client_configuration=cfg, persist_config=False)
        except (ConfigException, OSError, ValueError, TypeError) as err:
            raise UserError(f"kubeconfig {path} is unusable: {redact(str(err))}") from None
        return cls(client.ApiClient(cfg))


class KubeEndpoint:
    """The API server's address and the CA to verify it by, and no credentials at all.

    What a server needs that acts for other people with *their* credentials (the
    monitoring page in the operator Pod): :meth:`transport` makes a :class:`Transport`
    that sends one caller's bearer token, over a connection pool the endpoint shares
    between callers. There is no token to fall back on: the pod's own service-account
    token is never read.
    """

    def __init__(self, server: str, *, ca_file: str | os.PathLike[str], retries: int | None = None) -> None:
        self.server = server.rstrip("/")
        self.ca_file = Path(ca_file)
        if not self.ca_file.is_file() or self.ca_file.stat().st_size == 0:
            raise FileNotFoundError(f"no CA certificate at {self.ca_file}")
        self._pool = _verified_pool(self.ca_file, retries=retries)

    def __repr__(self) -> str:
        return f"KubeEndpoint(server={self.server!r}, ca_file={str(self.ca_file)!r})"

    def transport(self, token: str) -> Transport:
        """A transport that authenticates as the holder of ``token`` (closing it leaves the pool open)."""
        if not token:
            raise ValueError("a caller's transport needs the caller's token")
        return _CallerTransport(self, token)

    def close(self) -> None:
        self._pool.clear()

    @classmethod
    def in_cluster(cls, env: Mapping[str, str] | None = None, *, retries: int | None = None) -> KubeEndpoint:
        """The pod's API server (``KUBERNETES_SERVICE_HOST``/``_PORT``) and CA (``ca.crt`` of the
        service-account directory, ``ADF_SERVICEACCOUNT_DIR`` in tests); UserError outside a pod."""
        found = pod_api_server(env)
        if found is None:
            raise UserError("not in a cluster: KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set")
        host, port, root = found
        try:
            return cls("https://" + join_host_port(host, port), ca_file=Path(root) / "ca.crt", retries=retries)
        except OSError as err:
            raise UserError(f"the in-cluster configuration is unusable: {err}") from None


class _CallerTransport:
    """One caller's token on a :class:`KubeEndpoint`'s pool. The token is never logged or shown."""

    def __init__(self, endpoint: KubeEndpoint, token: str) -> None:
        self._endpoint = endpoint
        self._token = token

    @property
    def server(self) -> str:
        return self._endpoint.server

    def __repr__(self) -> str:
        return f"CallerTransport(server={self.server!r})"

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float = 15.0,
    ) -> tuple[int, bytes]:
        return _bearer_request(self._endpoint._pool, self.server, self._token, method, path, query=query,
                               headers=headers, body=body, timeout=timeout)

    def close(self) -> None:
        pass  # the pool is the endpoint's


def load_transport(*, retries: int | None = None, env: Mapping[str, str] | None = None) -> Transport:
    """The in-cluster :class:`ServiceAccountTransport` when ``KUBERNETES_SERVICE_HOST`` is set and the
    service-account token and CA exist (no ``kubernetes`` import); else an :class:`ApiClientTransport`
    from ``KUBECONFIG`` / ``~/.kube/config``. Raises UserError when there is no configuration at all.

    ``retries`` bounds urllib3's connection retries (its default is 3)."""
    in_cluster = ServiceAccountTransport.from_env(env, retries=retries)
    if in_cluster is not None:
        return in_cluster
    return ApiClientTransport.from_kubeconfig(env, retries=retries)


# --------------------------------------------------------------------------- the real one


class RestKube:
    """:class:`KubeApi` over the REST API, on a :class:`Transport` (see :func:`load_transport`).

    ``timeout`` bounds every request (seconds), so a hung API server never
    stalls a run or a reconciliation for long.
    """

    def __init__(self, transport: Transport, *, timeout: float = 15.0) -> None:
        self.transport = transport
        self.timeout = timeout

    @property
    def server(self) -> str:
        return self.transport.server

    def __repr__(self) -> str:
        return f"RestKube({self.transport!r})"

    def close(self) -> None:
        self.transport.close()

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
        status, data = self.transport.request(
            method, path, query=query or [], headers=headers, body=body, timeout=self.timeout
        )
        if status == 404:
            return None
        if not 200 <= status < 300:
            raise _error(status, data)
        return json.loads(data) if data else {}

    # ----------------------------------------------------------------- KubeApi
    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        return self.request("GET", f"{kind.collection(namespace)}/{name}")

    def list(
        self, kind: Kind, namespace: str | None, *, labels: Mapping[str, str] | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        if limit is not None:  # the first page only: what is beyond it is not wanted
            return self._page(kind, namespace, labels, limit, "")[0]
        return [item for page in self.pages(kind, namespace, labels=labels) for item in page]

    def pages(
        self, kind: Kind, namespace: str | None, *, labels: Mapping[str, str] | None = None, size: int = LIST_PAGE
    ) -> Iterator[builtins.list[dict[str, Any]]]:
        token = ""
        while True:
            items, token = self._page(kind, namespace, labels, size, token)
            yield items
            if not token:
                return

    def _page(self, kind: Kind, namespace: str | None, labels: Mapping[str, str] | None, size: int,
              token: str) -> tuple[builtins.list[dict[str, Any]], str]:
        """One page of a LIST and the continue token of the next ('' after the last)."""
        query = [("labelSelector", ",".join(f"{k}={v}" for k, v in labels.items()))] if labels else []
        query.append(("limit", str(size)))
        if token:
            query.append(("continue", token))
        answer = self.request("GET", kind.collection(namespace), query=query) or {}
        items = answer.get("items") or []
        for item in items:  # lists omit these on items
            item.setdefault("apiVersion", kind.api_version)
            item.setdefault("kind", kind.kind)
        return items, (answer.get("metadata") or {}).get("continue") or ""

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
        self,
        kind: Kind,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        status: bool = False,
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
