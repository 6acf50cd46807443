"""The chart's monitoring toggles: metrics Service and port, ServiceMonitor, PrometheusRule, Grafana dashboard,
the monitoring page's Service; rendered, refused when inconsistent, and installed on the real API server."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml

from tests.k8s.cluster import Cluster, tool
from tests.k8s.test_chart import CHART, KUBE_VERSION, _helm, _release, find, operator_env, render

ALL_ON = ("metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true",
          "metrics.grafanaDashboard.enabled=true", "ui.enabled=true", "ui.actions.enabled=true")


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = find(docs, "Deployment", "adf-activedataflow-operator")
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    return c


def ports(docs: list[dict[str, Any]]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(docs)["ports"]}


def test_by_default_the_operator_serves_metrics_behind_a_service_and_nothing_else_is_on() -> None:
    docs = render()
    assert operator_env(docs)["ADF_METRICS_PORT"] == "9090"
    assert "ADF_UI_PORT" not in operator_env(docs)
    assert ports(docs) == {"liveness": 8080, "metrics": 9090}
    [service] = find(docs, "Service", "adf-activedataflow-metrics")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    [deployment] = find(docs, "Deployment", "adf-activedataflow-operator")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "operator"  # not the bundled Redis
    assert find(docs, "Service", "adf-activedataflow-ui") == []
    assert find(docs, "ServiceMonitor") == find(docs, "PrometheusRule") == []
    assert [c for c in find(docs, "ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]] == []


def test_metrics_can_be_switched_off() -> None:
    docs = render("metrics.enabled=false")
    assert "ADF_METRICS_PORT" not in operator_env(docs)
    assert ports(docs) == {"liveness": 8080}
    assert find(docs, "Service", "adf-activedataflow-metrics") == []


def test_the_ui_toggle_adds_its_port_env_and_service() -> None:
    docs = render("ui.enabled=true", "ui.port=8500", "ui.service.type=NodePort")
    assert operator_env(docs)["ADF_UI_PORT"] == "8500"
    assert ports(docs)["ui"] == 8500
    [service] = find(docs, "Service", "adf-activedataflow-ui")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"] == [{"name": "ui", "port": 8500, "targetPort": "ui", "protocol": "TCP"}]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "operator"


def test_the_service_monitor_scrapes_the_metrics_service_keeping_the_flows_namespace_label() -> None:
    docs = render("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.interval=15s",
                  "metrics.serviceMonitor.labels.release=kube-prometheus-stack", "metrics.port=9102")
    [monitor] = find(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    [service] = find(docs, "Service", "adf-activedataflow-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert find(docs, "Service", "adf-activedataflow-redis")[0]["metadata"]["labels"].get(
        "app.kubernetes.io/component") != "metrics"  # the selector picks the metrics Service only
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["adf"]}
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s",
                                            "scrapeTimeout": "10s", "honorLabels": True}]
    assert service["spec"]["ports"][0]["port"] == 9102 == ports(docs)["metrics"]


def rule_groups(*sets: str) -> list[dict[str, Any]]:
    [rule] = find(render("metrics.prometheusRule.enabled=true", *sets), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    return list(rule["spec"]["groups"])


def alerts(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def test_the_prometheus_rule_thresholds_come_from_values() -> None:
    default = alerts(rule_groups())
    assert set(default) == {"ADFFlowFailing", "ADFFlowLate", "ADFStoreUnavailable"}
    assert "adf_flow_consecutive_failures{}) >= 3" in default["ADFFlowFailing"]["expr"]
    assert "> 3 * max by (namespace, flow) (adf_flow_schedule_period_seconds{})" in default["ADFFlowLate"]["expr"]
    assert default["ADFFlowLate"]["for"] == "5m"
    assert default["ADFFlowFailing"]["annotations"]["summary"] == (
        "DataFlow {{ $labels.namespace }}/{{ $labels.flow }} keeps failing")  # Prometheus' template, not Helm's

    tuned = alerts(rule_groups("metrics.prometheusRule.failingRuns=5", "metrics.prometheusRule.latePeriods=2",
                               "metrics.prometheusRule.lateFor=1h", "metrics.prometheusRule.lateSeverity=critical",
                               'metrics.prometheusRule.selector=job="adf-metrics"'))
    assert 'adf_flow_consecutive_failures{job="adf-metrics"}) >= 5' in tuned["ADFFlowFailing"]["expr"]
    assert '> 2 * max by (namespace, flow) (adf_flow_schedule_period_seconds{job="adf-metrics"})' in tuned[
        "ADFFlowLate"]["expr"]
    assert (tuned["ADFFlowLate"]["for"], tuned["ADFFlowLate"]["labels"]["severity"]) == ("1h", "critical")


def test_additional_rules_join_the_group() -> None:
    extra = {"alert": "Mine", "expr": "up == 0"}
    values = yaml.safe_dump({"metrics": {"prometheusRule": {"enabled": True, "additionalRules": [extra]}}})
    proc = subprocess.run([tool("helm"), "template", "adf", str(CHART), "-n", "adf", "--kube-version", KUBE_VERSION,
                           "-f", "-"], input=values, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    [rule] = find([d for d in yaml.safe_load_all(proc.stdout) if d], "PrometheusRule")
    assert rule["spec"]["groups"][0]["rules"][-1] == extra
    assert len(rule["spec"]["groups"][0]["rules"]) == 4


def test_the_grafana_dashboard_is_a_labelled_configmap_of_valid_json_on_our_metrics() -> None:
    docs = render("metrics.grafanaDashboard.enabled=true", "metrics.grafanaDashboard.namespace=monitoring",
                  "metrics.grafanaDashboard.annotations.grafana_folder=Pipelines")
    [cm] = find(docs, "ConfigMap", "adf-activedataflow-dashboard")
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Pipelines"}
    dashboard = json.loads(cm["data"]["activedataflow.json"])
    assert dashboard["uid"] == "activedataflow" and dashboard["title"] == "ActiveDataFlow"
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in ("adf_flow_runs_total", "adf_flow_last_run_duration_seconds", "adf_flow_records_total",
                   "adf_flow_last_success_timestamp_seconds", "adf_flow_consecutive_failures",
                   "adf_flow_active_runs", "adf_store_up", "adf_operator_reconcile_total"):
        assert metric in exprs, metric
    legends = [t["legendFormat"] for p in dashboard["panels"] for t in p["targets"]]
    assert "{{namespace}}/{{flow}}" in legends  # Grafana's placeholders survive (the file is not a Helm template)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_ui_is_read_only_unless_its_actions_are_enabled() -> None:
    assert "ADF_UI_ACTIONS" not in operator_env(render("ui.enabled=true"))
    assert operator_env(render("ui.enabled=true", "ui.actions.enabled=true"))["ADF_UI_ACTIONS"] == "true"


@pytest.mark.parametrize(("sets", "message"), [
    (("metrics.enabled=false", "metrics.prometheusRule.enabled=true"), "need metrics.enabled"),
    (("metrics.enabled=false", "metrics.serviceMonitor.enabled=true"), "need metrics.enabled"),
    (("metrics.port=8080",), "metrics.port: the operator already listens there"),
    (("ui.enabled=true", "ui.port=9090"), "ui.port: the operator already listens there"),
    (("ui.actions.enabled=true",), "ui.actions.enabled needs ui.enabled"),
    (("metrics.port=0",), "/metrics/port"),
    (("metrics.prometheusRule.lateFor=soon",), "/metrics/prometheusRule/lateFor"),
    (("metrics.prometheusRule.failingRuns=0",), "/metrics/prometheusRule/failingRuns"),
])
def test_inconsistent_monitoring_values_are_refused(sets: tuple[str, ...], message: str) -> None:
    flags = [arg for s in sets for arg in ("--set", s)]
    result = _helm("template", "adf", str(CHART), "--kube-version", KUBE_VERSION, *flags, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_helm_lint_passes_with_every_toggle_on() -> None:
    flags = [arg for s in ALL_ON for arg in ("--set", s)]
    result = _helm("lint", "--strict", str(CHART), *flags)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


# --------------------------------------------------------------------------- on the real API server

# Stand-ins for the Prometheus Operator's CRDs (not shipped here): the API server stores the objects; the
# Prometheus Operator's own schema would check their fields.
_MONITORING_CRDS = [
    {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
     "metadata": {"name": f"{plural}.monitoring.coreos.com"},
     "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
              "names": {"plural": plural, "singular": plural[:-1], "kind": kind},
              "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                  "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}
    for plural, kind in (("servicemonitors", "ServiceMonitor"), ("prometheusrules", "PrometheusRule"))
]


@pytest.mark.k8s
def test_helm_install_with_every_monitoring_toggle_on(kube: Cluster, namespace: str) -> None:
    kube.apply(_MONITORING_CRDS)
    for crd in _MONITORING_CRDS:
        kube.kubectl("wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}", "--timeout=30s")
    release = _release()
    flags = [arg for s in ALL_ON for arg in ("--set", s)]
    kube.helm("install", release, str(CHART), "-n", namespace, *flags)
    try:
        full = f"{release}-activedataflow"
        metrics = kube.get("service", f"{full}-metrics", "-n", namespace)
        assert metrics["spec"]["ports"][0]["name"] == "metrics"
        assert kube.get("service", f"{full}-ui", "-n", namespace)["spec"]["ports"][0]["port"] == 8081
        monitor = kube.get("servicemonitor", full, "-n", namespace)
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
        rule = kube.get("prometheusrule", full, "-n", namespace)
        assert {r["alert"] for r in rule["spec"]["groups"][0]["rules"]} >= {"ADFFlowFailing", "ADFFlowLate"}
        dashboard = kube.get("configmap", f"{full}-dashboard", "-n", namespace)
        assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
        json.loads(dashboard["data"]["activedataflow.json"])
        env = kube.get("deployment", f"{full}-operator", "-n", namespace)["spec"]["template"]["spec"][
            "containers"][0]["env"]
        assert {"name": "ADF_METRICS_PORT", "value": "9090"} in env
        assert {"name": "ADF_UI_PORT", "value": "8081"} in env
        assert {"name": "ADF_UI_ACTIONS", "value": "true"} in env
        notes = kube.helm("status", release, "-n", namespace).stdout
        assert f"Service {full}-metrics, port 9090, path /metrics (scraped through ServiceMonitor {full})" in notes
        assert "ADFFlowFailing, ADFFlowLate, ADFStoreUnavailable" in notes
        assert f"kubectl -n {namespace} port-forward service/{full}-ui 8081" in notes
        assert "made with each caller's own Kubernetes token" in notes
    finally:
        kube.helm("uninstall", release, "-n", namespace, "--wait=false", check=False)
