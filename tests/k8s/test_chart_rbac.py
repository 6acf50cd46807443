"""The chart's RBAC, least privilege proven on the real API server.

``kubectl auth can-i --as=system:serviceaccount:<ns>:<sa>`` for the operator's and the runner's
ServiceAccounts of installed releases: the whole table of what each may do, asserted, and the Secrets
each may not read. Then the operator and a runner run as those ServiceAccounts (tokens from the
TokenRequest API), so every call the code makes, kopf's included, passes that RBAC for real.
"""

from __future__ import annotations

import base64
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from activedataflow.kube.names import STORE_SECRET

from tests.k8s.cluster import Cluster
from tests.k8s.test_chart import CHART, find, render
from tests.k8s.test_operator_e2e import (
    Operator,
    cronjobs,
    dataflow,
    orders_table,
    ready,
    run_job_as_kubelet,
    trigger_and_get_job,
)

_EVERYONE = {  # what system:basic-user grants every authenticated user
    "selfsubjectaccessreviews.authorization.k8s.io", "selfsubjectrulesreviews.authorization.k8s.io",
    "selfsubjectreviews.authentication.k8s.io",
}

# resource (as `kubectl auth can-i --list` names it), resource name ("" = any) -> verbs
Table = dict[tuple[str, str], set[str]]

OPERATOR_CLUSTER: Table = {  # kopf's watch of the CRDs
    ("customresourcedefinitions.apiextensions.k8s.io", ""): {"list", "watch"},
}
OPERATOR_IN_A_FLOW_NAMESPACE: Table = {
    ("dataflows.activedataflow.io", ""): {"get", "list", "watch", "patch"},
    ("dataflows.activedataflow.io/status", ""): {"patch"},
    ("dataflows.activedataflow.io/finalizers", ""): {"update"},
    ("cronjobs.batch", ""): {"get", "list", "create", "patch", "delete"},
    ("jobs.batch", ""): {"create"},
    ("secrets", ""): {"create"},
    ("secrets", STORE_SECRET): {"get", "patch", "delete"},
    ("events", ""): {"create"},
}
WATCHED_NAMESPACES: Table = {("namespaces", ""): {"list", "watch"}}  # kopf, with watchNamespaces only
RUNNER: Table = {
    ("dataflows.activedataflow.io", ""): {"get"},
    ("dataflows.activedataflow.io/status", ""): {"patch"},
    ("dataflows.activedataflow.io/finalizers", ""): {"update"},
    ("dataflowruns.activedataflow.io", ""): {"create", "list", "patch", "delete"},
    ("dataflowruns.activedataflow.io/status", ""): {"patch"},
}


