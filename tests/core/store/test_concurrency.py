"""Concurrent claimers, as threads and as spawned processes: under Forbid a flow never runs twice at once."""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from activedataflow.errors import IllegalTransition
from activedataflow.schedule import utcnow
from activedataflow.store import Counts, FlowUpsert, Store, open_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import REPO
from tests.core.store import claimers
from tests.core.store.conftest import url_of
from tests.core.store.test_conformance import MIN, SPEC, T0

SHARED = [
    pytest.param("sqlite", id="sqlite-file"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]
THREADS = 8
PROCESSES = 4


@pytest.fixture(params=SHARED)
def shared_url(request: pytest.FixtureRequest) -> str:
    """A store several processes can open: a SQLite file, or a real server."""
    return url_of(request, request.param)


@pytest.fixture
def shared_store(shared_url: str) -> Iterator[Store]:
    store = open_store(shared_url)
    store.upsert_flow(FlowUpsert(name="orders", namespace="shop", spec=SPEC, schedule="* * * * *"))
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def spawn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[Any]]:
    """Start spawned claimer processes together and collect their results."""
    monkeypatch.syspath_prepend(str(REPO))  # the children import tests.core.store.claimers by name
    return run_processes


def run_processes(kind: str, count: int, args: tuple[Any, ...], ctx: Any = None) -> list[Any]:
    ctx = ctx or multiprocessing.get_context("spawn")
    results: Any = ctx.Queue()
    barrier = ctx.Barrier(count)
    procs = [ctx.Process(target=claimers.process_main, args=(kind, results, *args, barrier)) for _ in range(count)]
    for p in procs:
        p.start()
    outcomes: list[tuple[str, Any]] = []
    deadline = time.monotonic() + 180
    try:
        while len(outcomes) < count and time.monotonic() < deadline:
            try:
                outcomes.append(results.get(timeout=0.5))
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    pytest.fail(f"a claimer process died with exit code {dead[0]}")
        if len(outcomes) < count:
            pytest.fail("the claimer processes did not report within 180 s")
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    errors = [detail for status, detail in outcomes if status != "ok"]
    assert errors == []
    return [detail for _, detail in outcomes]


def assert_one_winner_per_slot(store: Store, results: list[list[str | None]], slots: int) -> None:
    winners = [[r[i] for r in results if r[i] is not None] for i in range(slots)]
    assert [len(w) for w in winners] == [1] * slots
    runs = store.list_runs("orders", "shop", limit=100)
    assert sorted(r.id for r in runs) == sorted(w[0] for w in winners)
    assert len({r.run_name for r in runs}) == slots and all(r.status == "success" for r in runs)


def test_threads_exactly_one_claim_wins_each_slot(shared_store: Store) -> None:
    slots = [T0 + i * MIN for i in range(5)]
    barrier = threading.Barrier(THREADS)
    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(claimers.claim_slots, shared_store, "orders", "shop", slots, barrier)
                   for _ in range(THREADS)]
        results = [f.result(timeout=180) for f in futures]
    assert_one_winner_per_slot(shared_store, results, len(slots))


def test_processes_exactly_one_claim_wins_each_slot(shared_store: Store, shared_url: str, spawn: Any) -> None:
    slots = [T0 + i * MIN for i in range(3)]
    results = spawn("slots", PROCESSES, (shared_url, "orders", "shop", slots))
    assert_one_winner_per_slot(shared_store, results, len(slots))


def test_threads_under_forbid_never_run_a_flow_twice_at_once(shared_store: Store) -> None:
    gauge = claimers.ThreadGauge()
    barrier = threading.Barrier(THREADS)
    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(claimers.hold_exclusively, shared_store, "orders", "shop", 25, gauge, barrier)
                   for _ in range(THREADS)]
        wins = sum(f.result(timeout=180) for f in futures)
    assert gauge.peak == 1 and wins >= 2
    assert len(shared_store.list_runs("orders", "shop", limit=1000)) == wins
    assert shared_store.active_runs("orders", "shop") == []


