"""spec.notify against a real HTTP receiver on 127.0.0.1: events, payload, retries, bounds, at most once."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from activedataflow.model import DataFlow, parse_dataflow
from activedataflow.runner.executor import FlowExecutor
from activedataflow.runner.heartbeat import heartbeat
from activedataflow.runner.notify import Notifier
from activedataflow.schedule import utcnow
from activedataflow.store import FlowRecord, RunRecord, Store, open_store

from tests.flows import dataflow, sql_sink, sql_source
from tests.runner.stores import StoreWith
from tests.secrets_scan import register_secret

TOKEN = "XyZzYSeCrEtToKeN0123"  # the credential part of a Slack-style webhook URL
register_secret(TOKEN)


class Receiver:
    """A webhook receiver: answers with the next of ``statuses`` (then 200); with ``hang``, only once released
    (by :meth:`close`): a notifier that waited for that answer would hold its run until the test ends."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.statuses: list[int] = []
        self.hang = False
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.paths.append(self.path)
                receiver.bodies.append(json.loads(body))
                if receiver.hang:
                    receiver.released.wait(60)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the notifier gave up waiting (the hanging receiver)
                    pass

            def log_message(self, *args: Any) -> None:  # not on stderr: the tests scan it
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T000/B000/{TOKEN}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    r = Receiver()
    monkeypatch.setenv("ADF_SECRET_ALERTS_URL", r.url)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture(params=["sqlite", "memory"])
def store_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


FAST = Notifier(timeout=0.5, backoff=0.05, deadline=3.0)


def make_flow(tmp_path: Path, on: list[str] | None = None, *, retries: int = 0) -> DataFlow:
    notify: dict[str, Any] = {"webhook": {"secretRef": {"name": "alerts", "key": "url"}}}
    if on is not None:
        notify["on"] = on
    sqlite3.connect(tmp_path / "dst.db").close()
    return dataflow(name="orders", namespace="shop", runtime={"retries": {"limit": retries, "backoffSeconds": 0}},
                    source=sql_source(f"sqlite:///{tmp_path}/src.db"), sink=sql_sink(f"sqlite:///{tmp_path}/dst.db"),
                    notify=[notify])


def make_source(tmp_path: Path, rows: int = 3) -> None:
    with sqlite3.connect(tmp_path / "src.db") as db:
        db.execute("CREATE TABLE IF NOT EXISTS src (id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT OR IGNORE INTO src VALUES (?, ?)", [(i, f"n{i}") for i in range(rows)])
    with sqlite3.connect(tmp_path / "dst.db") as db:
        db.execute("CREATE TABLE IF NOT EXISTS dst (id INTEGER, name TEXT)")


def run_now(executor: FlowExecutor, flow: DataFlow) -> Any:
    record: FlowRecord = executor.register(flow)
    outcome = executor.run(record, trigger="manual", force=True)
    assert outcome.run is not None
    return outcome.run


def test_failure_recovery_and_success_one_notification_each(tmp_path: Path, store: Store, receiver: Receiver) -> None:
    flow = make_flow(tmp_path)  # default: failure and recovery
    executor = FlowExecutor(store, notifier=FAST)
    failed = run_now(executor, flow)  # no source table yet
    assert failed.status == "failed"
    assert [b["event"] for b in receiver.bodies] == ["failure"]
    make_source(tmp_path)
    assert run_now(executor, flow).status == "success"
    assert [b["event"] for b in receiver.bodies] == ["failure", "recovery"]
    assert run_now(executor, flow).status == "success"  # a success after a success: not asked for
    assert [b["event"] for b in receiver.bodies] == ["failure", "recovery"]
    assert receiver.paths == [f"/services/T000/B000/{TOKEN}"] * 2

    every = make_flow(tmp_path, ["success"])
    assert run_now(executor, every).status == "success"
    assert [b["event"] for b in receiver.bodies] == ["failure", "recovery", "success"]


