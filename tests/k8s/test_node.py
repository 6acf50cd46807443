"""The test node itself: Pods run from the built images, reach the API server and Services by name, and nothing else."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.k8s.node import Node

pytestmark = [pytest.mark.node, pytest.mark.k8s]


@pytest.fixture
def node_ns(node: Node) -> Iterator[str]:
    name = node.namespace("node")
    yield name
    node.delete_namespace(name)


def pod(name: str, image: str, command: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never", "command": command}],
                 **spec},
    }


def run_pod(node: Node, namespace: str, manifest: dict[str, Any], timeout: float = 90) -> tuple[str, str]:
    """Apply a Pod, wait until it ends, and return (phase, logs)."""
    node.apply(manifest, namespace=namespace)
    name = manifest["metadata"]["name"]

    def ended() -> str | None:
        phase = node.get("pod", name, "-n", namespace).get("status", {}).get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = node.wait_for(ended, timeout=timeout, what=f"pod {name} to end")
    return phase, node.kubectl("logs", "-n", namespace, name).stdout


def test_the_node_is_ready_and_schedulable(node: Node) -> None:
    (item,) = node.get("nodes")["items"]
    assert item["metadata"]["name"] == "adf-node"
    addresses = {a["type"]: a["address"] for a in item["status"]["addresses"]}
    assert addresses["InternalIP"] == node.node_ip
    assert not item["spec"].get("taints")


def test_a_pod_runs_the_project_image_as_its_non_root_user(node: Node, node_ns: str) -> None:
    phase, logs = run_pod(node, node_ns, pod("version", node.image_ref("adf"), ["adf", "--version"]))
    assert phase == "Succeeded", logs
    assert logs.startswith("adf, version ")


def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(node: Node, node_ns: str) -> None:
    script = (
        "import json, os, ssl, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "ctx = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "host, port = os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT']\n"
        "req = urllib.request.Request(f'https://{host}:{port}/version',"
        " headers={'Authorization': 'Bearer ' + open(sa + '/token').read()})\n"
        "print(json.load(urllib.request.urlopen(req, context=ctx, timeout=10))['gitVersion'])\n"
    )
    phase, logs = run_pod(node, node_ns, pod("api", node.image_ref("adf"), ["python3", "-c", script]))
    assert phase == "Succeeded", logs
    assert logs.strip().startswith("v1.")


def test_a_pod_resolves_a_service_by_name_and_nothing_outside_the_cluster(node: Node, node_ns: str) -> None:
    script = (
        "import socket\n"
        "print(socket.gethostbyname('kubernetes.default'))\n"
        "try:\n"
        "    socket.gethostbyname('pypi.org')\n"
        "    print('resolved')\n"
        "except OSError as err:\n"
        "    print('unresolved', type(err).__name__)\n"
    )
    phase, logs = run_pod(node, node_ns, pod("dns", node.image_ref("adf"), ["python3", "-c", script]))
    assert phase == "Succeeded", logs
    service_ip, outside = logs.splitlines()
    assert service_ip == node.get("service", "kubernetes", "-n", "default")["spec"]["clusterIP"]
    assert outside.startswith("unresolved")


def test_a_pod_has_no_route_off_the_machine(node: Node, node_ns: str) -> None:
    script = "print(open('/proc/net/route').read())"
    phase, logs = run_pod(node, node_ns, pod("routes", node.image_ref("adf"), ["python3", "-c", script]))
    assert phase == "Succeeded", logs
    destinations = [line.split()[1] for line in logs.splitlines()[1:] if line.strip()]
    assert "00000000" not in destinations  # no default route


def test_a_pod_reaches_another_pod_through_its_service(node: Node, node_ns: str) -> None:
    server = pod("echo", node.image_ref("adf"), ["python3", "-m", "http.server", "8000"])
    server["metadata"]["labels"] = {"app": "echo"}
    del server["spec"]["restartPolicy"]
    node.apply(server, namespace=node_ns)
    node.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
                "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8000}]}},
               namespace=node_ns)
    node.kubectl("wait", "-n", node_ns, "--for=condition=Ready", "pod/echo", "--timeout=90s")
    script = (
        "import time, urllib.request\n"
        "for _ in range(30):\n"
        "    try:\n"
        "        print(urllib.request.urlopen('http://echo/', timeout=3).status); break\n"
        "    except OSError as err:\n"
        "        last = err; time.sleep(1)\n"
        "else:\n"
        "    raise SystemExit(f'no answer: {last}')\n"
    )
    name = f"client-{uuid.uuid4().hex[:4]}"
    phase, logs = run_pod(node, node_ns, pod(name, node.image_ref("adf"), ["python3", "-c", script]))
    assert (phase, logs.strip()) == ("Succeeded", "200"), logs


def test_the_pod_sandbox_is_the_locally_built_pause_image(node: Node) -> None:
    refs = node.ctr("images", "ls", "-q").stdout.split()
    assert node.image_ref("pause") in refs
    assert node.image_ref("adf") in refs and node.image_ref("redis") in refs