def test_processes_under_forbid_never_run_a_flow_twice_at_once(
    shared_store: Store, shared_url: str, spawn: Any
) -> None:
    ctx = multiprocessing.get_context("spawn")
    gauge = claimers.ProcessGauge(ctx)
    wins = sum(spawn("hold", PROCESSES, (shared_url, "orders", "shop", 25, gauge), ctx))
    assert gauge.peak == 1 and wins >= 2
    assert len(shared_store.list_runs("orders", "shop", limit=1000)) == wins
    assert shared_store.active_runs("orders", "shop") == []


# --------------------------------------------------------------------------- property

OPS = st.lists(st.tuples(st.sampled_from(["claim", "finish"]), st.integers(0, 2), st.booleans()), max_size=12)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flows=st.lists(st.sampled_from(["Forbid", "Replace", "Allow"]), min_size=1, max_size=3),
       plans=st.lists(OPS, min_size=2, max_size=5))
def test_no_forbid_flow_ever_has_two_active_runs(shared_url: str, flows: list[str], plans: list[list[Any]]) -> None:
    """Any number of claimers, flows and sequences of claims and finishes: outside ``Allow``, at most one
    run of a flow is active at any moment, and every run a claimer took is final in the end."""
    namespace = f"p{uuid.uuid4().hex[:10]}"
    store = open_store(shared_url)
    for i, policy in enumerate(flows):
        store.upsert_flow(FlowUpsert(name=f"f{i}", namespace=namespace, spec=SPEC, schedule="* * * * *",
                                     concurrency_policy=policy))
    gauges = [claimers.ThreadGauge() for _ in flows]
    barrier = threading.Barrier(len(plans))

    def claimer(plan: list[tuple[str, int, bool]]) -> None:
        held: list[tuple[int, str]] = []
        barrier.wait(timeout=60)
        for op, index, flag in plan:
            flow = index % len(flows)
            if op == "claim":
                run = store.claim(f"f{flow}", namespace, now=utcnow(), runner_id=claimers.runner_id(),
                                  lease_seconds=60, require_due=flag)
                if run is not None:
                    gauges[flow].enter()
                    held.append((flow, run.id))
            elif held:
                flow, run_id = held.pop(0)
                gauges[flow].leave()
                if flag:
                    store.start_run(run_id, now=utcnow(), lease_seconds=60)
                store.finish_run(run_id, status="success" if flag else "failed", now=utcnow(), counts=Counts())
        for flow, run_id in held:
            gauges[flow].leave()
            store.finish_run(run_id, status="failed", now=utcnow(), counts=Counts())

    try:
        with ThreadPoolExecutor(len(plans)) as pool:
            for f in [pool.submit(claimer, plan) for plan in plans]:
                f.result(timeout=120)
        for i, policy in enumerate(flows):
            if policy != "Allow":
                assert gauges[i].peak <= 1, f"flow f{i} ({policy}) had {gauges[i].peak} active runs at once"
            assert store.active_runs(f"f{i}", namespace) == []
    finally:
        store.close()


RACING = [*SHARED, pytest.param("mysql", id="mysql", marks=pytest.mark.mysql)]