def can_i(kube: Cluster, who: str, verb: str, resource: str, namespace: str | None, *extra: str) -> bool:
    ns = ["-n", namespace] if namespace else ["--all-namespaces"]
    result = kube.kubectl("auth", "can-i", verb, resource, *ns, f"--as={who}", *extra, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


_LINE = re.compile(r"^(\S+)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*)\]$")


def table(kube: Cluster, who: str, namespace: str) -> Table:
    """``kubectl auth can-i --list`` in ``namespace``: (resource, resource name) -> verbs, without what
    every authenticated user may do and without non-resource URLs (discovery, /version)."""
    out = kube.kubectl("auth", "can-i", "--list", "-n", namespace, f"--as={who}").stdout
    rules: Table = {}
    for line in out.splitlines()[1:]:
        match = _LINE.match(line)
        if not match or match.group(1) in _EVERYONE or match.group(1).startswith("["):
            continue
        names = match.group(3).split() or [""]
        for name in names:
            rules.setdefault((match.group(1), name), set()).update(match.group(4).split())
    return rules


def account(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def _release() -> str:
    return f"adf{uuid.uuid4().hex[:6]}"


@dataclass
class Installed:
    release: str
    namespace: str  # the release namespace
    operator: str  # the operator's ServiceAccount as a user name
    runner_namespaces: list[str]

    @property
    def fullname(self) -> str:
        return f"{self.release}-activedataflow"

    def runner(self, namespace: str) -> str:
        return account(namespace, f"{self.fullname}-runner")


@pytest.fixture(scope="module")
def cluster_wide(kube: Cluster) -> Iterator[Installed]:
    """A release with default values (cluster-wide), and a team namespace whose Secret shop-db is a user's."""
    namespace, team = kube.namespace("rel"), kube.namespace("team")
    kube.kubectl("create", "secret", "generic", "shop-db", "-n", team, "--from-literal=url=postgresql://u:pw@db/shop")
    release = _release()
    kube.helm("install", release, str(CHART), "-n", namespace, "--set", f"runner.namespaces={{{team}}}")
    yield Installed(release, namespace, account(namespace, f"{release}-activedataflow-operator"), [namespace, team])
    kube.helm("uninstall", release, "-n", namespace, "--wait=false", check=False)
    kube.delete_namespace(namespace)
    kube.delete_namespace(team)


@pytest.fixture(scope="module")
def confined(kube: Cluster) -> Iterator[Installed]:
    """A second release, with watchNamespaces (two of them) and the store URL given."""
    namespace, one, two = kube.namespace("conf"), kube.namespace("flows"), kube.namespace("flows")
    release = _release()
    kube.helm("install", release, str(CHART), "-n", namespace, "--set", f"watchNamespaces={{{one},{two}}}",
              "--set", "storage.url=redis://:s3cret@redis.example:6379/0")
    yield Installed(release, namespace, account(namespace, f"{release}-activedataflow-operator"), [one, two])
    kube.helm("uninstall", release, "-n", namespace, "--wait=false", check=False)
    for ns in (namespace, one, two):
        kube.delete_namespace(ns)


# --------------------------------------------------------------------------- without a cluster


def test_the_chart_grants_get_patch_and_delete_on_the_operators_store_secret_name_alone() -> None:
    docs = render()
    [role] = find(docs, "ClusterRole", "adf-activedataflow-operator")
    secret_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert secret_rules == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [STORE_SECRET],
         "verbs": ["get", "patch", "delete"]},
    ]
    [policy] = find(docs, "ValidatingAdmissionPolicy", "adf-activedataflow-operator-secrets")
    assert f'"{STORE_SECRET}"' in policy["spec"]["validations"][0]["expression"]
    assert policy["spec"]["matchConditions"][0]["expression"] == (
        'request.userInfo.username == "system:serviceaccount:adf:adf-activedataflow-operator"')


def test_a_cluster_wide_install_lets_the_operator_read_no_namespace_list() -> None:
    [role] = find(render(), "ClusterRole", "adf-activedataflow-operator-discovery")
    assert [r["resources"] for r in role["rules"]] == [["customresourcedefinitions"]]


# --------------------------------------------------------------------------- can-i on the real API server


@pytest.mark.k8s
def test_the_operator_may_do_exactly_what_the_table_says(kube: Cluster, cluster_wide: Installed) -> None:
    team = cluster_wide.runner_namespaces[1]
    assert table(kube, cluster_wide.operator, team) == OPERATOR_CLUSTER | OPERATOR_IN_A_FLOW_NAMESPACE
    elsewhere = kube.namespace("elsewhere")  # cluster-wide: a namespace made after the install, too
    try:
        assert table(kube, cluster_wide.operator, elsewhere) == OPERATOR_CLUSTER | OPERATOR_IN_A_FLOW_NAMESPACE
    finally:
        kube.delete_namespace(elsewhere)


@pytest.mark.k8s
def test_the_operator_reads_no_secret_but_its_store_secret(
    kube: Cluster, cluster_wide: Installed, confined: Installed
) -> None:
    operator, team = cluster_wide.operator, cluster_wide.runner_namespaces[1]
    assert can_i(kube, operator, "get", f"secrets/{STORE_SECRET}", team)
    assert can_i(kube, operator, "patch", f"secrets/{STORE_SECRET}", team)
    assert can_i(kube, operator, "delete", f"secrets/{STORE_SECRET}", team)
    not_its_own = [
        ("secrets/shop-db", team),  # a user's Secret in a flow namespace
        ("secrets", team),  # any name
        (f"secrets/{cluster_wide.fullname}-store", cluster_wide.namespace),  # even its own release's store URL
        (f"secrets/{confined.fullname}-store", confined.namespace),  # another release's
        ("secrets/shop-db", "kube-system"),
    ]
    for resource, namespace in not_its_own:
        for verb in ("get", "patch", "update", "delete"):
            assert not can_i(kube, operator, verb, resource, namespace), f"may {verb} {resource} in {namespace}"
    for verb in ("list", "watch"):
        assert not can_i(kube, operator, verb, "secrets", team), f"operator may {verb} secrets"
        assert not can_i(kube, operator, verb, "secrets", None), f"operator may {verb} secrets cluster-wide"
        assert not can_i(kube, operator, verb, f"secrets/{STORE_SECRET}", team), f"operator may {verb} its Secret"


