"""A real single-node Kubernetes cluster for the end-to-end tests: Pods really run.

What :func:`real_node` starts, each a real component with private directories:

- containerd (Debian's, with runc) and the images of ``scripts/build-image`` imported
  into it (the project image, the pod sandbox image, a Redis for the chart's store);
- etcd, kube-apiserver (on the node's address, so Pods reach it through the
  ``kubernetes`` Service), kube-controller-manager (every default controller),
  kube-scheduler;
- kubelet (cgroup v1, cgroupfs, a private cgroup root) with bridge + host-local CNI;
- kube-proxy (iptables mode) for Service addresses, and CoreDNS on the node's
  address as the cluster DNS, answering only ``cluster.local`` (nothing is forwarded).

The network stays on this machine (``../shared/REAL_NODE.md``): Pods get addresses on
the suite's own bridge, routes only to that bridge, the Service range and the node's
own address (no default route), and the host forwards only between Pods of that bridge
(forwarding is enabled on the bridge alone, and a FORWARD rule drops anything from it
to another interface). ``net.ipv4.ip_forward`` is never touched.

Teardown removes what was made: workloads and processes (by PID, and whatever is
left in the node's cgroups), kube-proxy's iptables rules, mounts under the private
directories, the cgroup directories, the bridge and the FORWARD rule.

Needs root, Linux with cgroup v1 hierarchies, the binaries of
``scripts/build-control-plane.sh`` and the images of ``scripts/build-image``.
Under ``CI=true`` anything missing fails the tests that need the node; elsewhere they skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.cluster import (
    REPO,
    SERVICE_CIDR,
    Cluster,
    ControlPlaneError,
    _Processes,
    cache_dir,
    start_api_server,
    tool,
)
from tests.services import free_port

NODE_NAME = "adf-node"
POD_CIDR = "10.244.0.0/24"
POD_GATEWAY = "10.244.0.1"
BRIDGE = "adf-cni0"
CNI_BIN = "/usr/lib/cni"
NODE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
                 "kube-proxy", "coredns")
HOST_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip", "mount", "umount")
BUILD_IMAGE = REPO / "scripts" / "build-image"
LOCK_FILE = "/var/tmp/adf-node.lock"


def _unavailable(msg: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def node_address() -> str:
    """The IPv4 address of the interface that holds the default route (the node's own address)."""
    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show", "default"],
                                       capture_output=True, text=True, check=True).stdout or "[]")
    if not routes:
        _unavailable("no default route: the test node needs a non-loopback address of this machine")
    dev = routes[0]["dev"]
    addrs = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", dev],
                                      capture_output=True, text=True, check=True).stdout)
    for link in addrs:
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                return str(info["local"])
    _unavailable(f"{dev} has no IPv4 address")
    raise AssertionError("unreachable")


def images() -> list[dict[str, Any]]:
    """The images of scripts/build-image (its images.json), built first under CI when missing."""
    index = cache_dir() / "images" / "images.json"
    if not index.is_file() and os.environ.get("CI"):
        subprocess.run(["bash", str(BUILD_IMAGE)], check=True)
    if not index.is_file():
        _unavailable(f"{index} is missing: run scripts/build-image to build the images")
    found: list[dict[str, Any]] = json.loads(index.read_text())
    for image in found:
        if not Path(image["tar"]).is_file():
            _unavailable(f"{image['tar']} is missing: run scripts/build-image")
    return found


def _check_host() -> None:
    if os.geteuid() != 0:
        _unavailable("the real node needs root (containerd, kubelet, cgroups, a bridge)")
    if not Path("/sys/fs/cgroup/cpu").is_dir() and not Path("/sys/fs/cgroup/cpu,cpuacct").is_dir():
        _unavailable("the real node needs cgroup v1 hierarchies under /sys/fs/cgroup")
    for name in HOST_TOOLS:
        if not shutil.which(name):
            _unavailable(f"{name} is missing: scripts/test installs containerd, runc and iptables from Debian")
    for plugin in ("bridge", "host-local", "loopback"):
        if not Path(CNI_BIN, plugin).is_file():
            _unavailable(f"{CNI_BIN}/{plugin} is missing: apt-get install containernetworking-plugins")


