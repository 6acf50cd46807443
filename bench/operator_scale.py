"""Operator at scale: N DataFlows applied at once against the real API server.

Run by hand (not in CI):  .venv/bin/python bench/operator_scale.py [--flows 300] [--store sqlite|redis]
                          [--runtime cronjob|heartbeat] [--profile PATH] [--apiserver-profile PATH]

Prints, side by side with a plain `kubectl apply` of N CronJobs:
* seconds from `kubectl apply` until every DataFlow is Ready=True with its CronJob,
* API requests per DataFlow (apiserver_request_total, all clients, over the phase),
* peak RSS of the operator process (VmHWM),
* the floor: the same N DataFlows applied with no operator running, plus the plain CronJobs' time (what any
  operator keeping one CronJob per DataFlow needs at least), and adf's time as a multiple of it,
* then an idle restart: requests (writes apart) until the new operator has resumed every DataFlow, its RSS.

It starts its own control plane (tests/k8s/cluster.py: etcd + kube-apiserver +
kube-controller-manager from ~/.cache/activedataflow/bin) and its own store.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.k8s.cluster import Cluster, control_plane  # noqa: E402

# Once a year: no CronJob fires and no nextRunAt moves while the bench runs (a */15 tick in the idle
# restart made Jobs and status patches that the restart was then charged with).
SCHEDULE = "0 3 1 1 *"
METRIC = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$')


def request_counts(kube: Cluster) -> Counter[tuple[str, str]]:
    """apiserver_request_total summed by (verb, resource)."""
    out = kube.kubectl("get", "--raw", "/metrics").stdout
    counts: Counter[tuple[str, str]] = Counter()
    for line in out.splitlines():
        m = METRIC.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
        resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        counts[(labels.get("verb", ""), resource)] += int(float(m["value"]))
    return counts


def dataflow(name: str, ns: str, runtime: str = "cronjob") -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "activedataflow.io/v1alpha1",
        "kind": "DataFlow",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "schedule": SCHEDULE,
            "source": {"type": "sql", "connection": {"secretRef": {"name": "shop-db", "key": "url"}},
                       "table": "orders"},
            "transform": [{"filter": "row.amount > 0"}],
            "sink": {"type": "sql", "connection": {"secretRef": {"name": "wh-db", "key": "url"}},
                     "table": "fact_orders", "mode": "upsert", "uniqueBy": ["id"]},
        },
    }
    if runtime != "cronjob":
        body["spec"]["runtime"] = {"type": runtime}
    return body


def cronjob(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "schedule": SCHEDULE,
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "run", "image": "registry.example/activedataflow:bench",
                                "command": ["adf", "heartbeat", "--flow", name]}],
            }}}},
        },
    }


def as_list(items: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def phase(kube: Cluster, items: list[dict[str, Any]], done: Any) -> tuple[float, Counter[tuple[str, str]]]:
    before = request_counts(kube)
    t0 = time.monotonic()
    kube.kubectl("apply", "-f", "-", input=as_list(items))
    print(f"  ... kubectl apply returned after {time.monotonic() - t0:.1f} s", file=sys.stderr)
    kube.wait_for(done, timeout=1800, interval=0.2, what="all objects ready")
    elapsed = time.monotonic() - t0
    time.sleep(2)  # let trailing status patches land in the counters
    after = request_counts(kube)
    return elapsed, after - before


def admin_credentials(kube: Cluster) -> tuple[str, Path]:
    """The token and the CA file of the cluster's admin kubeconfig (tests/k8s/cluster.py writes one user)."""
    import yaml

    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    return config["users"][0]["user"]["token"], Path(config["clusters"][0]["cluster"]["certificate-authority"])


class Lister:
    """LISTs straight from the API server (the kubeconfig's token and CA): a poll costs milliseconds, where a
    `kubectl get` of 300 objects takes seconds and would blur the time until all are Ready."""

    def __init__(self, kube: Cluster) -> None:
        import ssl

        self.server = kube.server.rstrip("/")
        self.token, ca_file = admin_credentials(kube)
        self.context = ssl.create_default_context(cafile=str(ca_file))

    def raw(self, path: str, timeout: float = 30) -> bytes:
        import urllib.request

        req = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, context=self.context, timeout=timeout) as resp:
            body: bytes = resp.read()
        return body

    def items(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self.raw(path))["items"]
        return items


def count_ready(lister: Lister, ns: str, n: int, cronjobs: int) -> bool:
    flows = lister.items(f"/apis/activedataflow.io/v1alpha1/namespaces/{ns}/dataflows")
    ready = sum(
        1 for f in flows
        if any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (f.get("status") or {}).get("conditions", []))
    )
    if ready < n:
        return False
    return len(lister.items(f"/apis/batch/v1/namespaces/{ns}/cronjobs")) >= cronjobs