@pytest.mark.parametrize("backend", RACING)
def test_claimers_finishers_and_reapers_racing_over_expiring_leases_never_deadlock(
    request: pytest.FixtureRequest, backend: str
) -> None:
    """Runners whose leases run out while reapers and new claimers take over: every operation either
    succeeds or is refused as an illegal transition (the run was reaped); nothing deadlocks or errors."""
    store = open_store(url_of(request, backend))
    for i in range(2):
        store.upsert_flow(FlowUpsert(name=f"f{i}", namespace="race", spec=SPEC, schedule="* * * * *"))
    barrier = threading.Barrier(THREADS)

    def runner(seed: int) -> int:
        refused = 0
        barrier.wait(timeout=60)
        for step in range(12):
            flow = f"f{(seed + step) % 2}"
            if (seed + step) % 4 == 0:
                store.reap_expired(utcnow())
            run = store.claim(flow, "race", now=utcnow(), runner_id=claimers.runner_id(), lease_seconds=0.02,
                              require_due=False)
            if run is None:
                continue
            try:
                store.start_run(run.id, now=utcnow(), lease_seconds=0.02)
                time.sleep(0.01 * (step % 3))  # sometimes longer than the lease
                store.renew_lease(run.id, now=utcnow(), lease_seconds=0.02)
                store.finish_run(run.id, status="success", now=utcnow(), counts=Counts(1, 1, 0))
            except IllegalTransition:
                refused += 1  # reaped or taken over meanwhile: the runner must stop, and is told so
        return refused

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            for f in [pool.submit(runner, seed) for seed in range(THREADS)]:
                f.result(timeout=180)
        store.reap_expired(utcnow() + MIN)
        for i in range(2):
            assert store.active_runs(f"f{i}", "race") == []
            runs = store.list_runs(f"f{i}", "race", limit=1000)
            assert runs and all(r.status in ("success", "failed") for r in runs)
            assert all("runner lost" in (r.error_message or "") for r in runs if r.status == "failed")
    finally:
        store.close()


# --------------------------------------------------------------------------- deadlock victims run again


@dataclass(frozen=True)
class LockProbe:
    """What a server tells about its own locks: who waits for whom, and how many deadlocks it resolved."""

    session_id: str  # the id of the calling session, as the views below name sessions
    other_setup: tuple[str, ...]  # statements for the transaction that closes the cycle
    waits_for: str  # how many transactions wait for a lock on a run row held by session :other
    poll: float  # seconds between two looks at ``waits_for``
    deadlocks: str  # the server's count of deadlocks it detected


LOCK_PROBES = {
    # INNODB_LOCK_WAITS is served from a cache that InnoDB refreshes only when nobody read it for 0.1 s
    # (CACHE_MIN_IDLE_TIME_NS in trx0i_s.cc): a faster poll would read its first snapshot forever.
    # InnoDB detects the cycle the moment it closes and rolls back the lighter transaction.
    "mysql": LockProbe(
        session_id="SELECT CONNECTION_ID()",
        other_setup=(),
        waits_for="SELECT COUNT(*) FROM information_schema.INNODB_LOCK_WAITS w "
                  "JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id "
                  "JOIN information_schema.INNODB_LOCKS l ON l.lock_id = w.requested_lock_id "
                  "WHERE b.trx_mysql_thread_id = :other AND l.lock_table LIKE '%.`runs`'",
        poll=0.15,
        deadlocks="SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'",
    ),
    # pg_locks is live. PostgreSQL looks for a cycle once per wait, deadlock_timeout (1 s) after a session
    # began to wait, and aborts the session that finds it: the other transaction's look is put off by a
    # minute, so finish_run's (which began to wait first, and sees the cycle closed within milliseconds)
    # is the one that finds it. The victim's count reaches pg_stat_database when its session next idles.
    "postgresql": LockProbe(
        session_id="SELECT pg_backend_pid()",
        other_setup=("SET LOCAL deadlock_timeout = '60s'",),
        waits_for="SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                  "AND CAST(:other AS integer) = ANY(pg_blocking_pids(pid))",
        poll=0.01,
        deadlocks="SELECT 'deadlocks', deadlocks FROM pg_stat_database WHERE datname = current_database()",
    ),
}


