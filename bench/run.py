"""Run the PERF_ANCHORS benchmark side by side, in one run, and print a table.

By hand, never in CI (timings depend on the machine; nothing gates on them)::

    bench/.venv/bin/python bench/run.py --rows 100000 1000000 [--repeat 3] [--pg URL] [--only ours,floor_pg]

Starts a throwaway PostgreSQL (tests/services.py) unless ``--pg`` names a server,
generates the workload (:mod:`bench.generate`) for each size into a source
database ``adf_bench_src`` (also the sink of the same-database cases), a second
database ``adf_bench_dst``, and SQLite files, then measures every case in a
process of its own (:mod:`bench.measure`), the sink emptied before each. The
table (median of ``--repeat`` runs) also goes to ``bench/results/<time>.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import generate  # a sibling: run as a script (python -m from the repo root would shadow stdlib operator)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Case:
    label: str
    approach: str
    src: str  # pg_src | sqlite_src
    dst: str  # pg_src | pg_dst | sqlite_dst
    max_rows: int | None = None  # the naive ORM loop only at 100k
    reference: str | None = None  # the case this one is compared with ("x COPY path")


CASES = [
    Case("ours SQLite -> SQLite, two files (push-down, ATTACH)", "ours", "sqlite_src", "sqlite_dst",
         reference="stdlib_sqlite"),
    Case("ours SQLite -> SQLite, row path (ADF_PUSHDOWN=off)", "ours_rows", "sqlite_src", "sqlite_dst",
         reference="stdlib_sqlite"),
    Case("ours PG -> PG, same db (push-down)", "ours", "pg_src", "pg_src", reference="copy_pg_pg"),
    Case("ours PG -> PG, two dbs (source push-down, binary COPY)", "ours", "pg_src", "pg_dst",
         reference="copy_pg_pg"),
    Case("ours PG -> PG, two dbs, row path (ADF_PUSHDOWN=off)", "ours_rows", "pg_src", "pg_dst",
         reference="copy_pg_pg"),
    Case("adf run process, PG -> PG, two dbs (source push-down)", "ours_cli", "pg_src", "pg_dst",
         reference="copy_pg_pg_process"),
    Case("adf run process, PG -> PG, two dbs, row path (ADF_PUSHDOWN=off)", "ours_cli_rows", "pg_src", "pg_dst",
         reference="copy_pg_pg_process"),
    Case("ours PG -> SQLite", "ours", "pg_src", "sqlite_dst", reference="copy_pg_sqlite"),
    Case("ours PG -> SQLite, transaction: run (one commit, as the COPY path)", "ours_run", "pg_src", "sqlite_dst",
         reference="copy_pg_sqlite"),
    Case("SQLAlchemy Core keyset + batched upsert, PG -> PG", "core", "pg_src", "pg_dst"),
    Case("SQLAlchemy Core keyset + batched upsert, SQLite -> SQLite", "core", "sqlite_src", "sqlite_dst"),
    Case("ORM session.merge per row, PG -> PG", "orm", "pg_src", "pg_dst", max_rows=100_000),
    Case("ORM session.merge per row, SQLite -> SQLite", "orm", "sqlite_src", "sqlite_dst", max_rows=100_000),
    Case("dlt sql_table -> merge on id, PG -> PG", "dlt", "pg_src", "pg_dst"),
    Case("dlt sql_table -> merge on id, SQLite -> SQLite", "dlt", "sqlite_src", "sqlite_dst"),
    Case("COPY path PG -> PG (COPY out, Python, COPY in, one merge)", "copy_pg_pg", "pg_src", "pg_dst"),
    Case("COPY path PG -> PG, whole process (start-up included)", "copy_pg_pg_process", "pg_src", "pg_dst"),
    Case("COPY path PG -> SQLite (COPY out, Python, executemany)", "copy_pg_sqlite", "pg_src", "sqlite_dst"),
    Case("stdlib sqlite3 SQLite -> SQLite (executemany upsert)", "stdlib_sqlite", "sqlite_src", "sqlite_dst"),
    Case("floor PG: one INSERT ... SELECT ... ON CONFLICT", "floor_pg", "pg_src", "pg_src"),
    Case("floor SQLite: ATTACH + one INSERT ... SELECT", "floor_sqlite", "sqlite_src", "sqlite_dst"),
    Case("floor SQLite, the row path's results (round(), '.000000' appended)", "floor_sqlite_exact", "sqlite_src",
         "sqlite_dst"),
]


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    import importlib.util

    spec = importlib.util.spec_from_file_location("adf_test_services", ROOT / "tests" / "services.py")
    assert spec is not None and spec.loader is not None
    services = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(services)
    with services.postgres_server() as started:
        yield started


def pg_database(server: str, name: str) -> str:
    import psycopg

    with psycopg.connect(generate.pg_dsn(server), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    return server.rsplit("/", 1)[0] + f"/{name}"


def reset_pg(url: str) -> None:
    import psycopg

    with psycopg.connect(generate.pg_dsn(url), autocommit=True) as c:
        c.execute("DROP SCHEMA IF EXISTS bench CASCADE")  # dlt's dataset
        c.execute("DROP SCHEMA IF EXISTS bench_staging CASCADE")
        c.execute(generate.PG_FACT)
        c.execute("TRUNCATE fact_orders")
        c.execute("VACUUM ANALYZE fact_orders")
        c.execute("CHECKPOINT")


def sink_digest(url: str) -> tuple[int, int]:
    """(rows, a sum of row hashes) of fact_orders: equal sinks have equal digests."""
    import psycopg

    with psycopg.connect(generate.pg_dsn(url)) as c:
        row = c.execute("SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0) FROM fact_orders t").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def fresh_sqlite_dst(workdir: Path) -> str:
    d = workdir / "dst"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    generate.create_fact_sqlite(str(d / "dst.db"))
    return f"sqlite:///{d / 'dst.db'}"


def measure(case: Case, src: str, dst: str, profile: Path | None, timeout: float) -> dict[str, float] | str:
    py = HERE / ".venv" / "bin" / "python"
    cmd = [str(py if py.exists() else sys.executable), str(HERE / "measure.py"), case.approach, src, dst]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    try:
        proc = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timeout after {timeout:.0f}s"
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["failed"])[-1][:160]
    if profile is not None:
        (profile.with_suffix(".txt")).write_text(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=1, help="median of this many runs per case")
    ap.add_argument("--pg", help="use this PostgreSQL server (a URL to its postgres database) instead of starting one")
    ap.add_argument("--only", help="comma-separated approaches (ours, core, orm, dlt, copy_pg_pg, ...)")
    ap.add_argument("--profile", action="store_true", help="pyinstrument profiles of our cases in bench/results/")
    ap.add_argument("--timeout", type=float, default=1200)
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    lines: list[str] = []

    def out(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    with postgres(args.pg) as server, tempfile.TemporaryDirectory(prefix="adf-bench-") as tmp:
        work = Path(tmp)
        pg = {"pg_src": pg_database(server, "adf_bench_src"), "pg_dst": pg_database(server, "adf_bench_dst")}
        generate.create_fact_pg(pg["pg_dst"])
        for n in args.rows:
            out(f"\n## {n:,} source rows (load before: {load()})\n")
            t = time.perf_counter()
            generate.load_pg(pg["pg_src"], n)
            generate.load_sqlite(str(work / "src.db"), n)
            print(f"(generated in {time.perf_counter() - t:.0f}s)", file=sys.stderr)
            urls = {**pg, "sqlite_src": f"sqlite:///{work / 'src.db'}"}
            results: dict[tuple[str, str, str], dict[str, float] | str] = {}
            cases = [c for c in CASES if not ((only and c.approach not in only) or (c.max_rows and n > c.max_rows))]
            runs: dict[Case, list[dict[str, float]]] = {c: [] for c in cases}
            errors: dict[Case, str] = {}
            digests: dict[int, tuple[int, int]] = {}
            # round robin: each round measures every case once, so that a slow spell of the machine (or of
            # PostgreSQL's background work after loading) spreads over all cases instead of hitting one
            for _ in range(args.repeat):
                for case in cases:
                    if case in errors:
                        continue
                    dst = fresh_sqlite_dst(work) if case.dst == "sqlite_dst" else urls[case.dst]
                    if case.dst.startswith("pg"):
                        reset_pg(dst)
                    profile = (results_dir / f"{stamp}-{n}-{case.approach}-{case.src}-{case.dst}.html"
                               if args.profile and case.approach.startswith("ours") else None)
                    r = measure(case, urls[case.src], dst, profile, args.timeout)
                    if isinstance(r, str):
                        errors[case] = r
                    else:
                        runs[case].append(r)
                        if case.dst.startswith("pg"):  # every sink must hold the same rows
                            digest = sink_digest(dst)
                            seen = digests.setdefault(n, digest)
                            if digest != seen:
                                errors[case] = f"sink differs from the first case's: {digest} != {seen}"
                    print(f"  {case.label}: {r}", file=sys.stderr, flush=True)
            for case in cases:
                key = (case.approach, case.src, case.dst)
                if case in errors:
                    results[key] = errors[case]
                else:
                    results[key] = {k: statistics.median(r[k] for r in runs[case]) for k in runs[case][0]}
            table(out, n, results)
            out(f"\n(load after: {load()})")
    path = results_dir / f"{stamp}.md"
    path.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {path}")


def table(out: object, n: int, results: dict[tuple[str, str, str], dict[str, float] | str]) -> None:
    emit = out  # type: ignore[assignment]
    floors = {"pg_src": results.get(("floor_pg", "pg_src", "pg_src")),
              "sqlite_src": results.get(("floor_sqlite", "sqlite_src", "sqlite_dst"))}
    reference_of = {"stdlib_sqlite": ("sqlite_src", "sqlite_dst"), "floor_pg": ("pg_src", "pg_src"),
                    "copy_pg_pg": ("pg_src", "pg_dst"), "copy_pg_pg_process": ("pg_src", "pg_dst"),
                    "copy_pg_sqlite": ("pg_src", "sqlite_dst")}
    emit("| how | s | rows written | rows/s | peak RSS MB (after imports) | x COPY path | x floor |")  # type: ignore[operator]
    emit("|---|---:|---:|---:|---:|---:|---:|")  # type: ignore[operator]
    for case in CASES:
        r = results.get((case.approach, case.src, case.dst))
        if r is None:
            continue
        if isinstance(r, str):
            emit(f"| {case.label} | failed: {r} | | | | | |")  # type: ignore[operator]
            continue
        ref = ""
        if case.reference:
            rr = results.get((case.reference, *reference_of[case.reference]))
            if isinstance(rr, dict):
                ref = f"{r['seconds'] / rr['seconds']:.2f}"
        floor = floors.get(case.src)
        fl = f"{r['seconds'] / floor['seconds']:.2f}" if isinstance(floor, dict) else ""
        rate = r["written"] / r["seconds"] if r["seconds"] else 0
        emit(f"| {case.label} | {r['seconds']:.2f} | {int(r['written']):,} | {rate:,.0f} "  # type: ignore[operator]
             f"| {r['rss_mb']:.0f} ({r['base_rss_mb']:.0f}) | {ref} | {fl} |")


if __name__ == "__main__":
    main()
