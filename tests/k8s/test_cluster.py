"""The test control plane is a real one: namespaces, CronJobs spawning Jobs, garbage collection, RBAC."""

from __future__ import annotations

import pytest

from tests.k8s.cluster import Cluster

pytestmark = pytest.mark.k8s


def test_a_namespace_can_be_created_and_deleted(kube: Cluster) -> None:
    name = kube.namespace("life")
    assert kube.get("namespace", name)["status"]["phase"] == "Active"
    kube.delete_namespace(name, wait=True)
    assert kube.kubectl("get", "namespace", name, check=False).returncode != 0


def test_the_test_user_is_a_cluster_admin_and_can_impersonate(kube: Cluster, namespace: str) -> None:
    assert kube.kubectl("auth", "can-i", "*", "*").stdout.strip() == "yes"
    stranger = kube.kubectl("auth", "can-i", "list", "secrets", "-n", namespace,
                            "--as=system:serviceaccount:default:default", check=False)
    assert stranger.stdout.strip() == "no"


def test_a_cronjob_spawns_a_job_on_its_next_tick(kube: Cluster, namespace: str) -> None:
    kube.apply({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick", "namespace": namespace},
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox", "command": ["true"]}],
            }}}},
        },
    })
    jobs = kube.wait_for(
        lambda: kube.get("jobs", "-n", namespace)["items"], timeout=75, interval=1, what="the CronJob's first Job")
    owner = jobs[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("CronJob", "tick")
    assert jobs[0]["metadata"]["name"].startswith("tick-")


def test_an_owned_object_is_garbage_collected_with_its_owner(kube: Cluster, namespace: str) -> None:
    kube.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = kube.get("configmap", "owner", "-n", namespace)["metadata"]["uid"]
    kube.apply({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "owned", "namespace": namespace, "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]},
    })
    kube.kubectl("delete", "configmap", "owner", "-n", namespace, "--wait=false")
    kube.wait_for(
        lambda: kube.kubectl("get", "configmap", "owned", "-n", namespace, check=False).returncode != 0,
        timeout=30, what="the garbage collector to delete the owned ConfigMap",
    )


def test_the_python_client_talks_to_the_cluster(kube: Cluster, namespace: str) -> None:
    from kubernetes import client

    with kube.api_client() as api:
        names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
    assert namespace in names and "kube-system" in names
