"""The operator's /metrics: flows and runs written through the Store API, scraped over real HTTP and parsed
with prometheus_client's own parser (names, types, labels and values)."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
from activedataflow.errors import ConfigError
from activedataflow.operator import metrics
from activedataflow.operator.metrics import (
    FlowCollector,
    metrics_port_from_env,
    record_reconcile,
    schedule_period_seconds,
    start_metrics_server,
)
from activedataflow.store import Counts, FlowUpsert, RunRecord, Store, open_store
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday
SPEC: dict[str, Any] = {"source": {"type": "sql", "table": "orders"}, "sink": {"type": "sql", "table": "fact"}}


@pytest.fixture(params=["sqlite", pytest.param("memory"), pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    url = str(request.getfixturevalue({"sqlite": "sqlite_url", "memory": "memory_url",
                                       "redis": "redis_url"}[request.param]))
    s = open_store(url)
    try:
        yield s
    finally:
        s.close()


def add_flow(store: Store, name: str, namespace: str = "shop", **fields: Any) -> None:
    store.upsert_flow(FlowUpsert(name=name, namespace=namespace, spec=SPEC, **fields))


def add_run(store: Store, name: str, namespace: str = "shop", *, at: datetime, seconds: float = 0.0,
            status: Literal["success", "failed"] | None = "success", counts: Counts | None = None) -> RunRecord:
    """A run claimed and started at ``at`` and finished ``seconds`` later (``status=None``: still running)."""
    run = store.claim(name, namespace, now=at, runner_id="test", lease_seconds=3600, require_due=False,
                      trigger="manual")
    assert run is not None
    store.start_run(run.id, now=at, lease_seconds=3600)
    if status is None:
        return run
    return store.finish_run(run.id, status=status, now=at + timedelta(seconds=seconds), counts=counts or Counts(),
                            error_message="boom" if status == "failed" else None)


def scrape(url: str) -> dict[str, Any]:
    """name -> family, from the real endpoint."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def values(family: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value for s in family.samples}


def sample(families: dict[str, Any], name: str, sample_name: str | None = None, **labels: str) -> float | None:
    want = frozenset(labels.items())
    for s in families[name].samples:
        if s.name == (sample_name or name) and frozenset(s.labels.items()) == want:
            return float(s.value)
    return None


@pytest.fixture
def shop(store: Store) -> Store:
    """Three flows: one failing lately, a suspended one, one with a run in progress."""
    add_flow(store, "paid-orders", schedule="*/15 * * * *", time_zone="Europe/Berlin",
             next_run_at=T0 + timedelta(hours=1))
    add_run(store, "paid-orders", at=T0, seconds=12.5, counts=Counts(10, 8, 2))
    add_run(store, "paid-orders", at=T0 + timedelta(minutes=15), seconds=3, status="failed", counts=Counts(4, 0, 4))
    add_run(store, "paid-orders", at=T0 + timedelta(minutes=30), seconds=2.25, status="failed", counts=Counts(5, 1, 4))
    add_flow(store, "hourly", namespace="ops", interval_seconds=3600)
    add_run(store, "hourly", "ops", at=T0, seconds=60, counts=Counts(100, 100, 0))
    add_flow(store, "hourly", namespace="ops", interval_seconds=3600, enabled=False)  # then suspended
    add_flow(store, "weekday", namespace="ops", schedule="0 9 * * 1-5")
    add_run(store, "weekday", "ops", at=T0 + timedelta(hours=1), status=None)
    return store


