"""Registering a flow (core/store/registration.py): when applying a DataFlow again moves its due time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from activedataflow.model import DataFlow, parse_dataflow
from activedataflow.store import Counts, Store
from activedataflow.store.registration import register_flow

NOW = datetime(2025, 3, 1, 10, 7, 30, tzinfo=UTC)  # 11:07:30 in Berlin (CET, UTC+1)


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    """One backend is enough: registration goes through get_flow and upsert_flow, held to the contract elsewhere."""
    return sqlite_url


def dataflow(**spec: Any) -> DataFlow:
    body: dict[str, Any] = {
        "apiVersion": "activedataflow.io/v1alpha1",
        "kind": "DataFlow",
        "metadata": {"name": "paid-orders", "namespace": "shop"},
        "spec": {
            "schedule": "0 3 * * *",
            "timeZone": "Europe/Berlin",
            "source": {"type": "sql", "connection": {"secretRef": {"name": "shop-db", "key": "url"}},
                       "table": "orders"},
            "sink": {"type": "sql", "connection": {"secretRef": {"name": "warehouse-db", "key": "dsn"}},
                     "table": "fact_orders"},
        },
    }
    for key, value in spec.items():
        if value is None:
            body["spec"].pop(key, None)
        else:
            body["spec"][key] = value
    return parse_dataflow(body)


def run_at(store: Store, started: datetime, *, due: datetime) -> None:
    """One finished run started at ``started``, which moved the flow's due time to ``due``."""
    run = store.claim("paid-orders", "shop", now=started, runner_id="t", lease_seconds=60, next_run_at=due,
                      require_due=False)
    assert run is not None
    store.start_run(run.id, now=started, lease_seconds=60)
    store.finish_run(run.id, status="success", now=started + timedelta(seconds=5), counts=Counts())


def test_a_new_flow_is_due_at_once(store: Store) -> None:
    record = register_flow(store, dataflow(), now=NOW)
    assert record.next_run_at is None
    assert [f.name for f in store.due_flows(NOW)] == ["paid-orders"]


def test_a_flow_never_run_stays_due_when_its_schedule_changes(store: Store) -> None:
    register_flow(store, dataflow(), now=NOW)
    assert register_flow(store, dataflow(schedule="0 4 * * *"), now=NOW).next_run_at is None


def test_applying_the_same_timing_again_keeps_the_due_time(store: Store) -> None:
    register_flow(store, dataflow(), now=NOW)
    due = NOW - timedelta(minutes=1)  # due and not yet run: a restarted operator must not skip it
    run_at(store, NOW - timedelta(hours=1), due=due)
    again = register_flow(store, dataflow(description="changed, the timing not"), now=NOW)
    assert (again.next_run_at, again.description) == (due, "changed, the timing not")


def test_a_new_schedule_of_a_flow_that_ran_is_due_at_its_next_tick_after_now(store: Store) -> None:
    register_flow(store, dataflow(), now=NOW)
    run_at(store, NOW - timedelta(hours=1), due=NOW - timedelta(minutes=1))
    moved = register_flow(store, dataflow(schedule="30 4 * * *"), now=NOW)
    assert moved.next_run_at == datetime(2025, 3, 2, 3, 30, tzinfo=UTC)  # 04:30 in Berlin


def test_a_new_time_zone_of_a_flow_that_ran_moves_its_next_tick(store: Store) -> None:
    register_flow(store, dataflow(), now=NOW)
    run_at(store, NOW - timedelta(hours=1), due=datetime(2025, 3, 2, 2, 0, tzinfo=UTC))  # 03:00 in Berlin
    moved = register_flow(store, dataflow(timeZone="UTC"), now=NOW)
    assert moved.next_run_at == datetime(2025, 3, 2, 3, 0, tzinfo=UTC)


def test_a_new_interval_of_a_heartbeat_flow_counts_from_its_last_run(store: Store) -> None:
    heartbeat = {"schedule": None, "timeZone": None, "runtime": {"type": "heartbeat"}}
    register_flow(store, dataflow(interval="15m", **heartbeat), now=NOW)
    started = NOW - timedelta(minutes=10)
    run_at(store, started, due=started + timedelta(minutes=15))
    moved = register_flow(store, dataflow(interval="30m", **heartbeat), now=NOW)
    assert moved.next_run_at == started + timedelta(minutes=30)


def test_registering_an_unchanged_flow_again_writes_nothing(store: Store) -> None:
    first = register_flow(store, dataflow(), now=NOW)
    writes: list[str] = []
    upsert = store.upsert_flow

    def counted(flow: Any) -> Any:
        writes.append(flow.name)
        return upsert(flow)

    store.upsert_flow = counted  # type: ignore[method-assign]
    assert register_flow(store, dataflow(), now=NOW + timedelta(minutes=10)) == first
    assert writes == []
    changed = register_flow(store, dataflow(description="paid orders, hourly"), now=NOW)
    assert writes == ["paid-orders"] and changed.description == "paid orders, hourly"


def test_a_disabled_record_of_a_flow_applied_again_is_enabled(store: Store) -> None:
    register_flow(store, dataflow(), now=NOW)
    store.set_enabled("paid-orders", "shop", False)  # its DataFlow was deleted while no operator ran
    assert register_flow(store, dataflow(), now=NOW).enabled