def test_the_payload_is_slack_compatible_with_the_runs_facts(
    tmp_path: Path, store: Store, receiver: Receiver
) -> None:
    flow = make_flow(tmp_path)
    run = run_now(FlowExecutor(store, notifier=FAST), flow)
    (body,) = receiver.bodies
    assert isinstance(body["text"], str) and "DataFlow shop/orders failed" in body["text"]
    assert run.run_name in body["text"] and "Error: " in body["text"]
    assert {k: body[k] for k in ("event", "flow", "namespace", "run", "runId", "result", "attempt", "trigger")} == {
        "event": "failure", "flow": "orders", "namespace": "shop", "run": run.run_name, "runId": run.id,
        "result": "failed", "attempt": 1, "trigger": "manual",
    }
    assert (body["recordsRead"], body["recordsWritten"], body["recordsFailed"]) == (0, 0, 0)
    assert "src" in body["error"] and body["error"] == run.error_message[:500]
    assert isinstance(body["durationSeconds"], float) and body["finishedAt"] and body["startedAt"]

    make_source(tmp_path, rows=4)
    run_now(FlowExecutor(store, notifier=FAST), flow)
    ok = receiver.bodies[-1]
    assert (ok["event"], ok["result"], ok["error"]) == ("recovery", "succeeded", None)
    assert (ok["recordsRead"], ok["recordsWritten"], ok["recordsFailed"]) == (4, 4, 0)
    assert "recovered" in ok["text"] and "Error" not in ok["text"]