def test_the_scraped_flow_metrics_have_the_store_s_figures(shop: Store) -> None:
    with start_metrics_server(shop, host="127.0.0.1", port=0, cache_seconds=0) as server:
        families = scrape(server.url)

    # (prometheus_client also writes each counter's creation time as a <name>_created gauge)
    types = {name: families[name].type for name in families
             if name.startswith("adf_") and not name.endswith("_created")}
    assert types == {
        "adf_flow_runs": "counter",
        "adf_flow_records": "counter",
        "adf_flow_last_run_records": "gauge",
        "adf_flow_last_run_duration_seconds": "gauge",
        "adf_flow_last_run_timestamp_seconds": "gauge",
        "adf_flow_last_run_success": "gauge",
        "adf_flow_last_success_timestamp_seconds": "gauge",
        "adf_flow_consecutive_failures": "gauge",
        "adf_flow_active_runs": "gauge",
        "adf_flow_suspended": "gauge",
        "adf_flow_next_run_timestamp_seconds": "gauge",
        "adf_flow_schedule_period_seconds": "gauge",
        "adf_flow_created_timestamp_seconds": "gauge",
        "adf_store_up": "gauge",
        "adf_store_read_duration_seconds": "gauge",
        "adf_operator_reconcile": "counter",
        "adf_operator_reconcile_errors": "counter",
    }
    assert "process_cpu_seconds" in families or "python_info" in families  # prometheus_client's own collectors

    po = {"namespace": "shop", "flow": "paid-orders"}
    assert values(families["adf_flow_runs"]) == {
        ("adf_flow_runs_total", frozenset({**po, "result": "succeeded"}.items())): 1,
        ("adf_flow_runs_total", frozenset({**po, "result": "failed"}.items())): 2,
        ("adf_flow_runs_total", frozenset({"namespace": "ops", "flow": "hourly", "result": "succeeded"}.items())): 1,
        ("adf_flow_runs_total", frozenset({"namespace": "ops", "flow": "hourly", "result": "failed"}.items())): 0,
        ("adf_flow_runs_total", frozenset({"namespace": "ops", "flow": "weekday", "result": "succeeded"}.items())): 0,
        ("adf_flow_runs_total", frozenset({"namespace": "ops", "flow": "weekday", "result": "failed"}.items())): 0,
    }
    assert [sample(families, "adf_flow_records", "adf_flow_records_total", **po, kind=k)
            for k in ("read", "written", "failed")] == [19, 9, 10]
    # the newest finished run: the second failure
    assert [sample(families, "adf_flow_last_run_records", **po, kind=k) for k in ("read", "written", "failed")] == [
        5, 1, 4]
    assert sample(families, "adf_flow_last_run_duration_seconds", **po) == pytest.approx(2.25)
    assert sample(families, "adf_flow_last_run_timestamp_seconds", **po) == (T0 + timedelta(minutes=30)).timestamp()
    assert sample(families, "adf_flow_last_run_success", **po) == 0
    assert sample(families, "adf_flow_last_success_timestamp_seconds", **po) == (
        T0 + timedelta(seconds=12.5)).timestamp()
    assert sample(families, "adf_flow_consecutive_failures", **po) == 2
    assert sample(families, "adf_flow_active_runs", **po) == 0
    assert sample(families, "adf_flow_suspended", **po) == 0
    assert sample(families, "adf_flow_next_run_timestamp_seconds", **po) == (T0 + timedelta(hours=1)).timestamp()
    assert sample(families, "adf_flow_schedule_period_seconds", **po) == 900
    created = sample(families, "adf_flow_created_timestamp_seconds", **po)
    assert created is not None and abs(created - datetime.now(UTC).timestamp()) < 120

    hourly = {"namespace": "ops", "flow": "hourly"}
    assert sample(families, "adf_flow_suspended", **hourly) == 1
    assert sample(families, "adf_flow_schedule_period_seconds", **hourly) == 3600
    assert sample(families, "adf_flow_last_run_success", **hourly) == 1
    assert sample(families, "adf_flow_consecutive_failures", **hourly) == 0
    assert sample(families, "adf_flow_last_run_duration_seconds", **hourly) == 60

    weekday = {"namespace": "ops", "flow": "weekday"}
    assert sample(families, "adf_flow_active_runs", **weekday) == 1
    assert sample(families, "adf_flow_schedule_period_seconds", **weekday) == 72 * 3600  # Friday 9:00 -> Monday
    # nothing finished yet: no last-run figures, no last success, and never run before means due now
    for name in ("adf_flow_last_run_duration_seconds", "adf_flow_last_run_success",
                 "adf_flow_last_success_timestamp_seconds", "adf_flow_next_run_timestamp_seconds"):
        assert sample(families, name, **weekday) is None, name
    assert sample(families, "adf_flow_last_run_records", **weekday, kind="read") is None

    assert sample(families, "adf_store_up") == 1
    read_seconds = sample(families, "adf_store_read_duration_seconds")
    assert read_seconds is not None and 0 < read_seconds < 10


def test_run_counters_keep_counting_past_the_window_and_never_go_down(store: Store) -> None:
    add_flow(store, "f", interval_seconds=60)
    for i in range(3):
        add_run(store, "f", at=T0 + timedelta(minutes=i), counts=Counts(1, 1, 0))
    collector = FlowCollector(store, runs_per_flow=2, cache_seconds=0)
    registry = CollectorRegistry()
    registry.register(collector)
    labels = {"namespace": "shop", "flow": "f", "result": "succeeded"}
    assert registry.get_sample_value("adf_flow_runs_total", labels) == 2  # the window at the first read

    add_run(store, "f", at=T0 + timedelta(minutes=3), status="failed", counts=Counts(7, 0, 7))
    add_run(store, "f", at=T0 + timedelta(minutes=4), counts=Counts(1, 1, 0))
    assert registry.get_sample_value("adf_flow_runs_total", labels) == 3
    assert registry.get_sample_value("adf_flow_runs_total", {**labels, "result": "failed"}) == 1
    assert registry.get_sample_value("adf_flow_records_total", {"namespace": "shop", "flow": "f", "kind": "read"}) == 10
    assert registry.get_sample_value("adf_flow_consecutive_failures", {"namespace": "shop", "flow": "f"}) == 0

    assert store.prune_runs("f", "shop", keep_success=1, keep_failed=0) == 4
    assert registry.get_sample_value("adf_flow_runs_total", labels) == 3  # pruning history does not lower it
    assert registry.get_sample_value("adf_flow_runs_total", {**labels, "result": "failed"}) == 1

    assert store.delete_flow("f", "shop")
    assert registry.get_sample_value("adf_flow_runs_total", labels) is None  # a deleted flow's series end


