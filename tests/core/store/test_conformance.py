"""The storage contract (core/store/base.py), the same tests on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from activedataflow.errors import IllegalTransition, UnknownFlow
from activedataflow.store import Counts, FlowUpsert, RunRecord, Store, UnknownRun
from activedataflow.store.base import BACKTRACE_LIMIT, ERROR_MESSAGE_LIMIT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

T0 = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)
MIN = timedelta(minutes=1)
SPEC = {"schedule": "*/15 * * * *", "source": {"type": "sql", "table": "orders"}, "sink": {"type": "sql"}}


def add_flow(store: Store, name: str = "orders", namespace: str = "shop", **kw: Any) -> None:
    fields: dict[str, Any] = {"spec": SPEC, "schedule": "*/15 * * * *", **kw}
    store.upsert_flow(FlowUpsert(name=name, namespace=namespace, **fields))


def claim(
    store: Store, name: str = "orders", namespace: str = "shop", at: datetime = T0, **kw: Any
) -> RunRecord | None:
    kw.setdefault("runner_id", "runner-a")
    kw.setdefault("lease_seconds", 60)
    return store.claim(name, namespace, now=at, **kw)


def run_once(store: Store, at: datetime, name: str = "orders", status: str = "success", **kw: Any) -> RunRecord:
    run = claim(store, name, at=at, require_due=False, **kw)
    assert run is not None
    store.start_run(run.id, now=at, lease_seconds=60)
    return store.finish_run(run.id, status=status, now=at + timedelta(seconds=5), counts=Counts())  # type: ignore[arg-type]


# --------------------------------------------------------------------------- flows


def test_upsert_creates_the_flow_record(store: Store) -> None:
    add_flow(store, description="Copy paid orders", interval_seconds=None, time_zone="Europe/Berlin",
             concurrency_policy="Allow", next_run_at=T0)
    flow = store.get_flow("orders", "shop")
    assert flow is not None
    assert (flow.name, flow.namespace, flow.spec, flow.description) == ("orders", "shop", SPEC, "Copy paid orders")
    assert (flow.schedule, flow.time_zone, flow.concurrency_policy) == ("*/15 * * * *", "Europe/Berlin", "Allow")
    assert flow.enabled and flow.next_run_at == T0 and flow.cursor is None and flow.last_run_at is None
    assert flow.created_at is not None and flow.created_at.tzinfo is not None
    assert flow.updated_at is not None and flow.updated_at >= flow.created_at


def test_upsert_updates_definition_and_keeps_runs_cursor_and_schedule(store: Store) -> None:
    add_flow(store, next_run_at=T0)
    run = claim(store)
    assert run is not None
    store.start_run(run.id, now=T0, lease_seconds=60)
    store.finish_run(run.id, status="success", now=T0 + MIN, counts=Counts(5, 5, 0), cursor={"id": 5},
                     commit_cursor=True)
    store.set_next_run("orders", "shop", T0 + 15 * MIN)

    add_flow(store, spec={**SPEC, "schedule": "@hourly"}, schedule="@hourly", description="changed")

    flow = store.get_flow("orders", "shop")
    assert flow is not None
    assert (flow.schedule, flow.description, flow.spec["schedule"]) == ("@hourly", "changed", "@hourly")
    assert (flow.cursor, flow.last_run_status, flow.last_run_at) == ({"id": 5}, "success", T0)
    assert flow.next_run_at == T0 + 15 * MIN  # None in the upsert keeps the stored value
    assert [r.id for r in store.list_runs("orders", "shop")] == [run.id]
    add_flow(store, next_run_at=T0 + 60 * MIN)
    assert store.get_flow("orders", "shop").next_run_at == T0 + 60 * MIN  # type: ignore[union-attr]


def test_name_is_unique_per_namespace_and_flows_list_in_order(store: Store) -> None:
    add_flow(store, "b", "shop")
    add_flow(store, "a", "shop")
    add_flow(store, "a", "crm")
    add_flow(store, "a", "shop", description="again")
    assert [f.key for f in store.list_flows()] == [("crm", "a"), ("shop", "a"), ("shop", "b")]
    assert [f.key for f in store.list_flows("shop")] == [("shop", "a"), ("shop", "b")]
    assert store.get_flow("a", "shop").description == "again"  # type: ignore[union-attr]
    assert store.get_flow("a", "nowhere") is None


def test_flow_keys_list_what_list_flows_lists_with_the_enabled_flag_and_no_spec(store: Store) -> None:
    add_flow(store, "b", "shop")
    add_flow(store, "a", "shop", enabled=False)
    add_flow(store, "a", "crm")
    keys = store.flow_keys()
    assert [(k.namespace, k.name, k.enabled) for k in keys] == [("crm", "a", True), ("shop", "a", False),
                                                                 ("shop", "b", True)]
    assert [k.key for k in keys] == [f.key for f in store.list_flows()]
    assert [k.key for k in store.flow_keys("shop")] == [("shop", "a"), ("shop", "b")]
    assert store.flow_keys("nowhere") == []


def test_due_flows_are_enabled_and_never_run_or_past_their_time_oldest_first(store: Store) -> None:
    add_flow(store, "later", next_run_at=T0 + MIN)
    add_flow(store, "old", next_run_at=T0 - 10 * MIN)
    add_flow(store, "now", next_run_at=T0)
    add_flow(store, "never")
    add_flow(store, "off", enabled=False)
    add_flow(store, "elsewhere", "crm", next_run_at=T0 - MIN)
    assert [f.name for f in store.due_flows(T0)] == ["never", "old", "elsewhere", "now"]
    assert [f.name for f in store.due_flows(T0, namespace="shop")] == ["never", "old", "now"]
    assert "later" in [f.name for f in store.due_flows(T0 + MIN)]


def test_disable_keeps_the_record_and_stops_it_being_due_or_claimed(store: Store) -> None:
    add_flow(store)
    store.set_enabled("orders", "shop", False)
    flow = store.get_flow("orders", "shop")
    assert flow is not None and not flow.enabled
    assert store.due_flows(T0) == []
    assert claim(store, require_due=False) is None
    store.set_enabled("orders", "shop", True)
    assert [f.name for f in store.due_flows(T0)] == ["orders"]


def test_flow_changes_on_an_unknown_flow_raise_unknown_flow(store: Store) -> None:
    with pytest.raises(UnknownFlow, match="nope"):
        store.set_enabled("nope", "shop", False)
    with pytest.raises(UnknownFlow):
        store.set_next_run("nope", "shop", T0)
    with pytest.raises(UnknownFlow):
        store.commit_cursor("nope", "shop", 1)
    with pytest.raises(UnknownFlow):
        store.prune_runs("nope", "shop", keep_success=1, keep_failed=1)
    assert store.get_flow("nope", "shop") is None  # nothing half-written


def test_delete_removes_the_flow_and_its_runs(store: Store) -> None:
    add_flow(store)
    add_flow(store, "other")
    run_once(store, T0)
    kept = run_once(store, T0, name="other")
    assert store.delete_flow("orders", "shop") is True
    assert store.get_flow("orders", "shop") is None
    assert store.list_runs("orders", "shop") == []
    assert [r.id for r in store.list_runs()] == [kept.id]
    assert [f.name for f in store.due_flows(T0)] == ["other"]
    assert store.delete_flow("orders", "shop") is False


def test_set_next_run_moves_the_flow_in_and_out_of_due(store: Store) -> None:
    add_flow(store)
    store.set_next_run("orders", "shop", T0 + MIN)
    assert store.due_flows(T0) == []
    store.set_next_run("orders", "shop", None)
    assert [f.name for f in store.due_flows(T0)] == ["orders"]


# --------------------------------------------------------------------------- runs


def test_claim_start_finish_lifecycle(store: Store) -> None:
    add_flow(store, next_run_at=T0)
    run = claim(store, trigger="heartbeat", run_name="orders-29055870", scheduled_for=T0, next_run_at=T0 + 15 * MIN,
                attempt=2)
    assert run is not None
    assert (run.status, run.flow_name, run.namespace, run.trigger, run.attempt) == (
        "pending", "orders", "shop", "heartbeat", 2)
    assert (run.run_name, run.scheduled_for, run.runner_id, run.created_at) == ("orders-29055870", T0, "runner-a", T0)
    assert run.lease_expires_at == T0 + MIN
    assert store.get_flow("orders", "shop").next_run_at == T0 + 15 * MIN  # type: ignore[union-attr]
    assert store.due_flows(T0) == []

    started = store.start_run(run.id, now=T0 + timedelta(seconds=1), lease_seconds=120)
    assert (started.status, started.started_at) == ("in_progress", T0 + timedelta(seconds=1))
    assert started.lease_expires_at == T0 + timedelta(seconds=121)
    store.update_counts(run.id, Counts(10, 8, 1))
    assert store.get_run(run.id).records_written == 8  # type: ignore[union-attr]

    done = store.finish_run(run.id, status="success", now=T0 + timedelta(seconds=31), counts=Counts(20, 18, 2),
                            cursor="2025-03-30T00:29:59", commit_cursor=True)
    assert (done.status, done.ended_at, done.duration_seconds) == ("success", T0 + timedelta(seconds=31), 30.0)
    assert (done.records_read, done.records_written, done.records_failed) == (20, 18, 2)
    assert done.error_message is None and done.lease_expires_at is None
    flow = store.get_flow("orders", "shop")
    assert flow is not None
    assert (flow.last_run_at, flow.last_run_status, flow.cursor) == (
        T0 + timedelta(seconds=1), "success", "2025-03-30T00:29:59")
    assert store.get_run(run.id) == done


def test_a_failed_run_keeps_its_error_and_the_tail_of_a_bounded_backtrace(store: Store) -> None:
    add_flow(store)
    run = claim(store)
    assert run is not None
    store.start_run(run.id, now=T0, lease_seconds=60)
    trace = "Traceback (most recent call last):\n" + "  frame\n" * 5000 + "ValueError: boom"
    done = store.finish_run(run.id, status="failed", now=T0 + MIN, counts=Counts(3, 0, 0),
                            error_message="ValueError: boom", error_backtrace=trace, cursor=99, commit_cursor=False)
    assert (done.status, done.error_message) == ("failed", "ValueError: boom")
    assert done.error_backtrace is not None and len(done.error_backtrace) <= BACKTRACE_LIMIT
    assert done.error_backtrace.endswith("ValueError: boom")
    flow = store.get_flow("orders", "shop")
    assert flow is not None and (flow.last_run_status, flow.cursor) == ("failed", None)


def test_a_long_error_message_is_cut_to_the_limit_keeping_its_start(store: Store) -> None:
    add_flow(store)
    run = claim(store)
    assert run is not None
    message = "ValueError: row 17 is malformed: " + "x" * (2 * ERROR_MESSAGE_LIMIT)
    done = store.finish_run(run.id, status="failed", now=T0 + MIN, counts=Counts(), error_message=message)
    assert done.error_message == message[: ERROR_MESSAGE_LIMIT - 3] + "..."
    assert store.get_run(run.id) == done
    exact = "e" * ERROR_MESSAGE_LIMIT  # at the limit: kept whole
    second = claim(store, at=T0 + 2 * MIN, require_due=False)
    assert second is not None
    assert store.finish_run(second.id, status="failed", now=T0 + 3 * MIN, counts=Counts(),
                            error_message=exact).error_message == exact


def test_a_pending_run_may_fail_without_starting(store: Store) -> None:
    add_flow(store)
    run = claim(store)
    assert run is not None
    done = store.finish_run(run.id, status="failed", now=T0 + MIN, counts=Counts(), error_message="no source")
    assert (done.status, done.started_at, done.duration_seconds) == ("failed", None, None)


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], "success"),  # pending -> success: never started
        (["in_progress"], "in_progress"),
        (["in_progress", "success"], "failed"),
        (["in_progress", "failed"], "in_progress"),
        (["failed"], "success"),
    ],
)
def test_illegal_transitions_are_refused(store: Store, path: list[str], illegal: str) -> None:
    add_flow(store)
    run = claim(store)
    assert run is not None
    for status in path:
        if status == "in_progress":
            store.start_run(run.id, now=T0, lease_seconds=60)
        else:
            store.finish_run(run.id, status=status, now=T0, counts=Counts())  # type: ignore[arg-type]
    before = store.get_run(run.id)
    with pytest.raises(IllegalTransition, match=f"to {illegal}"):
        if illegal == "in_progress":
            store.start_run(run.id, now=T0, lease_seconds=60)
        else:
            store.finish_run(run.id, status=illegal, now=T0, counts=Counts(1, 1, 1))  # type: ignore[arg-type]
    assert store.get_run(run.id) == before


def test_counts_of_a_finished_run_are_final(store: Store) -> None:
    add_flow(store)
    done = run_once(store, T0)
    with pytest.raises(IllegalTransition):
        store.update_counts(done.id, Counts(1, 1, 1))
    assert store.get_run(done.id) == done


def test_unknown_runs(store: Store) -> None:
    assert store.get_run("424242") is None
    assert store.get_run("not-an-id") is None
    with pytest.raises(UnknownRun):
        store.start_run("424242", now=T0, lease_seconds=60)
    with pytest.raises(UnknownRun):
        store.finish_run("424242", status="failed", now=T0, counts=Counts())
    assert store.renew_lease("424242", now=T0, lease_seconds=60) is False
    assert store.renew_lease("not-an-id", now=T0, lease_seconds=60) is False
    assert store.renew_lease("", now=T0, lease_seconds=60) is False


@pytest.mark.parametrize("lease_seconds", [0, -30])
def test_a_lease_must_be_positive(store: Store, lease_seconds: float) -> None:
    add_flow(store)
    with pytest.raises(ValueError, match="lease_seconds must be positive"):
        claim(store, lease_seconds=lease_seconds)
    assert store.list_runs() == []  # nothing claimed
    run = claim(store)
    assert run is not None
    with pytest.raises(ValueError, match="lease_seconds must be positive"):
        store.start_run(run.id, now=T0, lease_seconds=lease_seconds)
    with pytest.raises(ValueError, match="lease_seconds must be positive"):
        store.renew_lease(run.id, now=T0, lease_seconds=lease_seconds)
    assert store.get_run(run.id) == run  # neither started nor renewed


def test_claim_of_an_unknown_or_not_due_flow_is_none(store: Store) -> None:
    assert claim(store, "nope") is None
    add_flow(store, next_run_at=T0 + MIN)
    assert claim(store) is None
    manual = claim(store, require_due=False, trigger="manual")
    assert manual is not None and manual.trigger == "manual"
    assert store.get_flow("orders", "shop").next_run_at == T0 + MIN  # type: ignore[union-attr]


def test_forbid_refuses_a_second_active_claim(store: Store) -> None:
    add_flow(store, concurrency_policy="Forbid")
    first = claim(store)
    assert first is not None
    assert claim(store, require_due=False, runner_id="runner-b") is None
    store.start_run(first.id, now=T0, lease_seconds=60)
    assert claim(store, at=T0 + timedelta(seconds=30), require_due=False, runner_id="runner-b") is None
    store.finish_run(first.id, status="success", now=T0 + MIN, counts=Counts())
    second = claim(store, at=T0 + MIN, require_due=False, runner_id="runner-b")
    assert second is not None and second.runner_id == "runner-b"
    assert [r.id for r in store.active_runs("orders", "shop")] == [second.id]


def test_allow_permits_concurrent_runs(store: Store) -> None:
    add_flow(store, concurrency_policy="Allow")
    first = claim(store)
    second = claim(store, require_due=False, runner_id="runner-b")
    assert first is not None and second is not None and first.id != second.id
    assert sorted(r.id for r in store.active_runs("orders", "shop")) == sorted([first.id, second.id])


def test_a_run_name_is_claimed_once_per_flow(store: Store) -> None:
    add_flow(store, concurrency_policy="Allow")
    add_flow(store, "other", concurrency_policy="Allow")
    first = claim(store, run_name="slot-1")
    assert first is not None
    assert claim(store, run_name="slot-1", require_due=False, runner_id="runner-b") is None
    store.finish_run(first.id, status="failed", now=T0, counts=Counts())
    assert claim(store, run_name="slot-1", require_due=False, runner_id="runner-b") is None  # even when finished
    assert claim(store, "other", run_name="slot-1") is not None
    assert claim(store, run_name="slot-2", require_due=False) is not None


def test_renewing_a_lease_keeps_the_run_alive(store: Store) -> None:
    add_flow(store)
    run = claim(store, lease_seconds=60)
    assert run is not None
    store.start_run(run.id, now=T0, lease_seconds=60)
    assert store.renew_lease(run.id, now=T0 + 50 * timedelta(seconds=1), lease_seconds=60) is True
    assert store.get_run(run.id).lease_expires_at == T0 + 110 * timedelta(seconds=1)  # type: ignore[union-attr]
    assert store.reap_expired(T0 + 100 * timedelta(seconds=1)) == []
    assert claim(store, at=T0 + 100 * timedelta(seconds=1), require_due=False) is None
    store.finish_run(run.id, status="success", now=T0 + 2 * MIN, counts=Counts())
    assert store.renew_lease(run.id, now=T0 + 2 * MIN, lease_seconds=60) is False


def test_reap_fails_runs_whose_lease_expired_and_makes_the_flow_due(store: Store) -> None:
    add_flow(store, next_run_at=T0)
    add_flow(store, "healthy", next_run_at=T0)
    lost = claim(store, runner_id="pod-7", next_run_at=T0 + 15 * MIN, lease_seconds=30)
    alive = claim(store, "healthy", next_run_at=T0 + 15 * MIN, lease_seconds=300)
    assert lost is not None and alive is not None
    store.start_run(lost.id, now=T0, lease_seconds=30)
    assert store.reap_expired(T0 + timedelta(seconds=29)) == []

    reaped = store.reap_expired(T0 + MIN)
    assert [r.id for r in reaped] == [lost.id]
    run = store.get_run(lost.id)
    assert run is not None and run.status == "failed" and run.ended_at == T0 + MIN
    assert run.error_message == "runner lost: lease expired at 2025-03-30T00:30:30+00:00 (runner pod-7)"
    flow = store.get_flow("orders", "shop")
    assert flow is not None and (flow.next_run_at, flow.last_run_status) == (T0 + MIN, "failed")
    assert [f.name for f in store.due_flows(T0 + MIN)] == ["orders"]
    assert store.reap_expired(T0 + MIN) == []  # once
    with pytest.raises(IllegalTransition):  # the lost runner may not report success afterwards
        store.finish_run(lost.id, status="success", now=T0 + 2 * MIN, counts=Counts())
    assert store.get_run(alive.id).status == "pending"  # type: ignore[union-attr]


def test_reaping_a_run_of_a_disabled_flow_fails_it_and_leaves_the_flow_off(store: Store) -> None:
    add_flow(store, next_run_at=T0)
    lost = claim(store, next_run_at=T0 + 15 * MIN, lease_seconds=30)
    assert lost is not None
    store.start_run(lost.id, now=T0, lease_seconds=30)
    store.set_enabled("orders", "shop", False)

    assert [r.id for r in store.reap_expired(T0 + MIN)] == [lost.id]
    assert store.get_run(lost.id).status == "failed"  # type: ignore[union-attr]
    flow = store.get_flow("orders", "shop")
    assert flow is not None and not flow.enabled and flow.last_run_status == "failed"
    assert store.due_flows(T0 + MIN) == []  # disabled: not due, though its run never completed
    store.set_enabled("orders", "shop", True)
    assert [f.name for f in store.due_flows(T0 + MIN)] == ["orders"]  # due again from the reap on


def test_a_claim_takes_over_from_a_runner_whose_lease_expired(store: Store) -> None:
    add_flow(store, concurrency_policy="Forbid")
    lost = claim(store, lease_seconds=30, runner_id="pod-1")
    assert lost is not None
    store.start_run(lost.id, now=T0, lease_seconds=30)
    new = claim(store, at=T0 + MIN, require_due=False, runner_id="pod-2")
    assert new is not None
    assert store.get_run(lost.id).status == "failed"  # type: ignore[union-attr]
    assert "runner lost: lease expired" in (store.get_run(lost.id).error_message or "")  # type: ignore[union-attr]
    assert [r.id for r in store.active_runs("orders", "shop")] == [new.id]


def test_prune_keeps_the_newest_runs_of_each_status(store: Store) -> None:
    add_flow(store)
    made = [run_once(store, T0 + i * MIN, status="success" if i % 3 else "failed") for i in range(9)]
    active = claim(store, at=T0 + 20 * MIN, require_due=False)
    assert active is not None
    assert store.prune_runs("orders", "shop", keep_success=2, keep_failed=1) == 6
    kept = [r.id for r in store.list_runs("orders", "shop")]
    newest_success = [r.id for r in made if r.status == "success"][-2:]
    newest_failed = [r.id for r in made if r.status == "failed"][-1:]
    assert sorted(kept) == sorted([active.id, *newest_success, *newest_failed])
    assert store.prune_runs("orders", "shop", keep_success=2, keep_failed=1) == 0


def test_pruning_a_named_run_frees_its_name(store: Store) -> None:
    add_flow(store)
    first = run_once(store, T0, run_name="orders-29055870")
    run_once(store, T0 + MIN, run_name="orders-29055871")
    assert claim(store, at=T0 + 2 * MIN, run_name="orders-29055870", require_due=False) is None
    assert store.prune_runs("orders", "shop", keep_success=1, keep_failed=0) == 1
    assert store.get_run(first.id) is None
    again = claim(store, at=T0 + 2 * MIN, run_name="orders-29055870", require_due=False)
    assert again is not None and again.id != first.id
    assert claim(store, at=T0 + 2 * MIN, run_name="orders-29055871", require_due=False) is None  # kept: still taken


def test_list_runs_newest_first_with_filters_and_limit(store: Store) -> None:
    add_flow(store, concurrency_policy="Allow")
    add_flow(store, "other", "crm", concurrency_policy="Allow")
    a1 = claim(store, at=T0)
    b1 = claim(store, "other", "crm", at=T0 + MIN)
    a2 = claim(store, at=T0 + 2 * MIN, require_due=False)
    a3 = claim(store, at=T0 + 2 * MIN, require_due=False)  # same instant: claim order decides
    runs = [a1, b1, a2, a3]
    assert all(r is not None for r in runs)
    ids = [r.id for r in runs if r is not None]
    assert [r.id for r in store.list_runs()] == [ids[3], ids[2], ids[1], ids[0]]
    assert [r.id for r in store.list_runs(limit=2)] == [ids[3], ids[2]]
    assert [r.id for r in store.list_runs("orders", "shop")] == [ids[3], ids[2], ids[0]]
    assert [r.id for r in store.list_runs("orders")] == [ids[3], ids[2], ids[0]]
    assert [r.id for r in store.list_runs(namespace="crm")] == [ids[1]]
    assert store.list_runs("missing") == []


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_below_one_lists_no_runs(store: Store, limit: int) -> None:
    add_flow(store)
    run_once(store, T0)
    assert store.list_runs(limit=limit) == []
    assert store.list_runs("orders", "shop", limit=limit) == []
    assert store.list_runs(namespace="shop", limit=limit) == []


def test_datetimes_are_timezone_aware_utc_in_and_out(store: Store) -> None:
    berlin = datetime(2025, 3, 30, 3, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # 01:30 UTC, just after DST starts
    add_flow(store, next_run_at=berlin)
    flow = store.get_flow("orders", "shop")
    assert flow is not None and flow.next_run_at == berlin
    assert flow.next_run_at.utcoffset() == timedelta(0)
    run = claim(store, at=berlin)
    assert run is not None
    for value in (run.created_at, run.lease_expires_at):
        assert value is not None and value.tzinfo is not None and value.utcoffset() == timedelta(0)
    assert run.created_at == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        store.set_next_run("orders", "shop", datetime(2025, 1, 1))


def test_microseconds_survive(store: Store) -> None:
    at = T0.replace(microsecond=123456)
    add_flow(store, next_run_at=at)
    assert store.get_flow("orders", "shop").next_run_at == at  # type: ignore[union-attr]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.dates().map(lambda d: d.isoformat()) | st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cursor=JSON)
def test_cursor_json_round_trips(store: Store, cursor: Any) -> None:
    add_flow(store)
    store.commit_cursor("orders", "shop", cursor)
    assert store.get_flow("orders", "shop").cursor == cursor  # type: ignore[union-attr]


def test_cursor_round_trips_through_finish_run(store: Store) -> None:
    add_flow(store)
    cursor = {"updated_at": "2025-03-30T00:29:59.123456+00:00", "id": 2**40, "name": "zürich", "tie": [1, "a"]}
    run = claim(store)
    assert run is not None
    store.start_run(run.id, now=T0, lease_seconds=60)
    store.finish_run(run.id, status="success", now=T0, counts=Counts(), cursor=cursor, commit_cursor=True)
    assert store.get_flow("orders", "shop").cursor == cursor  # type: ignore[union-attr]


def test_a_cursor_that_is_not_json_is_refused(store: Store) -> None:
    add_flow(store)
    store.commit_cursor("orders", "shop", 7)
    with pytest.raises(ValueError, match="cursor must be a JSON value"):
        store.commit_cursor("orders", "shop", T0)
    assert store.get_flow("orders", "shop").cursor == 7  # type: ignore[union-attr]


# --------------------------------------------------------------------------- notifications


def test_mark_notified_is_set_once(store: Store) -> None:
    add_flow(store)
    run = run_once(store, T0)
    assert store.mark_notified(run.id, now=T0 + MIN) is True
    assert store.mark_notified(run.id, now=T0 + 2 * MIN) is False
    assert store.mark_notified(run.id, now=T0 + 3 * MIN) is False
    assert store.get_run(run.id) == run  # the mark changes nothing the run record shows
    other = run_once(store, T0 + 15 * MIN)
    assert store.mark_notified(other.id, now=T0 + 16 * MIN) is True  # per run, not per flow


def test_mark_notified_of_an_unknown_run_raises(store: Store) -> None:
    with pytest.raises(UnknownRun):
        store.mark_notified("999999", now=T0)
    with pytest.raises(UnknownRun):
        store.mark_notified("no-such-run", now=T0)


def test_mark_notified_wins_once_across_store_handles(store: Store, store_url: str) -> None:
    """Runners racing for the same finished run (a restarted Pod and its replacement): one True."""
    import threading

    from activedataflow.store import open_store

    add_flow(store)
    run = run_once(store, T0)
    handles = [open_store(store_url) for _ in range(4)]
    results: list[bool] = []
    barrier = threading.Barrier(len(handles))

    def mark(s: Store) -> None:
        barrier.wait()
        results.append(s.mark_notified(run.id, now=T0 + MIN))

    threads = [threading.Thread(target=mark, args=(h,)) for h in handles]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for h in handles:
            h.close()
    assert sorted(results) == [False, False, False, True]
    assert store.mark_notified(run.id, now=T0 + 2 * MIN) is False
