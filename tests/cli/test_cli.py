"""The `adf` command line, driven as a subprocess: commands, output and every exit status."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.cli_helpers import (
    EXPECTED_FACT,
    ORDERS,
    adf,
    adf_in_a_process,
    heartbeat_in_a_process,
    manifest,
    sqlite_fact,
    sqlite_orders,
)


@pytest.fixture
def dbs(tmp_path: Path) -> tuple[str, str, str]:
    """(source url, sink url, store url) on SQLite files."""
    sqlite_orders(tmp_path / "shop.db", ORDERS)
    sqlite_fact(tmp_path / "wh.db")
    return (f"sqlite:///{tmp_path / 'shop.db'}", f"sqlite:///{tmp_path / 'wh.db'}", f"sqlite:///{tmp_path / 'adf.db'}")


def fact_rows(tmp_path: Path) -> dict[int, tuple[int, int]]:
    with sqlite3.connect(tmp_path / "wh.db") as db:
        return {r[0]: (r[1], r[2]) for r in db.execute("SELECT id, customer, amount_cents FROM fact_orders")}


def test_run_moves_transformed_rows_and_exits_0(tmp_path: Path, dbs: tuple[str, str, str]) -> None:
    src, sink, store = dbs
    result = adf("--store", store, "run", str(manifest(tmp_path, source_url=src, sink_url=sink)))
    assert result.returncode == 0, result.stderr
    assert "shop/paid-orders: success" in result.stdout
    assert fact_rows(tmp_path) == EXPECTED_FACT


def test_run_prints_plain_progress_lines_when_not_a_terminal(tmp_path: Path, dbs: tuple[str, str, str]) -> None:
    src, sink, store = dbs
    result = adf("--store", store, "run", str(manifest(tmp_path, source_url=src, sink_url=sink)))
    assert "run paid-orders-" in result.stderr and "started" in result.stderr
    assert "rows/s" in result.stderr
    assert "\x1b[" not in result.stderr  # no terminal control codes in logs


def test_second_run_of_incremental_flow_reads_only_new_rows(tmp_path: Path, dbs: tuple[str, str, str]) -> None:
    src, sink, store = dbs
    path = manifest(tmp_path, source_url=src, sink_url=sink)
    assert adf("--store", store, "run", str(path)).returncode == 0
    with sqlite3.connect(tmp_path / "shop.db") as db:
        db.execute("INSERT INTO orders VALUES (8, 17, '2.00', 'paid', '2026-01-01 10:00:07')")
    second = adf("--store", store, "run", str(path), "-o", "json")
    assert second.returncode == 0, second.stderr
    run = json.loads(second.stdout)[0]["run"]
    assert run["records_read"] == 1 and run["records_written"] == 1
    assert fact_rows(tmp_path)[8] == (17, 200)


def test_invalid_manifest_exits_2_naming_the_field(tmp_path: Path, dbs: tuple[str, str, str]) -> None:
    src, sink, store = dbs
    path = manifest(tmp_path, source_url=src, sink_url=sink)
    path.write_text(path.read_text().replace("    uniqueBy: [id]\n", ""))
    result = adf("--store", store, "run", str(path))
    assert result.returncode == 2
    assert "spec.sink.uniqueBy: required when mode is upsert" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_expression_with_a_syntax_error_exits_2_naming_field_and_position(
    tmp_path: Path, dbs: tuple[str, str, str]
) -> None:
    src, sink, store = dbs
    path = manifest(tmp_path, source_url=src, sink_url=sink)
    path.write_text(path.read_text().replace("row.amount > 0", "row.amount > >"))
    result = adf("--store", store, "run", str(path))
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "spec.transform." in line and ".filter: invalid expression at position 14" in line
    assert not (tmp_path / "adf.db").exists() or adf("--store", store, "runs", "-o", "json").stdout.strip() == "[]"


def test_unknown_column_in_expression_exits_2_before_running(tmp_path: Path, dbs: tuple[str, str, str]) -> None:
    src, sink, store = dbs
    path = manifest(tmp_path, source_url=src, sink_url=sink)
    path.write_text(path.read_text().replace("row.amount > 0", "row.amont > 0"))
    result = adf("--store", store, "run", str(path))
    assert result.returncode == 1
    assert "amont" in result.stdout + result.stderr


def test_failing_run_exits_1_with_the_error(tmp_path: Path, dbs: tuple[str, str, str]) -> None:
    src, sink, store = dbs
    path = manifest(tmp_path, source_url=src, sink_url=sink, sink_table="fact_ordrs")
    result = adf("--store", store, "run", str(path))
    assert result.returncode == 1
    assert "fact_ordrs" in result.stderr
    runs = json.loads(adf("--store", store, "runs", "paid-orders", "-o", "json").stdout)
    assert runs[0]["status"] == "failed" and "fact_ordrs" in runs[0]["error_message"]


def test_an_internal_error_exits_3_not_1_which_means_a_flow_failed(tmp_path: Path) -> None:
    """A run-now or CronJob Job fails at once on exit 1 (podFailurePolicy: the flow was retried in-process
    already) but replaces a runner that crashed: an uncaught exception must not exit 1 as Python would."""
    probe = (
        "import sys\n"
        "import activedataflow.runner.heartbeat as hb\n"
        "def boom(*a, **k):\n"
        "    raise RuntimeError('store connection reset: postgresql://adf:s3cr3t-pw@db/adf')\n"
        "hb.heartbeat = boom\n"
        "from activedataflow.cli import main\n"
        "main(['--store', sys.argv[1], 'heartbeat'])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADF_")}
    result = subprocess.run([sys.executable, "-c", probe, f"sqlite:///{tmp_path / 'adf.db'}"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("adf: internal error: RuntimeError: store connection reset")
    assert "Traceback" in result.stderr  # for the bug report
    assert "s3cr3t-pw" not in result.stderr


def test_unknown_flow_exits_2(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'adf.db'}"
    for args in (["runs", "nosuch"], ["heartbeat", "--flow", "nosuch"]):
        result = adf("--store", store, *args)
        assert result.returncode == 2, args
        assert "nosuch" in result.stderr


def test_unreachable_store_exits_2_quickly_without_the_password() -> None:
    started = time.monotonic()
    result = adf("--store", "postgresql+psycopg://adf:s3cr3t-pw@127.0.0.1:1/adf", "flows")
    assert result.returncode == 2
    assert time.monotonic() - started < 15
    assert "127.0.0.1:1" in result.stderr
    assert "s3cr3t-pw" not in result.stderr + result.stdout


def test_store_url_from_environment(tmp_path: Path, dbs: tuple[str, str, str]) -> None:
    src, sink, store = dbs
    assert adf("apply", str(manifest(tmp_path, source_url=src, sink_url=sink)), env={"ADF_STORE_URL": store}
               ).returncode == 0
    listed = json.loads(adf("--store", store, "flows", "-o", "json").stdout)
    assert [(f["namespace"], f["name"]) for f in listed] == [("shop", "paid-orders")]


def test_store_and_verbose_are_taken_after_the_command_name_too(tmp_path: Path, dbs: tuple[str, str, str]) -> None:
    """CONTRACT.md: options every command takes are accepted before or after the command name."""
    src, sink, store = dbs
    result = adf("run", str(manifest(tmp_path, source_url=src, sink_url=sink)), "--store", store, "-v",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert " INFO " in result.stderr  # -v after the command name raised the log level
    listed = json.loads(adf("flows", "-o", "json", "--store", store).stdout)
    assert [(f["namespace"], f["name"]) for f in listed] == [("shop", "paid-orders")]
    # given on both sides, the one after the command wins (it is the nearer)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert json.loads(adf("--store", store, "flows", "-o", "json", "--store", other).stdout) == []


def test_apply_then_heartbeat_runs_due_flows_once(tmp_path: Path, dbs: tuple[str, str, str]) -> None:
    src, sink, store = dbs
    first = adf("--store", store, "apply", str(manifest(tmp_path, source_url=src, sink_url=sink)))
    assert first.returncode == 0 and "dataflow shop/paid-orders created" in first.stdout
    beat = adf("--store", store, "heartbeat", "-o", "json")
    assert beat.returncode == 0, beat.stderr
    summary = json.loads(beat.stdout)
    assert (summary["flows_due"], summary["flows_triggered"]) == (1, 1)
    assert summary["runs"][0]["run"]["trigger"] == "heartbeat"
    again = json.loads(adf("--store", store, "heartbeat", "-o", "json").stdout)
    assert (again["flows_due"], again["flows_triggered"]) == (0, 0)
    assert fact_rows(tmp_path) == EXPECTED_FACT


def test_heartbeat_force_runs_a_flow_that_is_not_due(tmp_path: Path, dbs: tuple[str, str, str]) -> None:
    src, sink, store = dbs
    adf("--store", store, "run", str(manifest(tmp_path, source_url=src, sink_url=sink)))
    not_due = json.loads(adf("--store", store, "heartbeat", "--flow", "paid-orders", "-n", "shop", "-o", "json").stdout)
    assert not_due["flows_triggered"] == 0
    forced = adf("--store", store, "heartbeat", "--flow", "paid-orders", "-n", "shop", "--force", "-o", "json")
    assert json.loads(forced.stdout)["runs"][0]["run"]["trigger"] == "manual"


def test_the_pod_of_a_cronjobs_job_runs_the_tick_its_job_is_named_for(
    tmp_path: Path, dbs: tuple[str, str, str]
) -> None:
    """ADF_JOB_NAME (the downward API's Job name) is <cronjob>-<tick in unix minutes>: that tick runs, even
    though the store's flow is not due, and once only."""
    src, sink, store = dbs
    adf("--store", store, "run", str(manifest(tmp_path, source_url=src, sink_url=sink)))  # now not due
    env = {"ADF_JOB_NAME": "df-paid-orders-29891820"}  # 2026-11-01T05:00:00Z
    args = ("--store", store, "heartbeat", "--flow", "paid-orders", "-n", "shop", "-o", "json")
    first = adf(*args, env=env)
    assert first.returncode == 0, first.stderr
    run = json.loads(first.stdout)["runs"][0]["run"]
    assert (run["run_name"], run["status"], run["trigger"]) == ("paid-orders-29891820", "success", "schedule")
    assert run["scheduled_for"].startswith("2026-11-01T05:00:00")
    second = json.loads(adf(*args, env=env).stdout)
    assert second["flows_triggered"] == 0
    assert second["runs"][0]["skipped"].startswith("run paid-orders-29891820 for this slot already exists")


def test_a_second_run_now_pod_with_the_same_run_name_runs_nothing_and_says_why(
    tmp_path: Path, dbs: tuple[str, str, str]
) -> None:
    """The run-now Job's Pod started twice: both get the Job's ADF_RUN_NAME, the flow runs once."""
    src, sink, store = dbs
    assert adf("--store", store, "apply", str(manifest(tmp_path, source_url=src, sink_url=sink))).returncode == 0
    env = {"ADF_RUN_NAME": "paid-orders-manual-1767225600", "ADF_TRIGGER": "manual"}
    args = ("--store", store, "heartbeat", "--flow", "paid-orders", "-n", "shop", "--force")
    first = adf(*args, "-o", "json", env=env)
    assert first.returncode == 0, first.stderr
    run = json.loads(first.stdout)["runs"][0]["run"]
    assert (run["run_name"], run["status"], run["records_written"]) == ("paid-orders-manual-1767225600", "success", 4)

    second = adf(*args, env=env)
    assert second.returncode == 0, second.stderr
    assert "1 due, 0 run" in second.stdout
    assert (
        "shop/paid-orders: skipped: run paid-orders-manual-1767225600 for this slot already exists (succeeded at "
        in second.stdout
    )
    runs = json.loads(adf("--store", store, "runs", "-o", "json").stdout)
    assert [r["run_name"] for r in runs] == ["paid-orders-manual-1767225600"]
    assert fact_rows(tmp_path) == EXPECTED_FACT


def test_adf_run_ignores_adf_run_name_and_names_every_run_anew(tmp_path: Path, dbs: tuple[str, str, str]) -> None:
    src, sink, store = dbs
    path = str(manifest(tmp_path, source_url=src, sink_url=sink))
    env = {"ADF_RUN_NAME": "paid-orders-manual-1767225600"}
    assert adf("--store", store, "run", path, env=env).returncode == 0
    assert adf("--store", store, "run", path, env=env).returncode == 0
    names = [r["run_name"] for r in json.loads(adf("--store", store, "runs", "-o", "json").stdout)]
    assert len(set(names)) == 2 and "paid-orders-manual-1767225600" not in names


def test_runs_table_lists_newest_first(tmp_path: Path, dbs: tuple[str, str, str]) -> None:
    src, sink, store = dbs
    path = manifest(tmp_path, source_url=src, sink_url=sink)
    adf("--store", store, "run", str(path))
    adf("--store", store, "run", str(path), "--flow", "paid-orders")
    table = adf("--store", store, "runs")
    assert table.returncode == 0
    header, *lines = [ln for ln in table.stdout.splitlines() if ln.strip()]
    for col in ("FLOW", "STATUS", "READ", "WRITTEN", "DURATION"):
        assert col in header
    assert len(lines) == 2 and all("success" in ln for ln in lines)


def test_demo_runs_on_the_embedded_default(tmp_path: Path) -> None:
    result = adf("demo", "--rows", "2000", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "demo/paid-orders: success" in result.stdout
    assert (tmp_path / "adf.db").exists()  # the default store, sqlite:///adf.db
    with sqlite3.connect(tmp_path / "adf-demo" / "warehouse.db") as db:
        written = db.execute("SELECT COUNT(*) FROM fact_orders").fetchone()[0]
    with sqlite3.connect(tmp_path / "adf-demo" / "shop.db") as db:
        expected = db.execute("SELECT COUNT(*) FROM orders WHERE status = 'paid' AND amount > 0").fetchone()[0]
    assert written == expected > 0


def held_at_row_20(row: dict[str, object]) -> dict[str, object]:
    """A `python:` step that, while the file ``$ADF_TEST_GATE`` does not exist, stops at row 20 (after
    touching ``$ADF_TEST_GATE.reached``), so a test can kill the runner mid-run, whatever the load."""
    gate = os.environ.get("ADF_TEST_GATE")
    if gate and row["id"] == 20 and not os.path.exists(gate):
        Path(gate + ".reached").touch()
        while not os.path.exists(gate):
            time.sleep(0.02)
    return row


def test_a_killed_runner_is_reaped_and_its_flow_runs_again(tmp_path: Path) -> None:
    rows = [(i, 100 + i, f"{i}.00", "paid", f"2026-01-01 10:00:{i:02d}") for i in range(1, 41)]
    sqlite_orders(tmp_path / "shop.db", rows)
    with sqlite3.connect(tmp_path / "wh.db") as db:
        db.execute("CREATE TABLE fact_orders (id INTEGER PRIMARY KEY, customer_id INTEGER, amount NUMERIC(12,2), "
                   "status TEXT, updated_at TIMESTAMP)")
    store = f"sqlite:///{tmp_path / 'adf.db'}"
    shop, wh = f"sqlite:///{tmp_path / 'shop.db'}", f"sqlite:///{tmp_path / 'wh.db'}"
    path = manifest(tmp_path, source_url=shop, sink_url=wh)
    text = path.read_text()
    text = text[: text.index("  transform:")] + "  transform:\n    - python: tests.cli.test_cli:held_at_row_20\n" + \
        text[text.index("  sink:"):]
    path.write_text(text)
    gate = tmp_path / "gate"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADF_")}
    env.update(ADF_STORE_URL=store, ADF_LEASE_SECONDS="2", ADF_TEST_GATE=str(gate))
    runner = subprocess.Popen([sys.executable, "-m", "activedataflow.cli", "run", str(path)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reached = tmp_path / "gate.reached"
    deadline = time.monotonic() + 60
    while not reached.exists() and runner.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert reached.exists(), "the runner never reached row 20"
    runner.send_signal(signal.SIGKILL)
    runner.wait(10)
    (dead,) = json.loads(adf("--store", store, "runs", "-o", "json").stdout)
    assert dead["status"] == "in_progress"  # killed mid-run: nobody finished it
    gate.touch()  # the next run goes through
    time.sleep(2.5)  # the dead runner's lease (2 s from its last renewal, before the kill) lapses
    beat = adf("--store", store, "heartbeat", "-o", "json", env={"ADF_LEASE_SECONDS": "2"})
    assert beat.returncode == 0, beat.stderr
    assert json.loads(beat.stdout)["flows_triggered"] == 1  # reaping made the flow due again
    newest, dead = json.loads(adf("--store", store, "runs", "-o", "json").stdout)[:2]
    assert dead["status"] == "failed" and "runner lost" in dead["error_message"]
    assert newest["status"] == "success"
    with sqlite3.connect(tmp_path / "wh.db") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM fact_orders").fetchone() == (40, 40)


def test_run_on_a_terminal_shows_a_progress_bar_with_rows_per_second(tmp_path: Path, dbs: tuple[str, str, str]
                                                                     ) -> None:
    import pty

    src, sink, store = dbs
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADF_")}
    env.update(ADF_STORE_URL=store, COLUMNS="120", TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "activedataflow.cli", "run",
                             str(manifest(tmp_path, source_url=src, sink_url=sink))],
                            env=env, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(60) == 0
    text = output.decode("utf-8", "replace")
    assert "\x1b[" in text  # a live, styled display, not log lines
    assert "rows/s" in text and "success" in text
    assert "started (attempt" not in text  # the plain log-line progress is for pipes and files


def test_a_heartbeat_loads_only_what_running_sqlite_flows_needs(tmp_path: Path, dbs: tuple[str, str, str]) -> None:
    """The runner pod's memory: no migration tool, YAML, Kubernetes client, web server or unused drivers."""
    src, sink, store = dbs
    assert adf("--store", store, "apply", str(manifest(tmp_path, source_url=src, sink_url=sink))).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADF_", "KUBE"))}
    result, loaded = heartbeat_in_a_process(store, env)
    assert result.returncode == 0, result.stderr
    assert fact_rows(tmp_path) == EXPECTED_FACT  # the flow ran
    assert {"sqlalchemy", "pydantic", "activedataflow"} <= loaded
    unneeded = {"alembic", "mako", "yaml", "kubernetes", "kopf", "aiohttp", "rich", "psycopg", "pymysql", "redis"}
    assert loaded & unneeded == set()


@pytest.mark.parametrize("command", ["run", "heartbeat"])
def test_a_postgresql_flow_loads_no_other_database_kubernetes_or_terminal_code(
    tmp_path: Path, pg_url: str, command: str
) -> None:
    """Start-up of a PostgreSQL flow (``adf run``; ``adf heartbeat --flow`` as the runner Pod runs it):
    no MySQL or SQLite dialect, Kubernetes client (ours or the official one) or status models, terminal tables,
    HTTP client or migration tool."""
    with sa.create_engine(pg_url).begin() as c:
        c.execute(sa.text("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, amount NUMERIC(12,2), "
                          "status TEXT, updated_at TIMESTAMP)"))
        c.execute(sa.text("INSERT INTO orders VALUES (1, 10, 12.50, 'paid', '2026-01-01 10:00:00')"))
        c.execute(sa.text("CREATE TABLE fact_orders (id INTEGER PRIMARY KEY, customer INTEGER, status TEXT, "
                          "updated_at TIMESTAMP, amount_cents INTEGER)"))
    flow = str(manifest(tmp_path, source_url=pg_url, sink_url=pg_url))
    assert adf("--store", pg_url, "apply", flow).returncode == 0  # the store's tables exist: no migration to run
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADF_", "KUBE"))}
    args = ["run", flow] if command == "run" else ["heartbeat", "--flow", "paid-orders", "-n", "shop", "--force"]
    result, loaded = adf_in_a_process(["--store", pg_url, *args], env)
    assert result.returncode == 0, result.stderr
    with sa.create_engine(pg_url).connect() as c:
        assert c.execute(sa.text("SELECT id, customer, amount_cents FROM fact_orders")).all() == [(1, 10, 1250)]
    assert {"sqlalchemy.dialects.postgresql", "psycopg"} <= loaded
    unneeded = {"sqlalchemy.dialects.mysql", "sqlalchemy.dialects.sqlite", "pymysql", "kubernetes", "kopf",
                "rich", "http.client", "alembic", "aiohttp", "redis", "activedataflow.kube.client",
                "activedataflow.kube.status"}
    assert loaded & unneeded == set()


def _ui_process(store: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    from tests.cli_helpers import ADF, as_from_a_terminal
    from tests.services import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADF_")}
    proc = subprocess.Popen(as_from_a_terminal([*ADF, "--store", store, "ui", "--port", str(port), *extra]), env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}/"


def _get(url: str, timeout: float = 20) -> str:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return str(resp.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_adf_ui_serves_the_stores_flows_read_only_and_stops_on_ctrl_c(
    tmp_path: Path, dbs: tuple[str, str, str]
) -> None:
    src, sink, store = dbs
    assert adf("--store", store, "apply", str(manifest(tmp_path, source_url=src, sink_url=sink))).returncode == 0
    proc, url = _ui_process(store)
    try:
        page = _get(url)
        assert "paid-orders" in page
        assert 'class="mode ro"' in page  # started without --actions
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"adf ui: {url} (read-only)" in err


def test_adf_ui_kube_needs_actions_and_a_kubeconfig(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'adf.db'}"
    alone = adf("--store", store, "ui", "--kube")
    assert alone.returncode == 2 and "--kube is where the actions go: give --actions too" in alone.stderr
    missing = adf("--store", store, "ui", "--actions", "--kube", env={"KUBECONFIG": str(tmp_path / "none")})
    assert missing.returncode == 2 and f"no kubeconfig at {tmp_path / 'none'}" in missing.stderr


def test_adf_operator_refuses_ui_actions_outside_a_cluster(tmp_path: Path) -> None:
    """ADF_UI_ACTIONS acts with the callers' tokens on the pod's API server: without one there is nowhere to act."""
    env = {"ADF_UI_PORT": "0", "ADF_UI_ACTIONS": "true", "KUBERNETES_SERVICE_HOST": ""}
    done = adf("--store", f"sqlite:///{tmp_path / 'adf.db'}", "operator", env=env)
    assert done.returncode == 2 and "not in a cluster" in done.stderr