def _run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout)


# ---------------------------------------------------------------------------- host resources


class _Cgroups:
    """A private cgroup root in every v1 hierarchy, removed (processes killed) on cleanup."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dirs: list[Path] = []

    def create(self) -> None:
        for hierarchy in sorted(Path("/sys/fs/cgroup").iterdir()):
            if not hierarchy.is_dir() or hierarchy.is_symlink():
                continue
            if not (hierarchy / "cgroup.procs").exists():
                continue
            path = hierarchy / self.name
            path.mkdir(exist_ok=True)  # the kubelet also makes its dirs in the (empty) cgroup2 'unified'
            self.dirs.append(path)
            if (hierarchy / "cpuset.cpus").exists():
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (path / knob).write_text((hierarchy / knob).read_text())

    def pids(self) -> set[int]:
        found: set[int] = set()
        for top in self.dirs:
            for procs in top.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    found.update(int(p) for p in procs.read_text().split())
        return found

    def remove(self) -> None:
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for top in self.dirs:
            for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    path.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()


def _unmount_under(root: Path) -> None:
    """Unmount everything mounted at or below ``root``, deepest first (the kubelet makes its dir shared)."""
    for _ in range(3):
        mounts = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == str(root) or point.startswith(f"{root}/"):
                mounts.append(point)
        if not mounts:
            return
        for point in sorted(mounts, key=len, reverse=True):
            _run("umount", "-l", point, check=False)


class _Network:
    """The suite's bridge, forwarding enabled on it alone, and a rule that nothing leaves it."""

    RULE = ("FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP")

    IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")

    def __init__(self) -> None:
        self.made_bridge = False
        self.rule = False
        self.ip_forward = self.IP_FORWARD.read_text().strip()

    def check(self) -> None:
        """Fail (and undo it) if anything switched on forwarding for the whole machine."""
        now = self.IP_FORWARD.read_text().strip()
        if now != self.ip_forward:
            self.IP_FORWARD.write_text(self.ip_forward)
            raise ControlPlaneError(f"net.ipv4.ip_forward changed from {self.ip_forward} to {now} during the tests")

    def create(self) -> None:
        if _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
            _run("ip", "link", "del", BRIDGE, check=False)  # a leftover of a killed run
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        self.made_bridge = True
        _run("ip", "addr", "add", f"{POD_GATEWAY}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        while _run("iptables", "-C", *self.RULE, check=False).returncode == 0:
            _run("iptables", "-D", *self.RULE)
        _run("iptables", "-I", *self.RULE)
        self.rule = True
        # Pod -> Service -> Pod on the same bridge is routed through the host (kube-proxy's DNAT).
        Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/forwarding").write_text("1")

    def remove(self) -> None:
        if self.rule:
            while _run("iptables", "-C", *self.RULE, check=False).returncode == 0:
                _run("iptables", "-D", *self.RULE)
        if self.made_bridge:
            _run("ip", "link", "del", BRIDGE, check=False)


# ---------------------------------------------------------------------------- configuration


def _containerd_config(work: Path, sandbox_image: str) -> Path:
    """``containerd config default`` with the settings of :func:`_containerd_settings` written in."""
    text = _run("containerd", "config", "default").stdout
    settings = _containerd_settings(work, sandbox_image)
    lines = []
    section = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        key = stripped.split("=", 1)[0].strip() if "=" in stripped else ""
        value = settings.get((section, key))
        if value is None and section.endswith(".runtimes.runc.options]") and key == "SystemdCgroup":
            value = "false"
        if value is not None:
            line = f"{line[: len(line) - len(line.lstrip())]}{key} = {value}"
        lines.append(line)
    path = work / "containerd" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _containerd_settings(work: Path, sandbox_image: str) -> dict[tuple[str, str], str]:
    """(TOML section, key) -> the value (as TOML) this node's containerd runs with."""
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    cni = '[plugins."io.containerd.grpc.v1.cri".cni]'
    return {
        ("", "root"): f'"{work / "containerd" / "root"}"',
        ("", "state"): f'"{work / "containerd" / "state"}"',
        ("[grpc]", "address"): f'"{work / "containerd" / "containerd.sock"}"',
        ("[ttrpc]", "address"): f'"{work / "containerd" / "ttrpc.sock"}"',
        ("[debug]", "address"): '""',
        ("[metrics]", "address"): '""',
        (cri, "sandbox_image"): f'"{sandbox_image}"',
        (cri, "netns_mounts_under_state_dir"): "true",
        # The VM lacks CAP_SYS_RESOURCE: without it runc fails every sandbox (REAL_NODE.md).
        (cri, "restrict_oom_score_adj"): "true",
        (cri, "enable_selinux"): "false",
        (cni, "bin_dir"): f'"{CNI_BIN}"',
        (cni, "conf_dir"): f'"{work / "cni" / "net.d"}"',
        ('[plugins."io.containerd.internal.v1.opt"]', "path"): f'"{work / "containerd" / "opt"}"',
    }


def _cni_config(work: Path, node_ip: str) -> None:
    conf_dir = work / "cni" / "net.d"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "10-adf.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0",
        "name": "adf-test",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                # The bridge and its address are made beforehand (_Network): with isGateway the plugin
                # would switch on net.ipv4.ip_forward for the whole machine.
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(work / "cni" / "ipam"),
                    "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY}]],
                    # No default route: a Pod can reach its bridge, the Service range and the node.
                    "routes": [{"dst": SERVICE_CIDR, "gw": POD_GATEWAY}, {"dst": f"{node_ip}/32", "gw": POD_GATEWAY}],
                },
            },
            {"type": "loopback"},
        ],
    }, indent=2))


