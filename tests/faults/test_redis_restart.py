"""The fault matrix, Redis store restarted without persistence: every flow, run and cursor is gone.

The operator's resync registers the flow again (``register_flow``, what ``reconcile_flow`` does every
resync); its cursor is gone with it, so the next run reads the source from the start, and upsert
writes each row once. A runner whose store was emptied under it stops in bounded time with an error
naming the store, and leaves no half-made record behind.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from activedataflow.errors import UserError
from activedataflow.runner.executor import FlowExecutor
from activedataflow.store import open_store
from activedataflow.store.base import UnknownRun
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.faults.conftest import make_proxy
from tests.faults.inject import Hooks, Injector
from tests.faults.invariants import Cell, create_tables, manifest, source_rows
from tests.faults.toxiproxy import Proxy, Toxiproxy
from tests.services import free_port, missing, wait_port

_examples = itertools.count()


class Redis:
    """A Redis server of this test's own, without persistence, that it can restart on the same port."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if not exe:
            missing("Redis (Debian package redis-server)")
        self.exe, self.port = str(exe), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def own_redis() -> Iterator[Redis]:
    server = Redis()
    server.start()
    yield server
    server.stop()


@pytest.mark.redis
@pytest.mark.postgres
@given(at=st.integers(0, 40), transaction=st.sampled_from(["batch", "run", "none"]))
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_redis_store_restarted_without_persistence_during_a_run(
    hooks: Hooks, toxiproxy: Toxiproxy, proxies: list[Proxy], own_redis: Redis, pg_url: str, tmp_path: Path,
    at: int, transaction: str,
) -> None:
    if not proxies:
        proxies.append(make_proxy(toxiproxy, f"redis://127.0.0.1:{own_redis.port}/0")[0])
    proxy = proxies[0]
    rows = source_rows()
    n = next(_examples)
    sink = f"sqlite:///{tmp_path / f'sink{n}.db'}"
    create_tables(pg_url, sink, rows)
    store = open_store(f"redis://127.0.0.1:{proxy.port}/0")
    try:
        flow = manifest(f"f{n}", pg_url, sink, transaction=transaction, src_batch=9, sink_batch=4)
        cell = Cell(flow, store, pg_url, sink, f"127.0.0.1:{proxy.port}", rows)
        executor = FlowExecutor(store, lease_seconds=1.0)
        first = cell.run(executor)
        assert first.run is not None and first.run.status == "success"
        injector = Injector(proxy, at, "call", action=own_redis.restart)
        hooks.injector = injector
        try:
            executor.run(executor.register(flow), force=True)
        except UserError as err:  # the store lost the run under its runner: named, bounded
            assert cell.address in str(err), str(err)
        except UnknownRun as err:
            pytest.fail(f"the runner crashed on its vanished run: {err!r}")
        finally:
            hooks.injector = None
        # no half-made record left behind (a flow hash holding only a cursor, a run without its flow)
        assert all(f.spec for f in store.list_flows())
        store.list_runs()
        again = cell.run(executor)  # registered again, as the operator's resync does
        assert again.run is not None and again.run.status == "success", (again.skipped, again.run)
        cell.check(converged=True)
    finally:
        store.close()