def test_consecutive_failures_and_the_remembered_last_success(store: Store) -> None:
    add_flow(store, "f", interval_seconds=60)
    ok = add_run(store, "f", at=T0, seconds=5)
    registry = CollectorRegistry()
    registry.register(FlowCollector(store, runs_per_flow=3, cache_seconds=0))
    flow = {"namespace": "shop", "flow": "f"}
    assert ok.ended_at is not None
    assert registry.get_sample_value("adf_flow_last_success_timestamp_seconds", flow) == ok.ended_at.timestamp()
    for i in range(1, 6):
        add_run(store, "f", at=T0 + timedelta(minutes=i), status="failed")
    # five failures, only three in the window; the success seen before is still the last one
    assert registry.get_sample_value("adf_flow_consecutive_failures", flow) == 3
    assert registry.get_sample_value("adf_flow_last_success_timestamp_seconds", flow) == ok.ended_at.timestamp()
    assert registry.get_sample_value("adf_flow_last_run_success", flow) == 0


def test_one_store_read_serves_the_scrapes_within_the_cache_time(store: Store) -> None:
    add_flow(store, "f", interval_seconds=60)
    now = [100.0]
    collector = FlowCollector(store, cache_seconds=10, clock=lambda: now[0])
    registry = CollectorRegistry()
    registry.register(collector)
    assert collector.reads == 0  # registering does not read the store
    for _ in range(5):
        assert registry.get_sample_value("adf_flow_active_runs", {"namespace": "shop", "flow": "f"}) == 0
    assert collector.reads == 1
    add_run(store, "f", at=T0, status=None)
    now[0] += 5
    assert registry.get_sample_value("adf_flow_active_runs", {"namespace": "shop", "flow": "f"}) == 0  # cached
    now[0] += 5
    assert registry.get_sample_value("adf_flow_active_runs", {"namespace": "shop", "flow": "f"}) == 1
    assert collector.reads == 2


def test_an_unreachable_store_is_reported_down_not_a_failed_scrape() -> None:
    store = open_store("redis://127.0.0.1:1/0", migrate=False)  # nothing listens on port 1
    try:
        with start_metrics_server(store, host="127.0.0.1", port=0) as server:
            families = scrape(server.url)
    finally:
        store.close()
    assert sample(families, "adf_store_up") == 0
    assert families["adf_flow_runs"].samples == []
    assert sample(families, "adf_operator_reconcile", "adf_operator_reconcile_total", result="success") is not None


def test_reconcile_counts_by_result() -> None:
    registry = metrics.make_registry(open_store("memory://", migrate=False), process=False)

    def value(name: str, **labels: str) -> float:
        got = registry.get_sample_value(name, labels)
        assert got is not None, name
        return got

    before = {r: value("adf_operator_reconcile_total", result=r) for r in ("success", "retry", "error")}
    errors = value("adf_operator_reconcile_errors_total")
    record_reconcile("success")
    record_reconcile("success")
    record_reconcile("retry")
    record_reconcile("error")
    assert {r: value("adf_operator_reconcile_total", result=r) - before[r] for r in before} == {
        "success": 2, "retry": 1, "error": 1}
    assert value("adf_operator_reconcile_errors_total") - errors == 2
    with pytest.raises(ValueError, match="success, retry, error"):
        record_reconcile("Failed: connection refused")


def test_schedule_periods() -> None:
    def period(**fields: Any) -> float | None:
        from activedataflow.store import FlowRecord

        return schedule_period_seconds(FlowRecord(name="f", namespace="n", spec={}, **fields))

    assert period(interval_seconds=900) == 900
    assert period(schedule="*/15 * * * *") == 900
    assert period(schedule="@hourly") == 3600
    assert period(schedule="0 9 * * 1-5") == 3 * 86400
    assert period(schedule="0 12 * * *", time_zone="Europe/Berlin") == 25 * 3600  # the fall-back day
    assert period(schedule="0 12 * * *") == 86400
    assert period(schedule="0 0 1 * *") == 31 * 86400
    assert period() is None
    assert period(schedule="not cron") is None


def test_the_port_comes_from_the_environment() -> None:
    assert metrics_port_from_env({}) is None
    assert metrics_port_from_env({"ADF_METRICS_PORT": ""}) is None
    assert metrics_port_from_env({"ADF_METRICS_PORT": "0"}) is None
    assert metrics_port_from_env({"ADF_METRICS_PORT": " 9090 "}) == 9090
    for bad in ("http", "70000", "-1"):
        with pytest.raises(ConfigError, match="ADF_METRICS_PORT"):
            metrics_port_from_env({"ADF_METRICS_PORT": bad})