def _kubelet_config(work: Path, node_ip: str, cgroup_root: str, port: int, healthz: int) -> Path:
    resolv = work / "kubelet" / "resolv.conf"
    resolv.parent.mkdir(parents=True, exist_ok=True)
    resolv.write_text("")  # no host search domains or resolvers inside Pods
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz,
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{cgroup_root}",
        "failCgroupV1": False,
        "failSwapOn": False,
        "makeIPTablesUtilChains": False,
        "containerRuntimeEndpoint": f"unix://{work / 'containerd' / 'containerd.sock'}",
        "clusterDNS": [node_ip],
        "clusterDomain": "cluster.local",
        "resolvConf": str(resolv),
        "podLogsDir": str(work / "pod-logs"),
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
        "nodeStatusUpdateFrequency": "5s",
        "staticPodPath": "",
        "localStorageCapacityIsolation": False,
        "tlsCertFile": "",
        "maxPods": 60,
    }
    path = work / "kubelet" / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _proxy_config(work: Path, kubeconfig: Path, node_ip: str) -> Path:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "bindAddress": node_ip,
        "clusterCIDR": POD_CIDR,
        # Service traffic is SNATed to the bridge's own address, so a Pod -> Service -> Pod reply
        # comes back through the host's conntrack; nothing is masqueraded out of the machine.
        "iptables": {"masqueradeAll": True, "localhostNodePorts": False, "syncPeriod": "5s",
                     "minSyncPeriod": "0s"},
        "conntrack": {"maxPerCore": 0},  # leave the host's conntrack table size alone
        "nodePortAddresses": [f"{node_ip}/32"],
        "healthzBindAddress": f"127.0.0.1:{free_port()}",
        "metricsBindAddress": f"127.0.0.1:{free_port()}",
    }
    path = work / "kube-proxy.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _corefile(work: Path, kubeconfig: Path, node_ip: str) -> Path:
    path = work / "Corefile"
    path.write_text(f"""\
cluster.local:53 in-addr.arpa:53 {{
    bind {node_ip}
    errors
    kubernetes cluster.local in-addr.arpa {{
        kubeconfig {kubeconfig} adf-test
        pods insecure
    }}
    cache 5
}}
.:53 {{
    bind {node_ip}
    # Nothing is forwarded off this machine: every other name does not exist here.
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
""")
    return path