@pytest.mark.parametrize("backend", [pytest.param("mysql", marks=pytest.mark.mysql),
                                     pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_store_transaction_chosen_as_deadlock_victim_runs_again(
    request: pytest.FixtureRequest, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A real deadlock: another transaction locks the run row, finish_run locks the flow row and waits
    for the run row (seen in the server's lock views), then the other asks for the flow row. The server
    counts one deadlock and rolls finish_run's transaction back (on InnoDB the lighter one: the other
    wrote 200 rows first); the store runs finish_run again, once, and the run ends exactly once."""
    import sqlalchemy as sa

    probe = LOCK_PROBES[backend]
    url = url_of(request, backend)
    store = open_store(url)
    engine = sa.create_engine(url)
    watch = sa.create_engine(url, isolation_level="AUTOCOMMIT").connect()  # every look sees the server now
    caplog.set_level(logging.DEBUG, logger="activedataflow.store")

    def deadlocks() -> int:
        return int(watch.execute(sa.text(probe.deadlocks)).one()[1])

    try:
        store.upsert_flow(FlowUpsert(name="dl", namespace="race", spec=SPEC, schedule="* * * * *"))
        run = store.claim("dl", "race", now=utcnow(), runner_id="r1", lease_seconds=60, require_due=False)
        assert run is not None
        store.start_run(run.id, now=utcnow(), lease_seconds=60)
        with engine.connect() as c:
            flow_id = c.execute(sa.text("SELECT flow_id FROM runs WHERE id = :id"), {"id": int(run.id)}).scalar_one()
            c.execute(sa.text("CREATE TABLE IF NOT EXISTS dl_weight (n INT)"))
            c.commit()
        before = deadlocks()
        finished: dict[str, Any] = {}
        returned = threading.Event()

        def finish() -> None:
            try:
                finished["run"] = store.finish_run(run.id, status="success", now=utcnow(), counts=Counts(3, 3, 0))
            except Exception as err:
                finished["error"] = err
            finally:
                returned.set()

        finisher = threading.Thread(target=finish)
        with engine.connect() as other, other.begin():  # run row first, then flow row: the store's order reversed
            session = other.execute(sa.text(probe.session_id)).scalar_one()
            for statement in probe.other_setup:
                other.execute(sa.text(statement))
            other.execute(sa.text("INSERT INTO dl_weight VALUES " + ",".join(f"({i})" for i in range(200))))
            other.execute(sa.text("SELECT id FROM runs WHERE id = :id FOR UPDATE"), {"id": int(run.id)})
            finisher.start()
            while watch.execute(sa.text(probe.waits_for), {"other": session}).scalar_one() == 0:
                assert not returned.wait(probe.poll), f"finish_run never waited for the run row: {finished}"
            other.execute(sa.text("SELECT id FROM flows WHERE id = :id FOR UPDATE"), {"id": flow_id})
        finisher.join()

        assert "error" not in finished, finished
        assert finished["run"].status == "success" and finished["run"].records_written == 3
        retried = [r.getMessage() for r in caplog.records if r.name == "activedataflow.store"]
        assert len(retried) == 1 and retried[0].startswith("store finish_run lost a deadlock (attempt 1 of 5)")
        while (after := deadlocks()) == before:  # PostgreSQL: until the victim's session reports its count
            time.sleep(0.05)
        assert after == before + 1
        assert [(r.status, r.records_written) for r in store.list_runs("dl", "race")] == [("success", 3)]
    finally:
        watch.close()
        with engine.connect() as c:
            c.execute(sa.text("DROP TABLE IF EXISTS dl_weight"))
            c.commit()
        engine.dispose()
        store.close()


def test_only_deadlocks_are_retried() -> None:
    import sqlalchemy as sa
    from activedataflow.store.sql import DEADLOCK_ATTEMPTS, retry_deadlocks

    class Orig(Exception):
        def __init__(self, code: int) -> None:
            super().__init__(code, "message")

    calls: list[int] = []

    @retry_deadlocks
    def op(code: int, fail_times: int) -> str:
        calls.append(code)
        if len(calls) <= fail_times:
            raise sa.exc.OperationalError("UPDATE runs ...", {}, Orig(code))
        return "done"

    assert op(1213, 2) == "done" and len(calls) == 3  # deadlock victim twice, then through
    calls.clear()
    with pytest.raises(sa.exc.OperationalError):
        op(1205, 1)  # a lock wait timeout is not a deadlock: reported, not hidden
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(sa.exc.OperationalError):
        op(1213, DEADLOCK_ATTEMPTS)  # a deadlock every time: given up after DEADLOCK_ATTEMPTS
    assert len(calls) == DEADLOCK_ATTEMPTS