@pytest.mark.k8s
def test_the_runner_may_do_exactly_what_reflecting_runs_needs_and_nothing_on_secrets(
    kube: Cluster, cluster_wide: Installed
) -> None:
    for namespace in cluster_wide.runner_namespaces:
        runner = cluster_wide.runner(namespace)
        assert table(kube, runner, namespace) == RUNNER
        for verb in ("get", "list", "watch", "create", "patch"):
            assert not can_i(kube, runner, verb, "secrets", namespace), f"runner may {verb} secrets"
        assert not can_i(kube, runner, "get", f"secrets/{STORE_SECRET}", namespace)
        assert not can_i(kube, runner, "get", "secrets", None)
        assert not can_i(kube, runner, "get", "dataflows", "kube-system")


@pytest.mark.k8s
def test_with_watch_namespaces_the_operator_is_confined_to_them(kube: Cluster, confined: Installed) -> None:
    one, two = confined.runner_namespaces
    for namespace in (one, two):
        assert table(kube, confined.operator, namespace) == (
            OPERATOR_CLUSTER | WATCHED_NAMESPACES | OPERATOR_IN_A_FLOW_NAMESPACE)
        assert table(kube, confined.runner(namespace), namespace) == RUNNER
    outside = confined.namespace  # its own release namespace holds no flows
    assert table(kube, confined.operator, outside) == OPERATOR_CLUSTER | WATCHED_NAMESPACES
    assert not can_i(kube, confined.operator, "get", f"secrets/{STORE_SECRET}", outside)
    assert not can_i(kube, confined.operator, "create", "secrets", "kube-system")
    assert not can_i(kube, confined.runner(one), "create", "dataflowruns", two)  # each namespace's runner its own
    assert not can_i(kube, confined.runner(one), "create", "dataflowruns", outside)


def _create_as(
    kube: Cluster, who: str, namespace: str, manifest: dict[str, object]
) -> subprocess.CompletedProcess[str]:
    return kube.kubectl("create", "--dry-run=server", "-n", namespace, f"--as={who}", "-f", "-",
                        input=yaml.safe_dump(manifest), check=False)


def _secret(name: str, **extra: object) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"url": "x"}, **extra}


@pytest.mark.k8s
def test_the_operator_can_create_no_secret_but_an_opaque_store_secret(kube: Cluster, cluster_wide: Installed) -> None:
    """RBAC's create is for any name; the chart's ValidatingAdmissionPolicy confines it. A token Secret under the
    store Secret's name would otherwise give the operator the token of any ServiceAccount of the namespace."""
    operator, team = cluster_wide.operator, cluster_wide.runner_namespaces[1]
    message = f"the ActiveDataFlow operator writes no Secret but the Opaque Secret {STORE_SECRET}"
    # The API server enforces a new policy once it has seen it (moments after the install): wait for that.
    refused = kube.wait_for(lambda: message in _create_as(kube, operator, team, _secret("other")).stderr,
                            timeout=30, what="the chart's ValidatingAdmissionPolicy to be enforced")
    assert refused
    token = _secret(STORE_SECRET, type="kubernetes.io/service-account-token")
    token["metadata"] = {"name": STORE_SECRET, "annotations": {"kubernetes.io/service-account.name": "default"}}
    assert message in _create_as(kube, operator, team, token).stderr
    made = _create_as(kube, operator, team, _secret(STORE_SECRET, type="Opaque"))
    assert made.returncode == 0, made.stderr
    admin = kube.kubectl("create", "--dry-run=server", "-n", team, "-f", "-", input=yaml.safe_dump(_secret("other")))
    assert admin.returncode == 0  # everyone else is untouched by the policy


