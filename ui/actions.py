"""Where the page's actions go: the store (outside a cluster) or the cluster's DataFlows.

* :class:`StoreActions` (``adf ui --actions``): run now makes the flow due (the next heartbeat
  runs it), suspend and resume flip its enabled flag.
* :class:`KubeActions`: run now sets the ``activedataflow.io/run-now`` annotation, suspend and
  resume patch ``spec.suspend`` (:mod:`activedataflow.kube.actions`, as ``adf trigger`` does),
  with one of two kinds of credentials, never both:

  - :meth:`KubeActions.with_kubeconfig` (``adf ui --actions --kube``): the kubeconfig of whoever
    started the page, as ``kubectl`` would use it;
  - :meth:`KubeActions.for_callers` (the operator Pod): each request's own bearer token, on a
    :class:`~activedataflow.kube.client.KubeEndpoint` that holds no credentials of its own. A
    request without one is refused (401); the operator's service account is never used.

Either way the API server's RBAC decides; its refusal is shown as ``forbidden by RBAC: <its message>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from http import HTTPStatus
from typing import Any, Literal

from ..errors import UnknownFlow
from ..kube.actions import request_run_now, set_suspend, unreachable, whoami
from ..kube.client import ApiClientTransport, KubeEndpoint, KubeError, RestKube
from ..schedule import utcnow
from ..store import FlowRecord, Store

__all__ = ["ACTIONS", "Action", "KubeActions", "Refused", "StoreActions", "valid_token"]

Action = Literal["run-now", "suspend", "resume"]
ACTIONS: tuple[Action, ...] = ("run-now", "suspend", "resume")
# RFC 6750's b64token: what a bearer token is made of (JWTs, kubeadm and static tokens); also cookie-safe.
TOKEN_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MAX_TOKEN = 3500  # a cookie holds about 4 KB, name and attributes included
KUBE_TIMEOUT = 10.0


def valid_token(token: str | None) -> bool:
    return bool(token) and len(token or "") <= MAX_TOKEN and TOKEN_RE.fullmatch(token or "") is not None


class Refused(Exception):
    """An action (or a sign-in) that did not happen: the status and the message the page shows.

    ``sign_in``: the page offers the sign-in form (no, or no longer valid, credentials);
    ``forget_token``: the token the cookie holds is no good, the response clears it.
    """

    def __init__(self, status: int, message: str, *, sign_in: bool = False, forget_token: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.sign_in = sign_in
        self.forget_token = forget_token


class StoreActions:
    """Actions on the store's flow records (no cluster)."""

    kube = False
    callers_tokens = False
    server = ""

    def __init__(self, store: Store, *, now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self._now = now

    def perform(self, action: Action, flow: FlowRecord, token: str | None) -> None:
        try:
            if action == "run-now":
                if not flow.enabled:
                    raise Refused(HTTPStatus.CONFLICT, f"{flow.name} is suspended: resume it first")
                self.store.set_next_run(flow.name, flow.namespace, self._now())
            else:
                self.store.set_enabled(flow.name, flow.namespace, action == "resume")
        except UnknownFlow as err:
            raise Refused(HTTPStatus.NOT_FOUND, str(err)) from None

    def close(self) -> None:
        pass


class KubeActions:
    """Actions on the cluster's DataFlows, with the kubeconfig's or each caller's credentials."""

    kube = True

    def __init__(self, *, client: RestKube | None = None, endpoint: KubeEndpoint | None = None,
                 timeout: float = KUBE_TIMEOUT) -> None:
        if (client is None) == (endpoint is None):
            raise ValueError("KubeActions: either a client (fixed credentials) or an endpoint (the callers')")
        self._client = client
        self._endpoint = endpoint
        self.timeout = timeout

    @classmethod
    def with_kubeconfig(cls, env: Mapping[str, str] | None = None) -> KubeActions:
        """With the credentials of ``KUBECONFIG`` / ``~/.kube/config`` (UserError if there is none)."""
        return cls(client=RestKube(ApiClientTransport.from_kubeconfig(env, retries=1), timeout=KUBE_TIMEOUT))

    @classmethod
    def for_callers(cls, endpoint: KubeEndpoint) -> KubeActions:
        """With each request's own bearer token on ``endpoint`` (the API server's address and CA only)."""
        return cls(endpoint=endpoint)

    @property
    def callers_tokens(self) -> bool:
        return self._endpoint is not None

    @property
    def server(self) -> str:
        return self._client.server if self._client is not None else self._endpoint.server  # type: ignore[union-attr]

    def _kube(self, token: str | None) -> RestKube:
        if self._client is not None:
            return self._client
        if not valid_token(token):
            raise Refused(HTTPStatus.UNAUTHORIZED, "this action is made with your own Kubernetes credentials, and "
                          "the request carried none", sign_in=True)
        assert self._endpoint is not None and token is not None
        return RestKube(self._endpoint.transport(token), timeout=self.timeout)

    def _call(self, token: str | None, do: Callable[[RestKube], Any]) -> Any:
        import urllib3

        kube = self._kube(token)
        try:
            return do(kube)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise Refused(HTTPStatus.SERVICE_UNAVAILABLE, str(unreachable(kube.server, err))) from None
        except KubeError as err:
            if err.status == HTTPStatus.UNAUTHORIZED:
                raise Refused(HTTPStatus.UNAUTHORIZED, f"the Kubernetes API server did not accept the credentials "
                              f"({err}): an expired or mistyped token?", sign_in=self.callers_tokens,
                              forget_token=True) from None
            if err.status == HTTPStatus.FORBIDDEN:
                raise Refused(HTTPStatus.FORBIDDEN, f"forbidden by RBAC: {err}") from None
            raise Refused(HTTPStatus.BAD_GATEWAY,
                          f"the Kubernetes API server at {kube.server} refused: {err}") from None

    def perform(self, action: Action, flow: FlowRecord, token: str | None) -> None:
        namespace, name = flow.namespace, flow.name
        if action == "run-now":
            if not flow.enabled:
                raise Refused(HTTPStatus.CONFLICT, f"{name} is suspended: resume it first")
            found = self._call(token, lambda kube: request_run_now(kube, namespace, name))
            patched = found[1] if found else None
        else:
            patched = self._call(token, lambda kube: set_suspend(kube, namespace, name, action == "suspend"))
        if patched is None:
            raise Refused(HTTPStatus.NOT_FOUND,
                          f"DataFlow {namespace}/{name} not found in the cluster at {self.server}")
        if action == "run-now" and (patched.get("spec") or {}).get("suspend"):
            raise Refused(HTTPStatus.CONFLICT, f"{name} is suspended (spec.suspend): the operator does not run it; "
                          "resume it first")

    def sign_in(self, token: str) -> str:
        """Check ``token`` with the API server; the user it authenticates (Refused if it does not)."""
        if not self.callers_tokens:
            raise Refused(HTTPStatus.NOT_FOUND, "this server acts with its kubeconfig's credentials: no sign-in")
        if not valid_token(token):
            raise Refused(HTTPStatus.BAD_REQUEST, "that is not a bearer token (paste the token itself, without "
                          "'Bearer')", sign_in=True)
        return str(self._call(token, whoami))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._endpoint is not None:
            self._endpoint.close()

