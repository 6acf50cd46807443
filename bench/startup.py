"""Start-up of a PostgreSQL flow: process start -> its one row moved, as a whole process (by hand).

    python bench/startup.py [-n 15] [--store pg|sqlite] [--ref /path/to/other/checkout]

Starts a private PostgreSQL (tests/services.py), makes a one-row ``orders`` table and an empty
``fact_orders``, then times ``adf run flow.yaml`` and ``adf heartbeat --flow NAME --force`` (what a
runner Pod runs) as whole processes: wall time, CPU time (user+sys, the number to compare on a
loaded machine) and peak RSS, median of N. With ``--ref`` the same commands also run from another
checkout's interpreter, alternating with this one, so that load affects both alike. Each process
moves one row: its time is an upper bound of process start -> first row read.

Also ``adf heartbeat`` with nothing due on a SQLite store (every heartbeat CronJob tick that finds
no work; ``runner/heartbeat.py`` idle_heartbeat), whatever ``--store`` says: the flow is applied to
a SQLite store of each checkout and run once first, so that its next run is tomorrow.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FLOW = """\
apiVersion: activedataflow.io/v1alpha1
kind: DataFlow
metadata: {{name: startup, namespace: bench}}
spec:
  schedule: "0 0 * * *"
  source:
    type: sql
    connection: {{url: "{url}"}}
    table: orders
    columns: [id, amount, updated_at]
  transform:
    - set: {{amount_cents: "int(row.amount * 100)"}}
  sink:
    type: sql
    connection: {{url: "{url}"}}
    table: fact_orders
    mode: upsert
    uniqueBy: [id]
"""


def _psql(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as db:
        db.execute(sql)


def run_one(python: str, args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float]:
    """Run ``python -m activedataflow.cli ARGS`` under a tiny wrapper that reports the child's rusage."""
    wrapper = (
        "import os, sys, time, resource\n"
        "t0 = time.perf_counter()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.execv(sys.argv[1], [sys.argv[1], '-m', 'activedataflow.cli', *sys.argv[2:]])\n"
        "_, status, ru = os.wait4(pid, 0)\n"
        "wall = time.perf_counter() - t0\n"
        "cpu = ru.ru_utime + ru.ru_stime\n"
        "print(os.waitstatus_to_exitcode(status), wall, cpu, ru.ru_maxrss / 1024, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper, python, *args], env=env, cwd=cwd, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    last = proc.stderr.strip().split("\n")[-1].split()
    code, wall, cpu, rss = int(last[0]), float(last[1]), float(last[2]), float(last[3])
    if code != 0:
        raise SystemExit(f"adf {' '.join(args)}: exit {code}\n{proc.stdout}\n{proc.stderr}")
    return wall, cpu, rss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=15)
    ap.add_argument("--store", choices=["pg", "sqlite"], default="pg")
    ap.add_argument("--ref", type=Path, help="another checkout (with its .venv) to compare with, alternating")
    args = ap.parse_args()
    from tests.services import postgres_server

    checkouts = {"this": ROOT}
    if args.ref:
        checkouts = {"ref": args.ref.resolve(), "this": ROOT}
    with postgres_server() as url, tempfile.TemporaryDirectory() as tmp:
        _psql(url, "CREATE TABLE orders (id INTEGER PRIMARY KEY, amount NUMERIC(12,2), updated_at TIMESTAMP);"
                   "INSERT INTO orders VALUES (1, 12.50, '2026-01-01 10:00:00');"
                   "CREATE TABLE fact_orders (id INTEGER PRIMARY KEY, amount NUMERIC(12,2), "
                   "updated_at TIMESTAMP, amount_cents INTEGER)")
        manifest = Path(tmp) / "flow.yaml"
        manifest.write_text(FLOW.format(url=url))
        samples: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        for i in range(args.n + 1):  # the first round warms the page cache and is dropped
            for name, checkout in checkouts.items():
                store = url if args.store == "pg" else f"sqlite:///{tmp}/{name}.db"
                env = {k: v for k, v in os.environ.items() if not k.startswith("ADF_")}
                env["ADF_STORE_URL"] = store
                python = str(checkout / ".venv" / "bin" / "python")
                commands = {
                    "adf run flow.yaml": ["--store", store, "run", str(manifest)],
                    "adf heartbeat --flow": ["--store", store, "heartbeat", "--flow", "startup", "-n", "bench",
                                             "--force"],
                }
                idle = f"sqlite:///{tmp}/{name}-idle.db"
                if not i:  # the flow in the idle store, run once: not due again until tomorrow
                    run_one(python, ["--store", idle, "run", str(manifest)], env, checkout)
                commands["adf heartbeat (idle)"] = ["--store", idle, "heartbeat"]
                for label, cmd in commands.items():
                    _psql(url, "TRUNCATE fact_orders")
                    sample = run_one(python, cmd, env, checkout)
                    if i:
                        samples.setdefault((label, name), []).append(sample)
    print(f"median of {args.n}, store {args.store}; CPU = user+sys of the whole process")
    print(f"{'command':24} {'checkout':8} {'wall s':>8} {'cpu s':>8} {'peak RSS MB':>12}")
    for (label, name), rows in samples.items():
        wall, cpu, rss = (statistics.median(r[k] for r in rows) for k in range(3))
        print(f"{label:24} {name:8} {wall:8.3f} {cpu:8.3f} {rss:12.1f}")


if __name__ == "__main__":
    main()