def _cronjob(name: str, pod: dict[str, object]) -> dict[str, object]:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name}, "spec": {
        "schedule": "@hourly", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", **pod}}}}}}


@pytest.mark.k8s
def test_the_operator_can_create_no_workload_but_a_runner(kube: Cluster, cluster_wide: Installed) -> None:
    """Creating a CronJob is creating Pods: the chart's ValidatingAdmissionPolicy keeps the operator's to
    `adf heartbeat` from the chart's image as the runner ServiceAccount, without host access."""
    operator, team = cluster_wide.operator, cluster_wide.runner_namespaces[1]
    adf = {"name": "adf", "image": "ghcr.io/activedataflow/activedataflow:0.1.0", "command": ["adf", "heartbeat"]}
    runner = {"serviceAccountName": f"{cluster_wide.fullname}-runner", "containers": [adf]}
    refused = {
        "another ServiceAccount": {**runner, "serviceAccountName": "default"},
        "another image": {**runner, "containers": [{**adf, "image": "busybox"}]},
        "another command": {**runner, "containers": [{**adf, "command": ["sh", "-c", "env"]}]},
        "a host path": {**runner, "volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
        "the host's network": {**runner, "hostNetwork": True},
    }
    kube.wait_for(lambda: "Forbidden" in _create_as(kube, operator, team, _cronjob("probe", refused["a host path"])
                                                     ).stderr, timeout=30, what="the workload policy")
    for what, pod in refused.items():
        result = _create_as(kube, operator, team, _cronjob("bad", pod))
        assert result.returncode != 0 and "ValidatingAdmissionPolicy" in result.stderr, f"{what}: {result.stderr}"
    made = _create_as(kube, operator, team, _cronjob("good", runner))
    assert made.returncode == 0, made.stderr


# --------------------------------------------------------------------------- running as the ServiceAccounts


def _exists(kube: Cluster, kind: str, name: str, namespace: str) -> bool:
    return kube.kubectl("get", kind, name, "-n", namespace, check=False).returncode == 0


def service_account_kubeconfig(kube: Cluster, user: str, path: Path) -> str:
    """A kubeconfig for this cluster authenticating as ServiceAccount ``user`` (a TokenRequest token)."""
    _, _, namespace, name = user.split(":")
    token = kube.kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()
    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    config["users"] = [{"name": "sa", "user": {"token": token}}]
    config["contexts"] = [{"name": "sa", "context": {"cluster": config["clusters"][0]["name"], "user": "sa"}}]
    config["current-context"] = "sa"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return str(path)


@pytest.mark.k8s
def test_the_operator_and_runners_work_as_their_service_accounts_in_two_namespaces(
    kube_crds: Cluster, confined: Installed, tmp_path: Path
) -> None:
    kube = kube_crds
    one, two = confined.runner_namespaces
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    db_url = f"sqlite:///{tmp_path / 'shop.db'}"
    orders_table(db_url)
    for namespace in (one, two):
        for name in ("shop-db", "warehouse-db"):
            kube.kubectl("create", "secret", "generic", name, "-n", namespace, f"--from-literal=url={db_url}")
    op = Operator(kube, one, store_url, tmp_path / "operator.log")
    deployment = kube.get("deployment", f"{confined.fullname}-operator", "-n", confined.namespace)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    op.env.update({e["name"]: e["value"] for e in container["env"] if "value" in e})  # as the chart runs it
    op.env.update(KUBECONFIG=service_account_kubeconfig(kube, confined.operator, tmp_path / "operator.kubeconfig"))
    assert op.env["ADF_WATCH_NAMESPACES"] == f"{one},{two}"
    op.start()
    try:
        kube.apply([dataflow("paid-orders", one), dataflow("beat", two, runtime={"type": "heartbeat"})])
        ready(kube, one, "paid-orders")
        ready(kube, two, "beat")
        for namespace, cronjob in ((one, "df-paid-orders"), (two, "adf-heartbeat")):
            [cj] = cronjobs(kube, namespace)
            assert cj["metadata"]["name"] == cronjob
            secret = kube.get("secret", STORE_SECRET, "-n", namespace)
            assert base64.b64decode(secret["data"]["url"]).decode() == store_url
            assert "ownerReferences" not in secret["metadata"]

        job = trigger_and_get_job(kube, one, "paid-orders")  # run-now: the operator creates the Job
        runner = service_account_kubeconfig(kube, confined.runner(one), tmp_path / "runner.kubeconfig")
        done = run_job_as_kubelet(kube, job, kubeconfig=runner)
        assert done.returncode == 0, done.stderr
        assert "could not reflect" not in done.stderr, done.stderr  # every reflection call was allowed
        [run] = kube.get("dataflowruns", "-n", one, "-l", "activedataflow.io/flow=paid-orders")["items"]
        assert run["status"]["phase"] == "Succeeded"
        assert kube.get("dataflow", "paid-orders", "-n", one)["status"]["succeeded"] == 1

        for namespace, name in ((one, "paid-orders"), (two, "beat")):
            kube.kubectl("delete", "dataflow", name, "-n", namespace, "--timeout=60s")
            kube.wait_for(lambda ns=namespace: not _exists(kube, "secret", STORE_SECRET, ns), timeout=60,
                          what=f"the store Secret of {namespace} to go with its last DataFlow")
        log = op.log.read_text(errors="replace")
        assert "Forbidden" not in log and "Not enough permissions" not in log, log[-4000:]
    finally:
        op.stop()
        print(op.output())
