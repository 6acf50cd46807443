"""The chart's PrometheusRule under ``promtool test rules``: series a test writes, the alerts that must (and must
not) fire, and ``promtool check rules``.

promtool (a Go module, github.com/prometheus/prometheus) is built once into
``${ADF_CACHE:-~/.cache/activedataflow}/bin`` with ``go install`` under a file lock, as tests/test_workflows.py
builds actionlint. Without Go (and without the binary) the tests skip; under CI they fail.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.cluster import cache_dir
from tests.k8s.test_chart import find, render

PROMTOOL_MODULE = "github.com/prometheus/prometheus"
PROMTOOL_VERSION = "v0.316.0"
# The first build compiles Prometheus' dependencies: about 16 minutes on the 2-core machine.
pytestmark = pytest.mark.timeout(2400)


def _unavailable(msg: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def _built_version(exe: Path, go: str | None) -> str | None:
    """The module version a promtool binary was built from (``go version -m``); without Go, "unknown" for a
    binary that runs. None without a working one."""
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        return None
    if go is None:
        proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30)
        return "unknown" if proc.returncode == 0 else None
    proc = subprocess.run([go, "version", "-m", str(exe)], capture_output=True, text=True, timeout=30)
    for line in proc.stdout.splitlines():
        fields = line.split()
        if fields[:2] == ["mod", PROMTOOL_MODULE] and len(fields) >= 3:
            return fields[2]
    return None


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool from the binary cache, built there with ``go install`` if missing (or another version)."""
    cache = cache_dir()
    exe = cache / "bin" / "promtool"
    go = shutil.which("go")
    if _built_version(exe, go) in (PROMTOOL_VERSION, "unknown"):
        return str(exe)
    if not go:
        _unavailable(f"{exe} is missing and building it needs Go on PATH")
        raise AssertionError  # not reached
    exe.parent.mkdir(parents=True, exist_ok=True)
    # One build at a time: parallel runs may all find it missing.
    with open(cache / ".promtool.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _built_version(exe, go) != PROMTOOL_VERSION:
            # Built beside the cache, then moved in whole: a concurrent reader never sees half a binary.
            with tempfile.TemporaryDirectory(dir=cache, prefix=".promtool-") as gobin:
                target = f"{PROMTOOL_MODULE}/cmd/promtool@{PROMTOOL_VERSION}"
                proc = subprocess.run([go, "install", target],
                                      env={**os.environ, "GOBIN": gobin, "CGO_ENABLED": "0"},
                                      capture_output=True, text=True, timeout=1800)
                if proc.returncode != 0:
                    pytest.fail(f"go install {target} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
                os.replace(Path(gobin) / "promtool", exe)
    assert _built_version(exe, go) == PROMTOOL_VERSION
    return str(exe)


def rules_file(directory: Path, *sets: str) -> Path:
    """The rule groups of the chart's PrometheusRule (``helm template``), as a Prometheus rules file."""
    [rule] = find(render("metrics.prometheusRule.enabled=true", *sets), "PrometheusRule")
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def run_promtool(promtool: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"promtool {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


def flow(name: str, namespace: str = "shop") -> str:
    return f'namespace="{namespace}",flow="{name}",job="adf-activedataflow-metrics",instance="10.0.0.7:9090"'


def failing(flow_name: str, n: int) -> dict[str, Any]:
    return {
        "exp_labels": {"namespace": "shop", "flow": flow_name, "severity": "warning"},
        "exp_annotations": {
            "summary": f"DataFlow shop/{flow_name} keeps failing",
            "description": f"Its last {n} finished runs failed: kubectl -n shop get dataflowruns "
                           f"-l activedataflow.io/flow={flow_name}",
        },
    }


def late(flow_name: str, lateness: str) -> dict[str, Any]:
    return {
        "exp_labels": {"namespace": "shop", "flow": flow_name, "severity": "warning"},
        "exp_annotations": {
            "summary": f"DataFlow shop/{flow_name} has not succeeded for 3 of its schedule periods",
            "description": f"No successful run for {lateness}.",
        },
    }


FAILING_SERIES = [
    # consecutive failures, one a minute: 0 1 2 3 4 5 ...
    {"series": f"adf_flow_consecutive_failures{{{flow('broken')}}}", "values": "0+1x10"},
    {"series": f"adf_flow_suspended{{{flow('broken')}}}", "values": "0x10"},
    # fails twice, then succeeds again
    {"series": f"adf_flow_consecutive_failures{{{flow('flaky')}}}", "values": "0 1 2 0 0 1 2 0 0 0 0"},
    {"series": f"adf_flow_suspended{{{flow('flaky')}}}", "values": "0x10"},
    {"series": f"adf_flow_consecutive_failures{{{flow('healthy')}}}", "values": "0x10"},
    {"series": f"adf_flow_suspended{{{flow('healthy')}}}", "values": "0x10"},
    # failing, but suspended: nobody is to be woken for it
    {"series": f"adf_flow_consecutive_failures{{{flow('paused')}}}", "values": "5x10"},
    {"series": f"adf_flow_suspended{{{flow('paused')}}}", "values": "1x10"},
]

# Every flow runs every 10 minutes (period 600 s); evaluated at 60 m, 3 periods = 30 m.
LATE_SERIES = [
    # succeeded at 0 s, never since: 60 m without success
    {"series": f"adf_flow_last_success_timestamp_seconds{{{flow('stuck')}}}", "values": "0x60"},
    {"series": f"adf_flow_created_timestamp_seconds{{{flow('stuck')}}}", "values": "0x60"},
    # succeeded at 50 m
    {"series": f"adf_flow_last_success_timestamp_seconds{{{flow('ontime')}}}", "values": "3000x60"},
    {"series": f"adf_flow_created_timestamp_seconds{{{flow('ontime')}}}", "values": "0x60"},
    # never succeeded, created at 0 s: as late as stuck
    {"series": f"adf_flow_created_timestamp_seconds{{{flow('never')}}}", "values": "0x60"},
    # never succeeded yet, created at 45 m: not late
    {"series": f"adf_flow_created_timestamp_seconds{{{flow('fresh')}}}", "values": "2700x60"},
    # late, but suspended
    {"series": f"adf_flow_last_success_timestamp_seconds{{{flow('parked')}}}", "values": "0x60"},
    {"series": f"adf_flow_created_timestamp_seconds{{{flow('parked')}}}", "values": "0x60"},
    *({"series": f"adf_flow_schedule_period_seconds{{{flow(f)}}}", "values": "600x60"}
      for f in ("stuck", "ontime", "never", "fresh", "parked")),
    *({"series": f"adf_flow_suspended{{{flow(f)}}}", "values": "0x60"} for f in ("stuck", "ontime", "never", "fresh")),
    {"series": f"adf_flow_suspended{{{flow('parked')}}}", "values": "1x60"},
]


def test_the_alert_rules_fire_for_failing_and_late_flows_only(promtool: str, tmp_path: Path) -> None:
    rules = rules_file(tmp_path)
    out = run_promtool(promtool, "check", "rules", str(rules), cwd=tmp_path)
    assert "SUCCESS: 3 rules found" in out
    tests = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [
            {"name": "a flow that keeps failing", "interval": "1m", "input_series": FAILING_SERIES,
             "alert_rule_test": [
                 {"eval_time": "2m", "alertname": "ADFFlowFailing", "exp_alerts": []},
                 {"eval_time": "3m", "alertname": "ADFFlowFailing", "exp_alerts": [failing("broken", 3)]},
                 {"eval_time": "7m", "alertname": "ADFFlowFailing", "exp_alerts": [failing("broken", 7)]},
             ]},
            {"name": "a flow that has not succeeded within 3 periods", "interval": "1m", "input_series": LATE_SERIES,
             "alert_rule_test": [
                 # late from 30 m on, pending 5 m (lateFor) before it fires
                 {"eval_time": "33m", "alertname": "ADFFlowLate", "exp_alerts": []},
                 {"eval_time": "60m", "alertname": "ADFFlowLate",
                  "exp_alerts": [late("never", "1h 0m 0s"), late("stuck", "1h 0m 0s")]},
             ]},
            {"name": "the store is down", "interval": "1m",
             "input_series": [{"series": 'adf_store_up{job="adf-activedataflow-metrics",instance="10.0.0.7:9090"}',
                               "values": "1 1 0x10"}],
             "alert_rule_test": [
                 {"eval_time": "5m", "alertname": "ADFStoreUnavailable", "exp_alerts": []},
                 {"eval_time": "8m", "alertname": "ADFStoreUnavailable", "exp_alerts": [{
                     "exp_labels": {"job": "adf-activedataflow-metrics", "instance": "10.0.0.7:9090",
                                    "severity": "critical"},
                     "exp_annotations": {
                         "summary": "The ActiveDataFlow operator cannot read its store",
                         "description": "No flow metrics are served while it cannot; runs may not be scheduled either.",
                     }}]},
             ]},
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    out = run_promtool(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert "SUCCESS" in out


def test_the_thresholds_of_the_values_reach_the_rules(promtool: str, tmp_path: Path) -> None:
    """failingRuns=5, latePeriods=10: three failures and 60 minutes of a 10-minute flow alert nobody."""
    rules = rules_file(tmp_path, "metrics.prometheusRule.failingRuns=5", "metrics.prometheusRule.latePeriods=10")
    tests = {
        "rule_files": [rules.name],
        "tests": [
            {"interval": "1m", "input_series": FAILING_SERIES, "alert_rule_test": [
                {"eval_time": "4m", "alertname": "ADFFlowFailing", "exp_alerts": []},
                {"eval_time": "5m", "alertname": "ADFFlowFailing", "exp_alerts": [failing("broken", 5)]},
            ]},
            {"interval": "1m", "input_series": LATE_SERIES, "alert_rule_test": [
                {"eval_time": "60m", "alertname": "ADFFlowLate", "exp_alerts": []},
            ]},
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    out = run_promtool(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert "SUCCESS" in out