# ---------------------------------------------------------------------------- the node


class Node(Cluster):
    """A running single-node cluster: :class:`Cluster`'s helpers plus the node's facts."""

    def __init__(self, kubeconfig: str, server: str, *, workdir: Path, node_ip: str,
                 containerd_socket: Path, procs: _Processes, images: list[dict[str, Any]]) -> None:
        super().__init__(kubeconfig, server, workdir=workdir)
        self.node_ip = node_ip
        self.containerd_socket = containerd_socket
        self.procs = procs
        self.images = images  # what was imported at start (images.json may be rewritten by a later build)

    def image_refs(self, name: str) -> list[str]:
        """The refs of one imported image (``adf``, ``pause``, ``redis``)."""
        for image in self.images:
            if image["name"] == name:
                return [str(ref) for ref in image["refs"]]
        raise AssertionError(f"scripts/build-image made no {name!r} image")

    def image_ref(self, name: str) -> str:
        return self.image_refs(name)[0]

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return _run("ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", *args,
                    check=check, timeout=timeout)

    def import_image(self, tar: str) -> None:
        self.ctr("images", "import", "--no-unpack", tar, timeout=300)

    def log(self, component: str, lines: int = 40) -> str:
        """The tail of one component's log (kubelet, containerd, kube-apiserver, ...)."""
        return self.procs.tail(component, lines)

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["pods", "-n", namespace] + (["-l", selector] if selector else [])
        return list(self.get(*args)["items"])