READS = {"GET", "LIST", "WATCH"}


def resumed(log: Path) -> bool:
    """Whether the operator's first resync pass (which resumes every DataFlow at its start) is done."""
    try:
        return "resync pass done" in log.read_text(errors="replace")
    except OSError:
        return False


def as_in_a_pod(kube: Cluster, work: Path) -> dict[str, str]:
    """The environment a Pod gives the operator: the API server's service address and a service-account
    directory (the admin token and the CA of the kubeconfig), no kubeconfig at all."""
    from urllib.parse import urlsplit

    token, ca_file = admin_credentials(kube)
    sa = work / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(token)
    (sa / "ca.crt").write_bytes(ca_file.read_bytes())
    server = urlsplit(kube.server)
    return {"KUBERNETES_SERVICE_HOST": server.hostname or "", "KUBERNETES_SERVICE_PORT": str(server.port),
            "ADF_SERVICEACCOUNT_DIR": str(sa)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (its children not counted)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return float("nan")


def control_plane_cpu() -> dict[str, float]:
    """CPU seconds so far of this machine's etcd and kube-apiserver processes, by name."""
    used: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                name = (proc / "comm").read_text().strip()
                if name in ("etcd", "kube-apiserver", "kube-controller"):
                    used[name] = used.get(name, 0.0) + cpu_seconds(int(proc.name))
    return used


def vm_hwm_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Operator:
    """`adf operator` as a process, optionally under py-spy (then its child is the operator)."""

    def __init__(self, env: dict[str, str], log: Path, profile: Path | None = None) -> None:
        argv = [sys.executable, "-m", "activedataflow.cli", "operator"]
        if profile:  # --nonblocking: sampling does not stop the operator, so it is not slowed
            argv = ["py-spy", "record", "--nonblocking", "--format", "raw", "-r", "50", "-o", str(profile),
                    "--", *argv]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        if profile:
            self.pid = self._child()

    def _child(self) -> int:
        for _ in range(100):
            if kids := Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split():
                return int(kids[0])
            time.sleep(0.1)
        raise RuntimeError("py-spy started no operator")

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGTERM)  # under py-spy: it writes its profile when the operator exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(20)


@contextlib.contextmanager
def apiserver_profile(lister: Lister, path: Path | None) -> Iterator[None]:
    """A Go CPU profile of kube-apiserver over the block's first 30 s (needs ``--profiling=true``)."""
    if path is None:
        yield
        return
    profiler = threading.Thread(target=lambda: path.write_bytes(
        lister.raw("/debug/pprof/profile?seconds=30", timeout=60)))
    profiler.start()
    try:
        yield
    finally:
        profiler.join()


