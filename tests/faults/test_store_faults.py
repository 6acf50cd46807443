"""The fault matrix, store cells: the store (PostgreSQL, Redis) cut in claim, lease renewal, cursor commit, finish.

The source and sink are SQLite files next to the test; only the store goes through the proxy. A
runner that cannot reach the store cannot record anything: it gives up with an error naming the
store (the CLI's exit 2), its run stays active until its lease lapses, and the next runner fails it
as lost and runs the flow again from the committed cursor.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from activedataflow.errors import StoreUnavailable
from activedataflow.runner.executor import FlowExecutor
from activedataflow.store import open_store
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from tests.faults.conftest import make_proxy
from tests.faults.inject import MODES, Hooks, Injector
from tests.faults.invariants import Cell, create_tables, manifest, source_rows
from tests.faults.toxiproxy import Proxy, Toxiproxy

LEASE_SECONDS = 1.0  # renewed every third of it: a renewal falls inside every run
FIRED_DEADLINE = 30.0  # a guard: the run waits for the renewal fault, which comes within a third of the lease
_examples = itertools.count()
EXAMPLES = settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
STORE_METHODS = ("claim", "start_run", "renew_lease", "update_counts", "commit_cursor", "finish_run")


def run_store_cell(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch, proxy: Proxy, store_url: str, src: str, tmp_path: Path, *,
    phase: str, at: int, mode: Any, transaction: str, match: Any = None,
) -> Cell:
    """``src``: the source database, reached directly (PostgreSQL to SQLite: the row path, never push-down)."""
    rows = source_rows()
    n = next(_examples)
    sink = f"sqlite:///{tmp_path / f'sink{n}.db'}"
    create_tables(src, sink, rows)
    store = open_store(store_url)
    try:
        flow = manifest(f"f{n}", src, sink, transaction=transaction, src_batch=9, sink_batch=4)
        cell = Cell(flow, store, src, sink, f"127.0.0.1:{proxy.port}", rows)
        executor = FlowExecutor(store, lease_seconds=LEASE_SECONDS)
        record = executor.register(flow)
        injector = Injector(proxy, at, mode, phase=phase, **({"match": match} if match else {}))
        hooks.phases(monkeypatch, store, *STORE_METHODS)
        if phase == "renew_lease":  # the run goes on once a renewal has met the fault
            counts = store.update_counts

            def update_counts(*args: Any, **kwargs: Any) -> None:
                injector.done.wait(FIRED_DEADLINE)
                counts(*args, **kwargs)

            monkeypatch.setattr(store, "update_counts", update_counts)
        hooks.injector = injector
        succeeded = False
        try:
            faulted = executor.run(record, force=True)
            assert faulted.run is not None
            succeeded = faulted.run.status == "success"
        except StoreUnavailable as err:
            cell.check_unreachable(err)
        finally:
            hooks.injector = None
            proxy.restore()
        if currently_in_test_context():
            met = "met" if injector.fired.is_set() else "not reached"
            event(f"{mode} {met}; run {'succeeded' if succeeded else 'not recorded as a success'}")
        if phase == "renew_lease" or match is not None:
            assert injector.fired.is_set(), f"no request of {phase} met the fault"
        cell.check(converged=succeeded)
        cell.wait_out_leases()
        again = executor.run(record, force=True)
        assert again.run is not None and again.run.status == "success", (again.skipped, again.run)
        cell.check(converged=True)
        return cell
    finally:
        store.close()


PHASES = pytest.mark.parametrize("phase", ["claim", "renew_lease", "commit_cursor", "finish_run"])
store_points = dict(
    at=st.integers(0, 5),  # a store call is 3-8 requests on PostgreSQL, 2-6 on Redis
    mode=st.sampled_from(MODES),
    transaction=st.sampled_from(["batch", "run", "none"]),
)


@pytest.mark.postgres
@PHASES
@given(**store_points)
@EXAMPLES
def test_postgresql_store_cut(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch, toxiproxy: Toxiproxy, proxies: list[Proxy], pg_url: str,
    tmp_path: Path, phase: str, at: int, mode: Any, transaction: str,
) -> None:
    if not proxies:
        proxies.append(make_proxy(toxiproxy, pg_url)[0])
    proxy = proxies[0]
    url = sa.make_url(pg_url).set(host="127.0.0.1", port=proxy.port)
    run_store_cell(hooks, monkeypatch, proxy, url.render_as_string(hide_password=False), pg_url, tmp_path,
                   phase=phase,
                   at=at, mode=mode, transaction=transaction)


@pytest.mark.redis
@pytest.mark.postgres
@PHASES
@given(**store_points)
@EXAMPLES
def test_redis_store_cut(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch, toxiproxy: Toxiproxy, proxies: list[Proxy], redis_url: str,
    pg_url: str, tmp_path: Path, phase: str, at: int, mode: Any, transaction: str,
) -> None:
    if not proxies:
        proxies.append(make_proxy(toxiproxy, redis_url)[0])
    proxy = proxies[0]
    run_store_cell(hooks, monkeypatch, proxy, f"redis://127.0.0.1:{proxy.port}/0", pg_url, tmp_path, phase=phase,
                   at=at, mode=mode, transaction=transaction)



def is_commit(text: str) -> bool:
    return text == "COMMIT" or "EXEC" in text.upper().split()  # PostgreSQL's COMMIT, Redis's MULTI ... EXEC


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("backend", ["postgresql", "redis"])
def test_finish_run_committed_but_its_answer_lost(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch, toxiproxy: Toxiproxy, proxies: list[Proxy], pg_url: str,
    redis_url: str, tmp_path: Path, backend: str,
) -> None:
    """The store commits the finished run, the runner never hears back: it must find its run finished,
    not fail it a second time or crash."""
    proxy, url = make_proxy(toxiproxy, pg_url if backend == "postgresql" else redis_url)
    proxies.append(proxy)
    run_store_cell(hooks, monkeypatch, proxy, url, pg_url, tmp_path, phase="finish_run", at=0,
                   mode="ack_lost", transaction="batch", match=is_commit)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("backend", ["postgresql", "redis"])
def test_a_store_blip_at_finish_run_does_not_fail_a_run_that_moved_its_rows(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch, toxiproxy: Toxiproxy, proxies: list[Proxy], pg_url: str,
    redis_url: str, tmp_path: Path, backend: str,
) -> None:
    """Every connection to the store dies just before finish_run's first statement; the store answers
    again at once. The run is finished as a success (once), not failed for the blip."""
    proxy, url = make_proxy(toxiproxy, pg_url if backend == "postgresql" else redis_url)
    proxies.append(proxy)
    first_statement = 1 if backend == "postgresql" else 0  # PostgreSQL's pool pings first (and heals that)
    cell = run_store_cell(hooks, monkeypatch, proxy, url, pg_url, tmp_path, phase="finish_run",
                          at=first_statement, mode="reset", transaction="batch")
    runs = cell.store.list_runs(cell.flow.name, cell.flow.namespace)
    assert [r.status for r in runs] == ["success", "success"], [(r.status, r.error_message) for r in runs]