def _wait_node_ready(cluster: Cluster, procs: _Processes, timeout: float) -> None:
    def ready() -> bool:
        procs.check_alive()
        proc = cluster.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if proc.returncode != 0:
            return False
        conditions = json.loads(proc.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    try:
        cluster.wait_for(ready, timeout=timeout, interval=0.5, what=f"node {NODE_NAME} to be Ready")
    except TimeoutError as err:
        raise ControlPlaneError(f"{err}\n--- kubelet:\n{procs.tail('kubelet')}") from err


def _kill_leftover_shims(socket: Path) -> None:
    """containerd's shims outlive it (they are re-parented to init): end the ones of this node."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and str(socket).encode() in cmdline:
                os.kill(int(proc.name), signal.SIGKILL)


@contextlib.contextmanager
def real_node(*, startup_timeout: float = 120) -> Iterator[Node]:
    """Start the whole single-node cluster; yield a :class:`Node`; tear everything down.

    One at a time on a machine (a file lock): two would share the bridge's name and addresses.
    """
    _check_host()
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with _real_node(startup_timeout) as node:
            yield node


@contextlib.contextmanager
def _real_node(startup_timeout: float) -> Iterator[Node]:
    binaries = {name: tool(name) for name in NODE_BINARIES}
    built = images()
    node_ip = node_address()
    sandbox = next((i["refs"][0] for i in built if i["name"] == "pause"), None)
    if sandbox is None:
        _unavailable("scripts/build-image made no pause image")
    run_id = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix=f"adf-node-{run_id}-", dir="/var/tmp"))
    procs = _Processes(work)
    cgroups = _Cgroups(f"adf-node-{run_id}")
    network = _Network()
    containerd_socket = work / "containerd" / "containerd.sock"
    existed = {p: Path(p).exists() for p in ("/run/containerd", "/var/lib/kubelet", "/var/log/containers")}
    proxy_config: Path | None = None
    try:
        network.create()
        cgroups.create()
        _cni_config(work, node_ip)
        procs.start("containerd", ["containerd", "--config", str(_containerd_config(work, str(sandbox)))])

        api = start_api_server(procs, work, etcd=binaries["etcd"], apiserver=binaries["kube-apiserver"],
                               # On the node's address: Pods reach it there, through the `kubernetes` Service.
                               address=node_ip, startup_timeout=startup_timeout, extra=[
                                   "--authorization-mode", "Node,RBAC",
                                   # To the kubelet (logs, exec) by its address: the node's name is in no
                                   # DNS, and asking the machine's resolver would send a query off it.
                                   "--kubelet-preferred-address-types", "InternalIP",
                                   "--disable-admission-plugins", "MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
                                   "--audit-log-path", str(work / "audit.log"),
                                   "--audit-policy-file", str(_audit_policy(work)),
                               ])
        kubeconfig, server, ca_file, sa_private = api.kubeconfig, api.server, api.ca_file, api.sa_private
        procs.start("kube-controller-manager", [
            binaries["kube-controller-manager"],
            "--kubeconfig", str(kubeconfig),
            "--leader-elect=false",
            "--secure-port", "0",
            "--service-account-private-key-file", str(sa_private),
            "--root-ca-file", str(ca_file),
            "--use-service-account-credentials=false",
            "--concurrent-gc-syncs", "5",
            "--node-monitor-grace-period", "60s",
            "--v", "1",
        ])
        procs.start("kube-scheduler", [
            binaries["kube-scheduler"], "--kubeconfig", str(kubeconfig), "--leader-elect=false",
            "--secure-port", "0", "--v", "1",
        ])
        kubelet_root = work / "kubelet" / "root"
        kubelet_root.mkdir(parents=True)
        kubelet_config = _kubelet_config(work, node_ip, cgroups.name, free_port(), free_port())
        cluster = Node(str(kubeconfig), server, workdir=work, node_ip=node_ip,
                       containerd_socket=containerd_socket, procs=procs, images=built)
        cluster.wait_for(lambda: procs.check_alive() or containerd_socket.exists(), timeout=30,
                         what="containerd's socket")
        with open(cache_dir() / "images" / ".lock", "a") as build_lock:
            fcntl.flock(build_lock, fcntl.LOCK_SH)  # scripts/build-image rewrites the tars under LOCK_EX
            built[:] = images()  # as they are now, under the lock: the refs name what is imported
            for image in built:
                cluster.import_image(image["tar"])
        procs.start("kubelet", [
            binaries["kubelet"], "--config", str(kubelet_config), "--kubeconfig", str(kubeconfig),
            "--root-dir", str(kubelet_root), "--cert-dir", str(work / "kubelet" / "pki"),
            "--node-ip", node_ip, "--hostname-override", NODE_NAME, "--v", "1",
        ])
        proxy_config = _proxy_config(work, kubeconfig, node_ip)
        procs.start("kube-proxy", [binaries["kube-proxy"], "--config", str(proxy_config), "--v", "1"])
        procs.start("coredns", [binaries["coredns"], "-conf", str(_corefile(work, kubeconfig, node_ip))])
        _wait_node_ready(cluster, procs, startup_timeout)
        cluster.wait_controllers(procs, startup_timeout)
        yield cluster
    finally:
        _teardown(work, procs, cgroups, network, containerd_socket, proxy_config, existed)


def _audit_policy(work: Path) -> Path:
    """Metadata of every write request: what the operator and the runner did, for the tests to count."""
    path = work / "audit-policy.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
        "rules": [{"level": "Metadata", "verbs": ["create", "update", "patch", "delete"]}, {"level": "None"}],
    }))
    return path


def _teardown(work: Path, procs: _Processes, cgroups: _Cgroups, network: _Network, containerd_socket: Path,
              proxy_config: Path | None, existed: dict[str, bool]) -> None:
    procs.stop()
    _kill_leftover_shims(containerd_socket)
    cgroups.remove()
    if proxy_config is not None:
        # kube-proxy's own cleanup of the KUBE-* chains it made in the host's iptables.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _run(tool("kube-proxy"), "--cleanup", "--config", str(proxy_config), check=False, timeout=60)
    _unmount_under(work)
    network.remove()
    network.check()
    logs_dir = Path("/var/log/containers")
    if logs_dir.is_dir():
        for link in logs_dir.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(str(work)):
                    link.unlink()
    for path, was_there in existed.items():
        if not was_there:
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
