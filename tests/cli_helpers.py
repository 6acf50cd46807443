"""Driving `adf` as a subprocess, as a user would."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.secrets_scan import seen

ADF = [sys.executable, "-m", "activedataflow.cli"]


def as_from_a_terminal(argv: list[str]) -> list[str]:
    """``argv`` started with SIGINT at its default action, as a terminal starts a command, for tests that
    send Ctrl-C. A process started from a script's background job (``cmd &`` without job control, as a CI
    runner may start the suite) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", reset, *argv]


def adf(*args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ADF_")}
    full_env.update(env or {})
    result = subprocess.run(
        [*ADF, *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL
    )
    seen(f"adf {' '.join(args)} stdout", result.stdout)
    seen(f"adf {' '.join(args)} stderr", result.stderr)
    return result


def adf_in_a_process(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``adf ARGS`` in a fresh interpreter; also every module it had loaded when it exited."""
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print(' '.join(sorted(sys.modules))))\n"
        "from activedataflow.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    result = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, env=env, timeout=60)
    seen(f"adf {' '.join(args)} stdout", result.stdout)
    seen(f"adf {' '.join(args)} stderr", result.stderr)
    lines = result.stdout.split("\n")
    return result, set(lines[-2].split()) if len(lines) > 1 else set()


def heartbeat_in_a_process(store: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``adf heartbeat`` in a fresh interpreter; also the top-level packages it had loaded when it exited."""
    result, modules = adf_in_a_process(["--store", store, "heartbeat"], env)
    return result, {m.split(".")[0] for m in modules}


def sqlite_orders(path: Path, rows: list[tuple[int, int, str, str, str]]) -> None:
    """orders(id, customer_id, amount, status, updated_at) in a SQLite file."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, amount NUMERIC(12,2), "
            "status TEXT, updated_at TIMESTAMP)"
        )
        db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", rows)


def sqlite_fact(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE fact_orders (id INTEGER PRIMARY KEY, customer INTEGER, status TEXT, "
            "updated_at TIMESTAMP, amount_cents INTEGER)"
        )


def manifest(tmp: Path, *, name: str = "paid-orders", source_url: str, sink_url: str, extra_transform: str = "",
             sink_table: str = "fact_orders", schedule: str = '"*/15 * * * *"', incremental: bool = True) -> Path:
    inc = "\n            incremental: {cursorColumn: updated_at}" if incremental else ""
    text = textwrap.dedent(
        f"""\
        apiVersion: activedataflow.io/v1alpha1
        kind: DataFlow
        metadata:
          name: {name}
          namespace: shop
        spec:
          schedule: {schedule}
          source:
            type: sql
            connection: {{url: "{source_url}"}}
            table: orders
            columns: [id, customer_id, amount, status, updated_at]
            where: [{{column: status, op: "=", value: paid}}]
            batchSize: 3{inc}
          transform:
            - rename: {{customer_id: customer}}
            - filter: "row.amount > 0"
            - set: {{amount_cents: "int(row.amount * 100)"}}
            - drop: [amount]{extra_transform}
          sink:
            type: sql
            connection: {{url: "{sink_url}"}}
            table: {sink_table}
            mode: upsert
            uniqueBy: [id]
            batchSize: 2
        """
    )
    path = tmp / f"{name}.yaml"
    path.write_text(text)
    return path


ORDERS = [
    (1, 10, "12.50", "paid", "2026-01-01 10:00:00"),
    (2, 11, "0.29", "paid", "2026-01-01 10:00:01"),
    (3, 12, "99.99", "pending", "2026-01-01 10:00:02"),
    (4, 13, "-5.00", "paid", "2026-01-01 10:00:03"),
    (5, 14, "7.10", "paid", "2026-01-01 10:00:04"),
    (6, 15, "1.00", "refunded", "2026-01-01 10:00:05"),
    (7, 16, "3.33", "paid", "2026-01-01 10:00:06"),
]
# paid with amount > 0: 1, 2, 5, 7 -> amount_cents by int(amount*100): Decimal arithmetic is exact
EXPECTED_FACT = {1: (10, 1250), 2: (11, 29), 5: (14, 710), 7: (16, 333)}
