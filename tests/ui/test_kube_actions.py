"""The page's actions in a cluster, on the real API server: made with the caller's own credentials.

Two ServiceAccounts with tokens from the TokenRequest API: ``editor`` may patch DataFlows in the
namespace (a Role), ``viewer`` may not. The page runs as the operator Pod serves it
(``ADF_UI_PORT``, ``ADF_UI_ACTIONS``, the pod's service-account directory), and every outcome is the
same whether the operator's own token is the cluster admin's or one that may do nothing: the page
never acts with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import pytest
import yaml
from activedataflow.cli.commands import _ui_beside_the_operator
from activedataflow.store import Store
from activedataflow.ui import KubeActions

from tests.k8s.cluster import Cluster
from tests.ui.helpers import FLOW, Client, Tokens, flow_path, operator_page, running

pytestmark = pytest.mark.k8s


@pytest.fixture(params=["admin", "powerless"])
def page(request: pytest.FixtureRequest, kube_crds: Cluster, flow_store: Store, tokens: Tokens,
         tmp_path: Path) -> Iterator[str]:
    """The operator's page, the operator's token being the admin's (a fallback would succeed) or the
    viewer's (the successes can only be the caller's)."""
    operator_token = tokens.admin if request.param == "admin" else tokens.viewer
    with operator_page(kube_crds, flow_store, tmp_path, operator_token) as url:
        yield url


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert m, "no CSRF token in the page"
    return m.group(1)


def dataflow(kube: Cluster, namespace: str) -> dict[str, Any]:
    return kube.get("dataflow", FLOW, "-n", namespace)


def act(client: Client, namespace: str, action: str, headers: dict[str, str] | None = None) -> tuple[Any, str]:
    token = csrf_of(client.get(flow_path(namespace))[1])
    return client.post(f"/actions/{action}", {"namespace": namespace, "name": FLOW, "csrf": token}, headers)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------- the operator's page


def test_an_allowed_token_runs_now_suspends_and_resumes_the_dataflow(
    kube_crds: Cluster, flow_ns: str, tokens: Tokens, page: str
) -> None:
    client = Client(page)
    resp, _ = act(client, flow_ns, "run-now", bearer(tokens.editor))
    assert resp.status == 303 and resp.headers["Location"].endswith("done=run-now")
    value = dataflow(kube_crds, flow_ns)["metadata"]["annotations"]["activedataflow.io/run-now"]
    assert value.isdigit()
    _, shown = client.get(urljoin("/actions/run-now", resp.headers["Location"]))
    assert "activedataflow.io/run-now is set" in shown

    assert act(client, flow_ns, "suspend", bearer(tokens.editor))[0].status == 303
    assert dataflow(kube_crds, flow_ns)["spec"]["suspend"] is True
    assert act(client, flow_ns, "resume", bearer(tokens.editor))[0].status == 303
    assert dataflow(kube_crds, flow_ns)["spec"]["suspend"] is False


def test_a_forbidden_token_is_shown_forbidden_by_rbac_and_changes_nothing(
    kube_crds: Cluster, flow_ns: str, tokens: Tokens, page: str
) -> None:
    before = dataflow(kube_crds, flow_ns)
    client = Client(page)
    for action in ("run-now", "suspend"):
        resp, body = act(client, flow_ns, action, bearer(tokens.viewer))
        assert resp.status == 403
        text = re.sub(r"<[^>]+>", "", body).replace("&quot;", '"')
        assert f'forbidden by RBAC: dataflows.activedataflow.io "{FLOW}" is forbidden: User ' \
               f'"system:serviceaccount:{flow_ns}:viewer" cannot patch resource "dataflows"' in text
    assert dataflow(kube_crds, flow_ns)["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_without_a_token_an_action_answers_401_saying_how_to_sign_in(
    kube_crds: Cluster, flow_ns: str, page: str
) -> None:
    before = dataflow(kube_crds, flow_ns)
    client = Client(page)
    _, flow_page = client.get(flow_path(flow_ns))
    assert 'id="action-run-now"' in flow_page and 'id="sign-in"' in flow_page
    for action in ("run-now", "suspend", "resume"):
        resp, body = act(client, flow_ns, action)
        assert resp.status == 401 and resp.headers["WWW-Authenticate"] == 'Bearer realm="activedataflow"'
        assert "the request carried none" in body and "Authorization: Bearer &lt;token&gt;" in body
        assert 'action="../login"' in body and 'type="password" name="token"' in body
    assert dataflow(kube_crds, flow_ns)["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_actions_with_a_token_still_need_the_csrf_token(kube_crds: Cluster, flow_ns: str, tokens: Tokens,
                                                        page: str) -> None:
    before = dataflow(kube_crds, flow_ns)
    resp, body = Client(page).post("/actions/run-now", {"namespace": flow_ns, "name": FLOW}, bearer(tokens.editor))
    assert resp.status == 403 and "CSRF" in body
    assert dataflow(kube_crds, flow_ns)["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_pasted_token_is_checked_kept_in_a_strict_httponly_cookie_and_used(
    kube_crds: Cluster, flow_ns: str, tokens: Tokens, page: str
) -> None:
    client = Client(page)
    _, login = client.get("/login?" + urlencode({"namespace": flow_ns, "name": FLOW}))
    form = {"namespace": flow_ns, "name": FLOW, "csrf": csrf_of(login)}

    resp, body = client.post("/login", {**form, "token": "not-a-token-the-server-knows"})
    assert resp.status == 401 and "did not accept the credentials" in body and "adf_token" not in client.cookies

    resp, _ = client.post("/login", {**form, "token": tokens.editor})
    assert resp.status == 303 and resp.headers["Location"] == "flow?" + urlencode(
        {"namespace": flow_ns, "name": FLOW, "done": "signed-in"})
    cookie = next(c for c in resp.headers.get_all("Set-Cookie") if c.startswith("adf_token="))
    assert cookie == f"adf_token={tokens.editor}; Path=/; HttpOnly; SameSite=Strict"

    _, flow_page = client.get(flow_path(flow_ns))
    assert 'id="sign-out"' in flow_page and tokens.editor not in flow_page
    assert act(client, flow_ns, "suspend")[0].status == 303  # with the cookie alone
    assert dataflow(kube_crds, flow_ns)["spec"]["suspend"] is True

    resp, _ = client.post("/logout", {**form, "csrf": csrf_of(flow_page)})
    assert resp.status == 303 and "adf_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0" in \
        resp.headers.get_all("Set-Cookie")
    assert act(client, flow_ns, "resume")[0].status == 401
    assert dataflow(kube_crds, flow_ns)["spec"]["suspend"] is True


def test_the_operators_page_is_read_only_unless_actions_are_enabled(
    kube_crds: Cluster, flow_store: Store, flow_ns: str, tokens: Tokens
) -> None:
    with _ui_beside_the_operator(str(flow_store.url), {"ADF_UI_PORT": "0"}) as server:
        assert server is not None
        client = Client(f"http://127.0.0.1:{server.server_port}")
        _, flow_page = client.get(flow_path(flow_ns))
        assert "<form" not in flow_page and "Read-only" in flow_page
        resp, body = client.post("/actions/run-now", {"namespace": flow_ns, "name": FLOW, "csrf": "x"},
                                 bearer(tokens.editor))
        assert resp.status == 403 and "read-only" in body
    assert "activedataflow.io/run-now" not in (dataflow(kube_crds, flow_ns)["metadata"].get("annotations") or {})


# --------------------------------------------------------------------------- adf ui --actions --kube


def kubeconfig_for(kube: Cluster, token: str, path: Path) -> Path:
    """The test cluster's kubeconfig with ``token`` as its user's credential."""
    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    config["users"][0]["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("who", ["editor", "viewer"])
def test_adf_ui_kube_acts_with_the_kubeconfigs_credentials(
    kube_crds: Cluster, flow_store: Store, flow_ns: str, tokens: Tokens, tmp_path: Path, who: str
) -> None:
    config = kubeconfig_for(kube_crds, getattr(tokens, who), tmp_path / "kubeconfig")
    with running(flow_store, actions=True, kube=KubeActions.with_kubeconfig({"KUBECONFIG": str(config)})) as base:
        client = Client(base)
        _, flow_page = client.get(flow_path(flow_ns))
        assert "with the kubeconfig of whoever started" in flow_page and 'id="sign-in"' not in flow_page
        resp, body = act(client, flow_ns, "suspend")
    if who == "editor":
        assert resp.status == 303 and dataflow(kube_crds, flow_ns)["spec"].get("suspend") is True
    else:
        assert resp.status == 403 and "forbidden by RBAC" in body
        assert dataflow(kube_crds, flow_ns)["spec"]["suspend"] is False  # the CRD's default, untouched
