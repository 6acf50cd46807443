"""Run the PERF_ANCHORS benchmark side by side, in one run, and print a table.

By hand, never in CI (timings depend on the machine; nothing gates on them)::

    bench/.venv/bin/python bench/run.py --rows 100000 1000000 [--repeat 3] [--pg URL] [--only ours_cli,sling]
        [--pairs pg_pg,pg_same,pg_sqlite,sqlite_sqlite] [--all]

Starts a throwaway PostgreSQL (tests/services.py) unless ``--pg`` names a server,
generates the workload (:mod:`bench.generate`) for each size into a source
database ``adf_bench_src`` (also the sink of the same-database cases), a second
database ``adf_bench_dst``, and SQLite files, then measures every case in a
process of its own (:mod:`bench.measure`), the sink emptied before each, and reads
back a digest of each sink's rows (:func:`sink_digest`): every tool must leave the rows
`adf run` leaves. `adf run`, Sling, dlt and the scripts run as whole processes (start-up
included); the "in process" cases time only the moving of rows. The tables (median of
``--repeat`` runs, round robin) also go to ``bench/results/<time>.md``.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import generate  # siblings: run as a script (python -m from the repo root would shadow stdlib operator)
from approaches import WHOLE_PROCESS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Case:
    label: str
    approach: str
    pair: str  # a key of PAIRS
    max_rows: int | None = None  # the naive ORM loop only at 100k
    default: bool = True  # measured without --only; the in-process cases with --all (or --only)

    @property
    def src(self) -> str:
        return PAIRS[self.pair][0]

    @property
    def dst(self) -> str:
        return PAIRS[self.pair][1]


PAIRS = {  # source, sink, heading
    "pg_pg": ("pg_src", "pg_dst", "PostgreSQL -> PostgreSQL, two databases"),
    "pg_same": ("pg_src", "pg_src", "PostgreSQL, one database (push-down)"),
    "pg_sqlite": ("pg_src", "sqlite_dst", "PostgreSQL -> SQLite"),
    "sqlite_sqlite": ("sqlite_src", "sqlite_dst", "SQLite -> SQLite, two files (push-down, ATTACH)"),
}
# what each pair's ratios are taken against: (whole-process approach, in-process approach); none for a pair without
COPY_PATH = {"pg_pg": ("copy_pg_pg_process", "copy_pg_pg"), "pg_sqlite": ("copy_pg_sqlite_process", "copy_pg_sqlite"),
             "sqlite_sqlite": ("stdlib_sqlite_process", "stdlib_sqlite")}
FLOOR = {"pg_same": ("floor_pg_process", "floor_pg"), "sqlite_sqlite": ("floor_sqlite_process", "floor_sqlite")}
# each pair: `adf run` and the tools a user would pick instead, as whole processes (start-up included), then
# the same in process (the clock from the first connection to the last commit, imports done before)
CASES = [
    Case("`adf run` (source push-down: binary COPY of the SELECT)", "ours_cli", "pg_pg"),
    Case("`adf run`, row path (ADF_PUSHDOWN=off)", "ours_cli_rows", "pg_pg"),
    Case("Sling (query does filter + cents, incremental upsert)", "sling", "pg_pg"),
    Case("dlt, pyarrow backend + Arrow map, csv (COPY) loader, merge", "dlt_arrow_process", "pg_pg"),
    Case("COPY path script", "copy_pg_pg_process", "pg_pg"),
    Case("in process: ours (FlowExecutor)", "ours", "pg_pg", default=False),
    Case("in process: ours, row path", "ours_rows", "pg_pg", default=False),
    Case("in process: COPY path", "copy_pg_pg", "pg_pg", default=False),
    Case("in process: SQLAlchemy Core keyset + batched upsert", "core", "pg_pg", default=False),
    Case("in process: ORM session.merge per row", "orm", "pg_pg", max_rows=100_000, default=False),
    Case("in process: dlt sql_table (SQLAlchemy rows) -> merge", "dlt", "pg_pg", default=False),
    Case("`adf run` (push-down: one INSERT ... SELECT)", "ours_cli", "pg_same"),
    Case("Sling, source = sink database", "sling", "pg_same"),
    Case("floor: one INSERT ... SELECT ... ON CONFLICT (psycopg script)", "floor_pg_process", "pg_same"),
    Case("in process: ours", "ours", "pg_same", default=False),
    Case("in process: floor", "floor_pg", "pg_same", default=False),
    Case("`adf run` (row path)", "ours_cli", "pg_sqlite"),
    Case("Sling", "sling", "pg_sqlite"),
    Case("dlt, pyarrow backend + Arrow map, parquet loader, merge", "dlt_arrow_process", "pg_sqlite"),
    Case("COPY path script (COPY out, Python, executemany)", "copy_pg_sqlite_process", "pg_sqlite"),
    Case("in process: ours", "ours", "pg_sqlite", default=False),
    Case("in process: ours, transaction: run (one commit, as the COPY path)", "ours_run", "pg_sqlite", default=False),
    Case("in process: COPY path", "copy_pg_sqlite", "pg_sqlite", default=False),
    Case("`adf run` (push-down, ATTACH)", "ours_cli", "sqlite_sqlite"),
    Case("Sling", "sling", "sqlite_sqlite"),
    Case("dlt, pyarrow backend + Arrow map, parquet loader, merge", "dlt_arrow_process", "sqlite_sqlite"),
    Case("stdlib sqlite3 script (fetchmany, executemany upsert)", "stdlib_sqlite_process", "sqlite_sqlite"),
    Case("floor: ATTACH + one INSERT ... SELECT, cents on floats", "floor_sqlite_process", "sqlite_sqlite"),
    Case("floor, the row path's results (round(), '.000000' appended)", "floor_sqlite_exact_process",
         "sqlite_sqlite"),
    Case("in process: ours", "ours", "sqlite_sqlite", default=False),
    Case("in process: ours, row path (ADF_PUSHDOWN=off)", "ours_rows", "sqlite_sqlite", default=False),
    Case("in process: stdlib sqlite3", "stdlib_sqlite", "sqlite_sqlite", default=False),
    Case("in process: floor", "floor_sqlite", "sqlite_sqlite", default=False),
    Case("in process: SQLAlchemy Core keyset + batched upsert", "core", "sqlite_sqlite", default=False),
    Case("in process: ORM session.merge per row", "orm", "sqlite_sqlite", max_rows=100_000, default=False),
    Case("in process: dlt sql_table (SQLAlchemy rows) -> merge", "dlt", "sqlite_sqlite", default=False),
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


DIGEST_COLUMNS = "id, customer, status, note, updated_at, amount_cents"


def _canonical_time(value: object, *, lenient: bool = False) -> str:
    """A timestamp as one text whatever the sink made of it (datetime, ISO text with ' ' or 'T', a zone);
    ``lenient`` also takes ISO text in double quotes (Sling writes SQLite timestamps so)."""
    from datetime import UTC, datetime

    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:  # not a timestamp SQLite's datetime() or any reader takes: a difference
            if not lenient:
                return f"text {value!r}"
            value = datetime.fromisoformat(value.strip('"'))
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    assert isinstance(value, datetime), value
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def sink_digest(url: str, table: str = "fact_orders") -> tuple[int, str, str]:
    """(rows, a SHA-256 of the rows in id order, the same with timestamps read leniently) of the sink
    table, values compared as values: the same digest for the same rows in PostgreSQL or SQLite,
    whatever text form a tool gave a timestamp (as long as a reader takes it as one)."""
    import hashlib

    strict, lenient = hashlib.sha256(), hashlib.sha256()
    n = 0
    query = f"SELECT {DIGEST_COLUMNS} FROM {table} ORDER BY id"
    if url.startswith("sqlite"):
        import sqlite3

        path = url.removeprefix("sqlite:///")
        con = sqlite3.connect(path)
        if "." in table:  # dlt's dataset: a file beside the sink's, ATTACHed under the dataset's name
            schema = table.split(".")[0]
            con.execute("ATTACH DATABASE ? AS " + schema, (_dataset_file(path, schema),))
        rows = con.execute(query)
    else:
        import psycopg

        con = psycopg.connect(generate.pg_dsn(url))  # type: ignore[assignment]
        con.execute("SET TIME ZONE 'UTC'")
        rows = con.cursor(name="digest").execute(query)  # type: ignore[attr-defined]
    for i, customer, status, note, updated_at, cents in rows:
        head = (int(i), int(customer), status, note)
        strict.update(repr((*head, _canonical_time(updated_at), int(cents))).encode())
        lenient.update(repr((*head, _canonical_time(updated_at, lenient=True), int(cents))).encode())
        n += 1
    con.close()
    return n, strict.hexdigest()[:16], lenient.hexdigest()[:16]


Digest = tuple[int, str, str]


def sink_verdict(digests: set[Digest], ours: Digest | None) -> str:
    """``=`` when every run of a case left the rows `adf run` left; ``= but timestamps quoted`` when only the
    text form of the timestamps differs (no reader takes it for a timestamp); else ``differs`` and the digests."""
    if ours is None:
        return ", ".join(f"{n:,} rows {d}" for n, d, _ in sorted(digests))
    if digests == {ours}:
        return "="
    if {(n, lenient) for n, _, lenient in digests} == {(ours[0], ours[2])}:
        return "= but timestamps quoted"
    return "differs: " + ", ".join(f"{n:,} rows {d}" for n, d, _ in sorted(digests))


def _dataset_file(sink_path: str, dataset: str) -> str:
    """The file dlt's SQLAlchemy destination ATTACHes a dataset from, on SQLite."""
    p = Path(sink_path)
    return str(p.with_name(f"{p.stem}__{dataset}{p.suffix}"))


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
    if profile is not None and case.approach not in WHOLE_PROCESS:  # a whole process writes its own
        (profile.with_suffix(".txt")).write_text(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3, help="median of this many runs per case")
    ap.add_argument("--pg", help="use this PostgreSQL server (a URL to its postgres database) instead of starting one")
    ap.add_argument("--only", help="comma-separated approaches (ours_cli, sling, dlt_arrow_process, core, ...)")
    ap.add_argument("--pairs", help="comma-separated pairs (" + ", ".join(PAIRS) + ")")
    ap.add_argument("--all", action="store_true",
                    help="also the in-process cases (ours, the scripts, Core, the ORM loop, dlt's row backend)")
    ap.add_argument("--profile", action="store_true",
                    help="pyinstrument profiles of our cases (of adf run: the whole process) in bench/results/")
    ap.add_argument("--timeout", type=float, default=1200)
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    pairs = set(args.pairs.split(",")) if args.pairs else set(PAIRS)
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    lines: list[str] = []

    def out(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    def wanted(case: Case, n: int) -> bool:
        if case.pair not in pairs or (case.max_rows and n > case.max_rows):
            return False
        return case.approach in only if only else (case.default or args.all)

    with postgres(args.pg) as server, tempfile.TemporaryDirectory(prefix="adf-bench-") as tmp:
        work = Path(tmp)
        pg = {"pg_src": pg_database(server, "adf_bench_src"), "pg_dst": pg_database(server, "adf_bench_dst")}
        generate.create_fact_pg(pg["pg_dst"])
        for n in args.rows:
            t = time.perf_counter()
            generate.load_pg(pg["pg_src"], n)
            generate.load_sqlite(str(work / "src.db"), n)
            print(f"(generated in {time.perf_counter() - t:.0f}s)", file=sys.stderr)
            out(f"\n## {n:,} source rows ({time.strftime('%H:%M', time.gmtime())} UTC, load before: {load()})\n")
            urls = {**pg, "sqlite_src": f"sqlite:///{work / 'src.db'}"}
            cases = [c for c in CASES if wanted(c, n)]
            profiles = (results_dir / f"{stamp}-{n}") if args.profile else None
            results, sinks = round_robin(cases, urls, work, args.repeat, profiles, args.timeout)
            table(out, results, sinks)
            out(f"\n(load after: {load()}, {time.strftime('%H:%M', time.gmtime())} UTC)")
    path = results_dir / f"{stamp}.md"
    path.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {path}")


def measure_once(case: Case, urls: dict[str, str], work: Path, profile: Path | None, timeout: float
                 ) -> tuple[dict[str, float] | str, Digest | None]:
    """One run of a case on an emptied sink: its numbers (or why it failed) and its sink's digest."""
    dst = fresh_sqlite_dst(work) if case.dst == "sqlite_dst" else urls[case.dst]
    if case.dst.startswith("pg"):
        reset_pg(dst)
    r = measure(case, urls[case.src], dst, profile, timeout)
    if isinstance(r, str):
        return r, None
    try:
        digest = sink_digest(dst, "bench.fact_orders" if case.approach.startswith("dlt") else "fact_orders")
    except Exception as err:  # a sink that cannot be read back fails its case, not the run
        return f"sink not readable: {err}"[:160], None
    r["written"] = digest[0]
    return r, digest


def round_robin(cases: list[Case], urls: dict[str, str], work: Path, repeat: int, profiles: Path | None,
                timeout: float) -> tuple[dict[tuple[str, str], dict[str, float] | str], dict[Case, set[Digest]]]:
    """Each round measures every case once, so that a slow spell of the machine (or of PostgreSQL's
    background work after loading) spreads over all cases instead of hitting one; the medians."""
    runs: dict[Case, list[dict[str, float]]] = {c: [] for c in cases}
    errors: dict[Case, str] = {}
    sinks: dict[Case, set[Digest]] = {c: set() for c in cases}
    for _ in range(repeat):
        for case in cases:
            if case in errors:
                continue
            profile = (profiles.with_name(f"{profiles.name}-{case.approach}-{case.pair}.html")
                       if profiles is not None and case.approach.startswith("ours") else None)
            r, digest = measure_once(case, urls, work, profile, timeout)
            if isinstance(r, str):
                errors[case] = r
            else:
                runs[case].append(r)
                sinks[case].add(digest)  # type: ignore[arg-type]
            print(f"  {case.pair} {case.label}: {r}", file=sys.stderr, flush=True)
    results: dict[tuple[str, str], dict[str, float] | str] = {}
    for case in cases:
        if case in errors:
            results[(case.approach, case.pair)] = errors[case]
        else:
            numeric = [k for k in runs[case][0] if k != "whole_process"]
            results[(case.approach, case.pair)] = {k: statistics.median(r[k] for r in runs[case]) for k in numeric}
    return results, sinks


def table(out: Callable[[str], None], results: dict[tuple[str, str], dict[str, float] | str],
          sinks: dict[Case, set[Digest]]) -> None:
    """One table per pair: seconds, rows/s, peak RSS, whether the sink holds our rows, the ratios.

    A whole process is compared with whole processes (Sling, the scripts), an in-process case with the
    in-process script. "sink": see :func:`sink_verdict`.
    """
    ours_sink = {c.pair: next(iter(d)) for c, d in sinks.items() if c.approach == "ours_cli" and len(d) == 1}

    def seconds(approach: str, pair: str) -> float | None:
        r = results.get((approach, pair))
        return r["seconds"] if isinstance(r, dict) else None

    def ratio(r: dict[str, float], ref: float | None) -> str:
        return f"{r['seconds'] / ref:.2f}" if ref else ""

    for pair, (_, _, heading) in PAIRS.items():
        cases = [c for c in CASES if (c.approach, pair) in results and c.pair == pair]
        if not cases:
            continue
        out(f"\n### {heading}\n")
        out("| how | s | rows/s | peak RSS MB | sink | x Sling | x COPY path | x floor |")
        out("|---|---:|---:|---:|---|---:|---:|---:|")
        for case in cases:
            r = results[(case.approach, pair)]
            if isinstance(r, str):
                out(f"| {case.label} | failed: {r} | | | | | | |")
                continue
            whole = case.approach in WHOLE_PROCESS
            kind = 0 if whole else 1
            copy = seconds(COPY_PATH[pair][kind], pair) if pair in COPY_PATH else None
            floor = seconds(FLOOR[pair][kind], pair) if pair in FLOOR else None
            sling = seconds("sling", pair) if whole else None
            sink = sink_verdict(sinks[case], ours_sink.get(pair))
            rss = f"{r['rss_mb']:.0f}" + (f" ({r['base_rss_mb']:.0f})" if r["base_rss_mb"] else "")
            rate = r["written"] / r["seconds"] if r["seconds"] else 0
            out(f"| {case.label} | {r['seconds']:.2f} | {rate:,.0f} | {rss} | {sink} "
                f"| {ratio(r, sling) if case.approach != 'sling' else ''} "
                f"| {ratio(r, copy) if case.approach not in COPY_PATH.get(pair, ()) else ''} "
                f"| {ratio(r, floor) if case.approach not in FLOOR.get(pair, ()) else ''} |")


if __name__ == "__main__":
    main()