def test_a_retried_attempt_is_not_a_failure_nor_its_success_a_recovery(
    tmp_path: Path, store: Store, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = make_flow(tmp_path, ["failure", "recovery"], retries=1)
    executor = FlowExecutor(store, notifier=FAST, sleep=lambda s: make_source(tmp_path))  # fixed before attempt 2
    run = run_now(executor, flow)
    assert (run.status, run.attempt) == ("success", 2)
    assert receiver.bodies == []


def test_nothing_is_sent_while_the_flow_is_suspended(tmp_path: Path, store: Store, receiver: Receiver) -> None:
    flow = make_flow(tmp_path)
    executor = FlowExecutor(store, notifier=FAST)
    record = executor.register(flow)
    store.set_enabled(record.name, record.namespace, False)  # suspended (the operator sets this from spec.suspend)
    outcome = executor.run(record, trigger="manual", force=True)
    assert outcome.run is None or outcome.run.status == "failed"
    assert receiver.bodies == []
    # a run that finished while the flow was being suspended: not told either, and not marked
    store.set_enabled(record.name, record.namespace, True)
    run = run_now(executor, flow)
    receiver.bodies.clear()
    store.set_enabled(record.name, record.namespace, False)
    assert FlowExecutor(store, notifier=FAST).notify(flow, store.get_run(run.id)) == 0  # type: ignore[arg-type]
    assert receiver.bodies == []
    suspended = parse_dataflow({**flow.model_dump(mode="json", by_alias=True, exclude_none=True),
                                "spec": {**flow.spec_dict(), "suspend": True}})
    store.set_enabled(record.name, record.namespace, True)
    assert FlowExecutor(store, notifier=FAST).notify(suspended, store.get_run(run.id)) == 0  # type: ignore[arg-type]
    assert receiver.bodies == []


def test_no_duplicate_when_a_second_runner_handles_the_same_finished_run(
    tmp_path: Path, store: Store, store_url: str, receiver: Receiver
) -> None:
    flow = make_flow(tmp_path)
    first = FlowExecutor(store, notifier=FAST)
    run = run_now(first, flow)
    assert len(receiver.bodies) == 1
    again = open_store(store_url)  # the restarted runner: its own store handle
    try:
        second = FlowExecutor(again, notifier=FAST)
        finished = again.get_run(run.id)
        assert finished is not None
        assert second.notify(flow, finished) == 0
        assert first.notify(flow, finished) == 0
        record = again.get_flow("orders", "shop")
        assert record is not None
        outcome = second.run(record, trigger="manual", force=True, run_name=run.run_name, resume=True)
        assert outcome.skipped and not outcome.attempts  # failed for good: left alone
    finally:
        again.close()
    assert len(receiver.bodies) == 1


def run_of_a_dead_runner(store: Store, flow: DataFlow, *, next_run_at: datetime | None = None) -> RunRecord:
    """A run whose runner died ten minutes ago: claimed and started with a 60 s lease, never renewed."""
    then = utcnow() - timedelta(minutes=10)
    run = store.claim(flow.name, flow.namespace, now=then, runner_id="dead", lease_seconds=60, run_name="orders-dead",
                      scheduled_for=then, next_run_at=next_run_at, require_due=False)
    assert run is not None
    return store.start_run(run.id, now=then, lease_seconds=60)


def told(receiver: Receiver) -> list[tuple[str, str]]:
    return [(b["event"], b["runId"]) for b in receiver.bodies]


def test_a_run_whose_runner_died_is_told_of_once_when_a_heartbeat_reaps_it(
    tmp_path: Path, store: Store, receiver: Receiver
) -> None:
    make_source(tmp_path)
    flow = make_flow(tmp_path)
    executor = FlowExecutor(store, notifier=FAST)
    executor.register(flow)
    lost = run_of_a_dead_runner(store, flow)
    result = heartbeat(executor)
    (outcome,) = result.outcomes
    assert result.reaped == 1 and outcome.run is not None and outcome.run.status == "success"
    assert told(receiver) == [("failure", lost.id), ("recovery", outcome.run.id)]
    assert receiver.bodies[0]["error"].startswith("runner lost")
    heartbeat(executor)  # nothing due, nothing reaped
    heartbeat(FlowExecutor(store, notifier=FAST))  # another runner
    assert len(receiver.bodies) == 2


def test_two_runners_reaping_a_lost_run_at_once_tell_of_it_once(
    tmp_path: Path, store: Store, store_url: str, receiver: Receiver
) -> None:
    make_source(tmp_path)
    flow = make_flow(tmp_path)
    FlowExecutor(store, notifier=FAST).register(flow)
    lost = run_of_a_dead_runner(store, flow)
    other = open_store(store_url)
    barrier = threading.Barrier(2)

    def beat(on: Store) -> int:
        barrier.wait(timeout=30)
        return heartbeat(FlowExecutor(on, notifier=FAST)).reaped

    try:
        with ThreadPoolExecutor(2) as pool:
            reaped = [f.result(timeout=120) for f in [pool.submit(beat, s) for s in (store, other)]]
    finally:
        other.close()
    assert sorted(reaped) == [0, 1]
    assert [event for event, run_id in told(receiver) if run_id == lost.id] == ["failure"]


def test_a_lost_run_reaped_by_a_runner_that_died_is_told_of_by_the_next_run(
    tmp_path: Path, store: Store, receiver: Receiver
) -> None:
    flow = make_flow(tmp_path)
    executor = FlowExecutor(store, notifier=FAST)
    executor.register(flow)
    lost = run_of_a_dead_runner(store, flow)
    assert [r.id for r in store.reap_expired(utcnow())] == [lost.id]  # its reaper died before it told anyone
    assert receiver.bodies == []
    make_source(tmp_path)
    run = run_now(executor, flow)
    assert told(receiver) == [("failure", lost.id), ("recovery", run.id)]
    run_now(executor, flow)
    assert len(receiver.bodies) == 2


def test_a_lost_run_its_slots_next_attempt_takes_over_is_told_of_by_that_attempt_only(
    tmp_path: Path, store: Store, receiver: Receiver
) -> None:
    flow = make_flow(tmp_path)  # no source table: the take-over fails too
    executor = FlowExecutor(store, notifier=FAST)
    executor.register(flow)
    lost = run_of_a_dead_runner(store, flow, next_run_at=utcnow() + timedelta(hours=1))  # not due: a Job's Pod died
    (outcome,) = heartbeat(executor, flow="orders", namespace="shop").outcomes  # its replacement Pod
    assert outcome.run is not None and (outcome.run.attempt, outcome.run.status) == (2, "failed")
    assert told(receiver) == [("failure", outcome.run.id)]
    assert store.get_run(lost.id).status == "failed"  # type: ignore[union-attr]


def test_a_receiver_failing_twice_gets_it_on_the_third_try(tmp_path: Path, store: Store, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    slept: list[float] = []
    notifier = Notifier(sleep=slept.append)
    run = run_now(FlowExecutor(store, notifier=notifier), make_flow(tmp_path))
    assert run.status == "failed"
    assert [b["event"] for b in receiver.bodies] == ["failure"] * 3  # the same message, delivered the third time
    assert slept == [0.5, 1.0]


def test_a_client_error_is_not_retried(tmp_path: Path, store: Store, receiver: Receiver) -> None:
    receiver.statuses = [404]
    run_now(FlowExecutor(store, notifier=FAST), make_flow(tmp_path))
    assert len(receiver.bodies) == 1


def test_a_receiver_that_never_answers_does_not_hold_the_run(
    tmp_path: Path, store: Store, receiver: Receiver
) -> None:
    receiver.hang = True
    make_source(tmp_path)
    notifier = Notifier(tries=2, timeout=0.5, backoff=0.05, deadline=3.0)
    run = run_now(FlowExecutor(store, notifier=notifier), make_flow(tmp_path, ["success"]))
    assert run.status == "success"
    assert store.get_run(run.id).status == "success"  # type: ignore[union-attr]
    assert len(receiver.bodies) == 2  # each try gave up waiting: one that waited would have got the 200


def test_the_default_bounds_stay_within_ten_seconds() -> None:
    n = Notifier()
    worst = n.tries * 2 * n.timeout + sum(n.backoff * 2**i for i in range(n.tries - 1))  # connect + read per try
    assert n.deadline <= 10.0 and n.tries == 3 and n.timeout <= 2.5
    assert min(worst, n.deadline) <= 10.0


def test_an_unreachable_or_missing_webhook_never_fails_the_run(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("ADF_SECRET_ALERTS_URL", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    make_source(tmp_path)
    with caplog.at_level(logging.INFO, logger="activedataflow"):
        assert run_now(FlowExecutor(store, notifier=FAST), make_flow(tmp_path, ["success"])).status == "success"
    assert "ADF_SECRET_ALERTS_URL" in caplog.text  # says what to set

    closed = Receiver()
    url = closed.url
    closed.close()  # nothing listens there any more
    monkeypatch.setenv("ADF_SECRET_ALERTS_URL", url)
    assert run_now(FlowExecutor(store, notifier=FAST), make_flow(tmp_path, ["success"])).status == "success"


def test_the_url_never_appears_in_logs_or_output(
    tmp_path: Path, store: Store, receiver: Receiver, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with caplog.at_level(logging.DEBUG):
        receiver.statuses = [500, 500, 500, 404]
        run_now(FlowExecutor(store, notifier=FAST), make_flow(tmp_path))  # not delivered after 3 tries
        make_source(tmp_path)
        run_now(FlowExecutor(store, notifier=FAST), make_flow(tmp_path))  # refused: 404
        receiver.hang = True
        run_now(FlowExecutor(store, notifier=Notifier(tries=1, timeout=0.3, deadline=1.0)),
                make_flow(tmp_path, ["success"]))  # timed out
        receiver.close()
        run_now(FlowExecutor(store, notifier=FAST), make_flow(tmp_path, ["success"]))  # connection refused
    out = capsys.readouterr()
    seen = caplog.text + out.out + out.err + "".join(str(r.args) + str(r.msg) for r in caplog.records)
    assert "not delivered after 3 tries" in seen and "HTTP 404" in seen
    for secret in (TOKEN, receiver.url, "/services/T000", f":{receiver.server.server_port}"):
        assert secret not in seen


def test_adf_run_notifies_and_prints_no_url(tmp_path: Path, receiver: Receiver) -> None:
    from tests.cli_helpers import adf

    make_source(tmp_path)
    flow = make_flow(tmp_path, ["success"])
    manifest = tmp_path / "flow.yaml"
    manifest.write_text(json.dumps(flow.model_dump(mode="json", by_alias=True, exclude_none=True)))
    env = {"ADF_SECRET_ALERTS_URL": receiver.url, "ADF_STORE_URL": f"sqlite:///{tmp_path}/adf.db"}
    result = adf("-v", "run", str(manifest), env=env)
    assert result.returncode == 0, result.stderr
    assert [b["event"] for b in receiver.bodies] == ["success"]
    assert "notified" in result.stderr
    for secret in (TOKEN, receiver.url, "/services/T000"):
        assert secret not in result.stdout + result.stderr


def test_the_monitoring_page_masks_a_plain_webhook_url() -> None:
    from activedataflow.ui.views import masked_webhooks

    spec = {"notify": [{"on": ["failure"], "webhook": {"url": f"https://u:p@hooks.example:8443/services/{TOKEN}?k=v"}},
                       {"webhook": {"secretRef": {"name": "alerts", "key": "url"}}}], "sink": {"type": "sql"}}
    masked = masked_webhooks(spec)
    assert masked["notify"][0]["webhook"]["url"] == "https://hooks.example:8443/***"
    assert masked["notify"][1] == spec["notify"][1] and masked["sink"] == spec["sink"]
    assert TOKEN in json.dumps(spec) and TOKEN not in json.dumps(masked)  # the record itself is untouched
    assert masked_webhooks({"sink": {}}) == {"sink": {}}


def test_a_failure_is_told_of_though_the_runs_cannot_be_listed(
    tmp_path: Path, store: Store, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Listing the flow's runs (to find runs lost by a dead runner) fails: the run's own failure is still sent."""
    from activedataflow.errors import StoreUnavailable

    def unlisted(inner: Store, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("cannot reach the store: injected")

    executor = FlowExecutor(StoreWith(store, list_runs=unlisted), notifier=FAST)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="activedataflow"):
        failed = run_now(executor, make_flow(tmp_path))
    assert failed.status == "failed"  # no source table
    assert [b["event"] for b in receiver.bodies] == ["failure"]
    assert "could not list the runs of shop/orders to notify: cannot reach the store: injected" in caplog.text
