"""The fault matrix, source and sink cells: a real TCP fault between the runner and the database.

Each example arms one fault (hypothesis picks the request it hits and how: the connection cut and
kept down, reset once, or the answer lost after the server acted), runs the flow into the fault,
checks the invariants, lets the service back, runs the flow again and checks that it converged.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from activedataflow.runner.executor import FlowExecutor
from activedataflow.store import open_store
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.faults.conftest import make_proxy
from tests.faults.inject import MODES, Hooks, Injector
from tests.faults.invariants import Cell, create_tables, manifest, source_rows
from tests.faults.toxiproxy import Proxy, Toxiproxy

_examples = itertools.count()
EXAMPLES = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

fault_points = dict(
    at=st.integers(0, 14),
    mode=st.sampled_from(MODES),
    transaction=st.sampled_from(["batch", "run", "none"]),
    src_batch=st.integers(3, 11),
    sink_batch=st.integers(2, 9),
)


def run_cell(
    hooks: Hooks, proxy: Proxy, *, src_url: str, sink_url: str, direct_src: str, direct_sink: str, store_url: str,
    injector: Injector, transaction: str, src_batch: int, sink_batch: int, address: str | None = None,
    settle: Callable[[], None] | None = None,
) -> Cell:
    """One example: the faulted run, the invariants, the service back, the converging run, the invariants.

    ``address``: what a failed run must name (default: the proxy's); ``settle``: what ends the fault
    besides the proxy's restore (another writer letting go of its lock)."""
    rows = source_rows()
    create_tables(direct_src, direct_sink, rows)
    store = open_store(store_url)
    try:
        flow = manifest(f"f{next(_examples)}", src_url, sink_url, transaction=transaction, src_batch=src_batch,
                        sink_batch=sink_batch)
        cell = Cell(flow, store, direct_src, direct_sink, address or f"127.0.0.1:{proxy.port}", rows)
        executor = FlowExecutor(store)
        hooks.injector = injector
        try:
            faulted = cell.run(executor)
        finally:
            hooks.injector = None
            proxy.restore()
            if settle is not None:
                settle()
        assert faulted.run is not None
        event(f"fault {'met' if injector.fired.is_set() else 'not reached'}; run {faulted.run.status}")
        # a fault may hit a request whose failure changes nothing (the pool's ROLLBACK of a connection
        # given back, PyMySQL's COM_QUIT): the run may succeed, the invariants must hold either way
        cell.check(converged=faulted.run.status == "success")
        again = cell.run(executor)
        assert again.run is not None and again.run.status == "success", again.run and again.run.error_message
        cell.check(converged=True)
        return cell
    finally:
        store.close()


@pytest.mark.postgres
@given(**fault_points)
@EXAMPLES
def test_source_postgresql_cut_mid_read(
    hooks: Hooks, toxiproxy: Toxiproxy, proxies: list[Proxy], pg_url: str, tmp_path: Path,
    at: int, mode: Any, transaction: str, src_batch: int, sink_batch: int,
) -> None:
    if not proxies:
        proxies.append(make_proxy(toxiproxy, pg_url)[0])
    proxy = proxies[0]
    sink = f"sqlite:///{tmp_path / 'sink.db'}"
    run_cell(
        hooks, proxy, src_url=make_url_via(pg_url, proxy), sink_url=sink, direct_src=pg_url, direct_sink=sink,
        store_url=f"sqlite:///{tmp_path / 'store.db'}", injector=Injector(proxy, at, mode),
        transaction=transaction, src_batch=src_batch, sink_batch=sink_batch,
    )


def make_url_via(url: str, proxy: Proxy) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


copy_batches = dict(src_batch=st.integers(26, 45), sink_batch=st.sampled_from([5, 17, 20, 25, 30]))


def _sink_cell(hooks: Hooks, toxiproxy: Toxiproxy, proxies: list[Proxy], url: str, tmp_path: Path,
               injector_for: Any, transaction: str, src_batch: int, sink_batch: int) -> None:
    if not proxies:
        proxies.append(make_proxy(toxiproxy, url)[0])
    proxy = proxies[0]
    src = f"sqlite:///{tmp_path / 'src.db'}"
    run_cell(
        hooks, proxy, src_url=src, sink_url=make_url_via(url, proxy), direct_src=src, direct_sink=url,
        store_url=f"sqlite:///{tmp_path / 'store.db'}", injector=injector_for(proxy),
        transaction=transaction, src_batch=src_batch, sink_batch=sink_batch,
    )


@pytest.mark.postgres
@given(at=st.integers(0, 24), mode=st.sampled_from(MODES), transaction=fault_points["transaction"], **copy_batches)
@EXAMPLES
def test_sink_postgresql_cut_mid_batch(
    hooks: Hooks, toxiproxy: Toxiproxy, proxies: list[Proxy], pg_url: str, tmp_path: Path,
    at: int, mode: Any, transaction: str, src_batch: int, sink_batch: int,
) -> None:
    _sink_cell(hooks, toxiproxy, proxies, pg_url, tmp_path, lambda p: Injector(p, at, mode), transaction,
               src_batch, sink_batch)


def is_merge(text: str) -> bool:
    return text.startswith("INSERT INTO") and "adf_stage_" in text


@pytest.mark.postgres
@given(at=st.integers(0, 1), mode=st.sampled_from(MODES), transaction=fault_points["transaction"],
       src_batch=st.integers(26, 45), sink_batch=st.sampled_from([17, 20, 25, 30]))
@EXAMPLES
def test_sink_postgresql_cut_during_the_merge(
    hooks: Hooks, toxiproxy: Toxiproxy, proxies: list[Proxy], pg_url: str, tmp_path: Path,
    at: int, mode: Any, transaction: str, src_batch: int, sink_batch: int,
) -> None:
    injectors: list[Injector] = []

    def injector(proxy: Proxy) -> Injector:
        injectors.append(Injector(proxy, at, mode, match=is_merge))
        return injectors[-1]

    _sink_cell(hooks, toxiproxy, proxies, pg_url, tmp_path, injector, transaction, src_batch, sink_batch)
    assert injectors[0].seen, "no merge statement went through the proxy (the COPY path was not taken)"


@pytest.mark.mysql
@given(**fault_points)
@EXAMPLES
def test_sink_mariadb_cut_mid_batch(
    hooks: Hooks, toxiproxy: Toxiproxy, proxies: list[Proxy], mysql_url: str, tmp_path: Path,
    at: int, mode: Any, transaction: str, src_batch: int, sink_batch: int,
) -> None:
    _sink_cell(hooks, toxiproxy, proxies, mysql_url, tmp_path, lambda p: Injector(p, at, mode), transaction,
               src_batch, sink_batch)


@pytest.mark.postgres
@given(at=st.integers(0, 12), transaction=fault_points["transaction"], src_batch=st.integers(3, 11),
       sink_batch=st.integers(2, 9))
@EXAMPLES
def test_sqlite_sink_locked_by_another_writer(
    hooks: Hooks, toxiproxy: Toxiproxy, proxies: list[Proxy], pg_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, at: int, transaction: str, src_batch: int, sink_batch: int,
) -> None:
    """Another writer takes the sink file's write lock when the runner sends its ``at``-th source request
    and holds it until the run is over; the runner waits its busy timeout (shortened here) and fails."""
    from activedataflow.runner.connectors import sql

    monkeypatch.setattr(sql.engine, "SQLITE_BUSY_TIMEOUT_SECONDS", 0.2)
    if not proxies:
        proxies.append(make_proxy(toxiproxy, pg_url)[0])
    proxy = proxies[0]
    sink_path = tmp_path / "sink.db"
    sink = f"sqlite:///{sink_path}"
    holder: list[sqlite3.Connection] = []
    taken = threading.Event()

    def take_the_lock() -> None:
        other = sqlite3.connect(sink_path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN EXCLUSIVE")
        holder.append(other)
        taken.set()

    def let_go() -> None:
        for other in holder:
            other.rollback()

    injector = Injector(proxy, at, "call", action=take_the_lock)
    try:
        cell = run_cell(
            hooks, proxy, src_url=make_url_via(pg_url, proxy), sink_url=sink, direct_src=pg_url, direct_sink=sink,
            store_url=f"sqlite:///{tmp_path / 'store.db'}", injector=injector, transaction=transaction,
            src_batch=src_batch, sink_batch=sink_batch, address=f"SQLite database {sink_path}", settle=let_go,
        )
    finally:
        for other in holder:
            other.close()
    faulted = cell.store.list_runs(cell.flow.name, cell.flow.namespace)[1]
    event(f"lock {'taken' if taken.is_set() else 'not taken'}; run {faulted.status}")
    if faulted.status == "failed":  # a lock taken after the last write changes nothing
        assert "database is locked" in (faulted.error_message or ""), faulted.error_message