def operator_env(kube: Cluster, work: Path, store_url: str, ns: str, *, kubeconfig: bool) -> dict[str, str]:
    env = {k: v for k, v in kube.env.items() if not k.startswith("ADF_")}
    if not kubeconfig:
        del env["KUBECONFIG"]
        env.update(as_in_a_pod(kube, work))
    env.update(ADF_STORE_URL=store_url, ADF_RUNNER_IMAGE="registry.example/activedataflow:bench",
               ADF_WATCH_NAMESPACES=ns)
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", type=int, default=300)
    ap.add_argument("--store", choices=["sqlite", "redis"], default="sqlite")
    ap.add_argument("--runtime", choices=["cronjob", "heartbeat"], default="cronjob",
                    help="the DataFlows' spec.runtime.type (heartbeat: all share the namespace's one CronJob)")
    ap.add_argument("--kubeconfig", action="store_true",
                    help="run the operator with the kubeconfig (default: as in a Pod, with a service account)")
    ap.add_argument("--profile", metavar="PATH", type=Path,
                    help="sample the first operator with py-spy (pip install py-spy) into PATH, collapsed stacks")
    ap.add_argument("--apiserver-profile", metavar="PATH", type=Path,
                    help="a Go CPU profile of kube-apiserver over the DataFlow phase's first 30 s into PATH "
                         "(read with `go tool pprof -top PATH`)")
    args = ap.parse_args()
    n = args.flows
    work = Path(tempfile.mkdtemp(prefix="adf-opbench-"))
    with contextlib.ExitStack() as stack:
        kube = stack.enter_context(control_plane(
            apiserver_flags=["--profiling=true"] if args.apiserver_profile else []))
        kube.apply_crds()
        lister = Lister(kube)
        # Baseline: plain CronJobs, applied at once.
        base_ns = kube.namespace("plain")
        base_s, base_req = phase(
            kube, [cronjob(f"flow-{i}", base_ns) for i in range(n)],
            lambda: len(lister.items(f"/apis/batch/v1/namespaces/{base_ns}/cronjobs")) >= n,
        )
        # The floor: the same DataFlows with no operator at all. Any operator that keeps one CronJob per
        # DataFlow (CONTRACT.md: type cronjob, the default) takes at least this plus the CronJobs' time.
        bare_ns = kube.namespace("bare")
        bare_s, _ = phase(
            kube, [dataflow(f"flow-{i}", bare_ns) for i in range(n)],
            lambda: len(lister.items(f"/apis/activedataflow.io/v1alpha1/namespaces/{bare_ns}/dataflows")) >= n,
        )
        # Ours: DataFlows reconciled by `adf operator` into flow records + CronJobs.
        ns = kube.namespace("flows")
        if args.store == "redis":
            from tests.services import redis_server

            store_url = stack.enter_context(redis_server())
        else:
            store_url = f"sqlite:///{work / 'adf.db'}"
        env = operator_env(kube, work, store_url, ns, kubeconfig=args.kubeconfig)
        op = Operator(env, work / "operator.log", args.profile)
        try:
            time.sleep(3)  # kopf start-up, outside the measured phase
            cpu_before, plane_before = cpu_seconds(op.pid), control_plane_cpu()
            with apiserver_profile(lister, args.apiserver_profile):
                ours_s, ours_req = phase(kube, [dataflow(f"flow-{i}", ns, args.runtime) for i in range(n)],
                                         lambda: count_ready(lister, ns, n, n if args.runtime == "cronjob" else 1))
            rss = vm_hwm_mb(op.pid)
            op_cpu = cpu_seconds(op.pid) - cpu_before
            plane_cpu = {k: v - plane_before.get(k, 0.0) for k, v in control_plane_cpu().items()}
        finally:
            op.stop()
        # An idle restart: nothing changed; counted until the new operator has resumed every DataFlow.
        before = request_counts(kube)
        t0 = time.monotonic()
        op = Operator(env, work / "operator-restart.log")
        try:
            kube.wait_for(lambda: resumed(work / "operator-restart.log"), timeout=900, interval=1.0,
                          what="every DataFlow resumed")
            restart_s = time.monotonic() - t0
            time.sleep(2)  # let trailing patches land in the counters
            restart_req = request_counts(kube) - before
            restart_rss = vm_hwm_mb(op.pid)
        finally:
            op.stop()
    total_base, total_ours = sum(base_req.values()), sum(ours_req.values())
    print()
    print(f"{n} objects applied at once, real kube-apiserver v1.36 on loopback, store {args.store}, "
          f"runtime {args.runtime}")
    print(f"{'':34}{'plain CronJobs':>16}{'DataFlows (adf)':>18}")
    print(f"{'seconds until all Ready':34}{base_s:>16.1f}{ours_s:>18.1f}   ({ours_s / base_s:.2f}x)")
    print(f"{'objects/s':34}{n / base_s:>16.1f}{n / ours_s:>18.1f}")
    print(f"{'API requests (all clients)':34}{total_base:>16}{total_ours:>18}")
    print(f"{'API requests per object':34}{total_base / n:>16.1f}{total_ours / n:>18.1f}")
    print(f"{'operator peak RSS (MB)':34}{'-':>16}{rss:>18.0f}")
    print(f"{'operator CPU s (DataFlow phase)':34}{'-':>16}{op_cpu:>18.1f}")
    print("control plane CPU s in the DataFlow phase: "
          + ", ".join(f"{k} {v:.1f}" for k, v in sorted(plane_cpu.items())))
    floor = base_s + bare_s
    print(f"floor: DataFlows with no operator {bare_s:.1f} s + the plain CronJobs {base_s:.1f} s = {floor:.1f} s "
          f"({floor / base_s:.2f}x the plain CronJobs); adf takes {ours_s / floor:.2f}x the floor")
    print("\nrequests by (verb, resource) during the DataFlow phase, top 20:")
    for (verb, res), c in ours_req.most_common(20):
        print(f"  {verb:8} {res:32} {c:6}  ({c / n:.2f} per flow)")
    writes = {k: c for k, c in restart_req.items() if k[0] not in READS}
    print(f"\nidle restart: every DataFlow resumed after {restart_s:.1f} s, operator peak RSS {restart_rss:.0f} MB,")
    print(f"  {sum(restart_req.values())} API requests, {sum(writes.values())} writes "
          f"({sum(writes.values()) / n:.2f} per flow)")
    for (verb, res), c in sorted(restart_req.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {verb:8} {res:32} {c:6}  ({c / n:.2f} per flow)")
    print(f"\noperator log: {work / 'operator.log'}")


if __name__ == "__main__":
    main()
