"""The approaches the benchmark compares, each moving the PERF_ANCHORS flow once.

Flow: ``orders`` rows with ``status = 'paid'`` -> rename ``customer_id`` to ``customer``,
``amount_cents = int(amount * 100)``, drop ``amount`` -> upsert into ``fact_orders`` by ``id``
(update ``amount_cents, status, updated_at``). Every function returns
``(rows_read, rows_written)`` and is timed by :mod:`bench.measure` from its first
connection to its last commit, in a process of its own.
"""

from __future__ import annotations

import functools
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BATCH = 5000
SELECT_COLS = "id, customer_id, amount, status, note, updated_at"
FACT_COLS = ("id", "customer", "status", "note", "updated_at", "amount_cents")
UPDATE = ("amount_cents", "status", "updated_at")
PG_TYPES = ["int8", "int8", "numeric", "text", "text", "timestamp"]


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def _sqlite_upsert_sql() -> str:
    sets = ", ".join(f"{c} = excluded.{c}" for c in UPDATE)
    return (f"INSERT INTO fact_orders ({', '.join(FACT_COLS)}) VALUES (?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT (id) DO UPDATE SET {sets}")


def _pg_merge_sql(source: str) -> str:
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in UPDATE)
    cols = ", ".join(FACT_COLS)
    return f"INSERT INTO fact_orders ({cols}) SELECT {cols} FROM {source} ON CONFLICT (id) DO UPDATE SET {sets}"


# --------------------------------------------------------------------------- ours

_STORE_DIR = tempfile.mkdtemp(prefix="adf-bench-store-")


def store_url() -> str:
    return f"sqlite:///{_STORE_DIR}/adf.db"


def prepare_ours() -> None:
    """Create and migrate the embedded store, in another process: an installation has it already,
    so the measured process opens an existing store (and never loads Alembic)."""
    import subprocess
    import sys

    code = "import sys; from activedataflow.store import open_store; open_store(sys.argv[1]).close()"
    subprocess.run([sys.executable, "-c", code, store_url()], check=True)



def ours(src: str, dst: str, *, batch: int = BATCH, transaction: str = "batch",
         pushdown: bool = True) -> tuple[int, int]:
    """The product: a FlowExecutor run of the flow against the embedded SQLite store (adf run's path).

    ``transaction: batch`` (the default) commits the sink every batch; ``run`` once, as the COPY paths do.
    ``pushdown=False`` runs it as ``ADF_PUSHDOWN=off`` does: on the row path even where it could be one statement.
    """
    import os

    if not pushdown:
        os.environ["ADF_PUSHDOWN"] = "off"
    from activedataflow.model import parse_dataflow
    from activedataflow.runner.executor import FlowExecutor
    from activedataflow.store import open_store

    flow = parse_dataflow({
        "apiVersion": "activedataflow.io/v1alpha1", "kind": "DataFlow", "metadata": {"name": "paid-orders"},
        "spec": {
            "interval": "15m",
            "source": {"type": "sql", "connection": {"url": src}, "table": "orders",
                       "columns": ["id", "customer_id", "amount", "status", "note", "updated_at"],
                       "where": [{"column": "status", "op": "=", "value": "paid"}], "batchSize": batch},
            "transform": [{"rename": {"customer_id": "customer"}},
                          {"set": {"amount_cents": "int(row.amount * 100)"}},
                          {"drop": ["amount"]}],
            "sink": {"type": "sql", "connection": {"url": dst}, "table": "fact_orders", "mode": "upsert",
                     "uniqueBy": ["id"], "updateOnly": list(UPDATE), "batchSize": batch, "transaction": transaction},
        },
    })
    store = open_store(store_url())  # created and migrated by prepare_ours(), before the clock started
    try:
        executor = FlowExecutor(store)
        outcome = executor.run(executor.register(flow), trigger="manual", force=True)
    finally:
        store.close()
    run = outcome.run
    assert run is not None
    if run.status != "success":
        raise RuntimeError(f"run failed: {run.error_message}")
    return run.records_read, run.records_written


def _flow_manifest(src: str, dst: str, batch: int = BATCH, transaction: str = "batch") -> dict[str, Any]:
    return {
        "apiVersion": "activedataflow.io/v1alpha1", "kind": "DataFlow", "metadata": {"name": "paid-orders"},
        "spec": {
            "interval": "15m",
            "source": {"type": "sql", "connection": {"url": src}, "table": "orders",
                       "columns": ["id", "customer_id", "amount", "status", "note", "updated_at"],
                       "where": [{"column": "status", "op": "=", "value": "paid"}], "batchSize": batch},
            "transform": [{"rename": {"customer_id": "customer"}},
                          {"set": {"amount_cents": "int(row.amount * 100)"}},
                          {"drop": ["amount"]}],
            "sink": {"type": "sql", "connection": {"url": dst}, "table": "fact_orders", "mode": "upsert",
                     "uniqueBy": ["id"], "updateOnly": list(UPDATE), "batchSize": batch, "transaction": transaction},
        },
    }


CHILD_RSS_MB: list[float] = []
"""Peak RSS of each process :func:`_whole_process` ran (wait4's rusage: the child and what it waited for)."""


def _whole_process(cmd: list[str], env: dict[str, str] | None = None) -> str:
    """Run ``cmd`` as a process of its own (start-up and imports included); its stdout.

    The child's peak RSS (not this measuring process's) is appended to :data:`CHILD_RSS_MB`.
    """
    import os
    import subprocess

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        CHILD_RSS_MB.append(usage.ru_maxrss / 1024)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({proc.returncode}): {(stderr or stdout).strip()[-300:]}")
    return stdout


def in_fresh_process(name: str) -> Callable[[str, str], tuple[int, int]]:
    """The approach ``name`` run by ``python approaches.py NAME SRC DST`` in a fresh interpreter."""

    def run(src: str, dst: str) -> tuple[int, int]:
        import json
        import sys

        out = _whole_process([sys.executable, __file__, name, src, dst])
        read, written = json.loads(out.strip().splitlines()[-1])
        return int(read), int(written)

    run.__name__ = f"{name}_process"
    return run


def ours_cli(src: str, dst: str, *, pushdown: bool = True) -> tuple[int, int]:
    """``adf run flow.yaml --store URL`` as a whole process, as a user (or a runner Pod) runs it; the
    store migrated before. The rows written are counted from the sink by the caller (-1 here).
    With ``ADF_BENCH_PROFILE=FILE`` it runs under pyinstrument (its session to FILE.pyisession, for
    bench/profile_parts.py)."""
    import os
    import sys

    import yaml

    manifest = Path(_STORE_DIR) / "flow.yaml"
    manifest.write_text(yaml.safe_dump(_flow_manifest(src, dst), sort_keys=False))
    adf = Path(sys.executable).with_name("adf")
    cmd = [str(adf), "run", str(manifest), "--store", store_url()]
    if profile := os.environ.get("ADF_BENCH_PROFILE"):  # the whole process under pyinstrument, imports included
        cmd = [sys.executable, "-m", "pyinstrument", "--interval", "0.001", "-r", "pyisession",
               "-o", str(Path(profile).with_suffix(".pyisession")), *cmd]
    _whole_process(cmd, env=None if pushdown else {"ADF_PUSHDOWN": "off"})
    return -1, -1


# --------------------------------------------------------------------------- Sling


def _sling_url(url: str) -> str:
    """A Sling connection URL: libpq's form with ``sslmode=disable`` (loopback has no TLS), or SQLite's."""
    if url.startswith("sqlite"):
        return "sqlite://" + _sqlite_path(url)  # Sling reads sqlite:///tmp/x.db as the file /tmp/x.db
    return _libpq(url) + ("&" if "?" in url else "?") + "sslmode=disable"


def _sling_binary() -> str:
    """The Go binary that PyPI's ``sling-linux-amd64`` ships, run directly (no Python wrapper on the clock)."""
    import os

    from sling_linux_amd64 import SLING_BIN  # type: ignore[import-not-found]

    if not os.access(SLING_BIN, os.X_OK):
        os.chmod(SLING_BIN, 0o755)
    return str(SLING_BIN)


def sling(src: str, dst: str) -> tuple[int, int]:
    """Sling as a user would configure it for this flow: the source stream is a query doing the filter,
    the rename and the cents (what SQL can compute), ``--mode incremental --primary-key id`` (full-data upsert)."""
    import shutil

    if src.startswith("sqlite"):
        # SQLite holds NUMERIC(12,2) as REAL: round, as one knowing floats writes it (0.29 * 100 = 28.999...)
        cents, table = "CAST(round(amount * 100) AS INTEGER)", "main.orders"
    else:
        cents, table = "trunc(amount * 100)::int8", "public.orders"
    query = (f"select id, customer_id as customer, status, note, updated_at, {cents} as amount_cents "
             f"from {table} where status = 'paid'")
    target = "main.fact_orders" if dst.startswith("sqlite") else "public.fact_orders"
    env = {"SLING_DISABLE_TELEMETRY": "true", "SLING_SRC": _sling_url(src), "SLING_DST": _sling_url(dst),
           "SLING_HOME_DIR": tempfile.mkdtemp(prefix="adf-bench-sling-")}
    if sqlite3_cli := shutil.which("sqlite3"):  # bulk import through the CLI (else a row at a time: 3x slower)
        env["SQLITE_PATH"] = sqlite3_cli
    _whole_process([_sling_binary(), "run", "--src-conn", "SLING_SRC", "--src-stream", query,
                    "--tgt-conn", "SLING_DST", "--tgt-object", target,
                    "--mode", "incremental", "--primary-key", "id"], env=env)
    return -1, -1


# --------------------------------------------------------------------------- SQLAlchemy Core and ORM


def _paid_pages(src: str, batch: int) -> Iterator[list[Any]]:
    """Keyset pages of paid orders as SQLAlchemy rows (the read side of the Core and ORM baselines)."""
    import sqlalchemy as sa

    se = sa.create_engine(src)
    orders = sa.Table("orders", sa.MetaData(), autoload_with=se)
    last = 0
    with se.connect() as sc:
        while True:
            page = sc.execute(
                sa.select(orders).where(orders.c.status == "paid", orders.c.id > last).order_by(orders.c.id)
                .limit(batch)
            ).all()
            sc.commit()
            if not page:
                break
            last = page[-1].id
            yield page
    se.dispose()


def core(src: str, dst: str, *, batch: int = BATCH) -> tuple[int, int]:
    """SQLAlchemy Core: keyset pages, one batched ``insert().values([...]).on_conflict_do_update`` per page."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql, sqlite

    de = sa.create_engine(dst)
    fact = sa.Table("fact_orders", sa.MetaData(), autoload_with=de)
    insert = (postgresql.insert if de.dialect.name == "postgresql" else sqlite.insert)(fact)
    read = written = 0
    with de.connect() as dc:
        for page in _paid_pages(src, batch):
            read += len(page)
            values = [{"id": r.id, "customer": r.customer_id, "status": r.status, "note": r.note,
                       "updated_at": r.updated_at, "amount_cents": int(r.amount * 100)} for r in page]
            stmt = insert.values(values)
            dc.execute(stmt.on_conflict_do_update(index_elements=["id"],
                                                  set_={c: stmt.excluded[c] for c in UPDATE}))
            dc.commit()
            written += len(values)
    de.dispose()
    return read, written


def orm(src: str, dst: str, *, batch: int = BATCH) -> tuple[int, int]:
    """A naive ORM loop: ``session.merge()`` per row, commit per page."""
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    fact_class = _orm_model()
    de = sa.create_engine(dst)
    read = 0
    with Session(de) as session:
        for page in _paid_pages(src, batch):
            read += len(page)
            for r in page:
                session.merge(fact_class(id=r.id, customer=r.customer_id, status=r.status, note=r.note,
                                         updated_at=r.updated_at, amount_cents=int(r.amount * 100)))
            session.commit()
            session.expunge_all()
    de.dispose()
    return read, read


def _orm_model() -> Any:
    import sqlalchemy as sa
    from sqlalchemy.orm import DeclarativeBase, mapped_column

    class Base(DeclarativeBase):
        pass

    class Fact(Base):
        __tablename__ = "fact_orders"
        id = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
        customer = mapped_column(sa.BigInteger)
        status = mapped_column(sa.Text)
        note = mapped_column(sa.Text)
        updated_at = mapped_column(sa.DateTime)
        amount_cents = mapped_column(sa.BigInteger)

    return Fact


# --------------------------------------------------------------------------- dlt


def dlt_merge(src: str, dst: str, *, batch: int = BATCH) -> tuple[int, int]:
    """dlt: ``sql_table`` source (where pushed into the query), the transform as ``add_map``, merge on id."""
    import dlt
    import sqlalchemy as sa
    from dlt.sources.sql_database import sql_table

    def paid_only(query: Any, table: Any) -> Any:
        return query.where(table.c.status == "paid")

    def transform(row: dict[str, Any]) -> dict[str, Any]:
        return {"id": row["id"], "customer": row["customer_id"], "status": row["status"], "note": row["note"],
                "updated_at": row["updated_at"], "amount_cents": int(row["amount"] * 100)}

    def nullable(table: Any) -> Any:
        # the reflected NOT NULLs would become constraints of fact_orders on columns the transform renames/drops
        for column in table.columns:
            column.nullable = True
        return table

    resource = sql_table(credentials=src, table="orders", chunk_size=batch, query_adapter_callback=paid_only,
                         table_adapter_callback=nullable, reflection_level="full")
    resource = resource.add_map(transform)
    resource.apply_hints(table_name="fact_orders", write_disposition="merge", primary_key="id")
    destination = _dlt_destination(dst)
    counter = {"n": 0}

    def count(row: dict[str, Any]) -> dict[str, Any]:
        counter["n"] += 1
        return row

    resource = resource.add_map(count)
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = dlt.pipeline(pipeline_name="bench", pipelines_dir=tmp, destination=destination,
                                dataset_name=DLT_DATASET, progress=None)
        info = pipeline.run(resource)
        info.raise_on_failed_jobs()
    del sa
    return counter["n"], counter["n"]


def _dlt_destination(dst: str) -> Any:
    import dlt

    if dst.startswith("postgresql"):
        return dlt.destinations.postgres(credentials=_libpq(dst))
    return dlt.destinations.sqlalchemy(credentials=dst)


DLT_DATASET = "bench"
"""dlt loads into a dataset of its own: schema ``bench`` on PostgreSQL, an ATTACHed file on SQLite."""


def dlt_sink_table(dst: str) -> str:
    """Where dlt's merge leaves the rows (what the sink digest reads)."""
    return f"{DLT_DATASET}.fact_orders"


def dlt_arrow(src: str, dst: str, *, batch: int = 50_000, file_format: str | None = None) -> tuple[int, int]:
    """dlt at its fastest: ``sql_table(backend="pyarrow")`` (the filter in the query), the transform as a
    vectorised Arrow map over each chunk, merge on id; PostgreSQL loads through COPY (``csv``), SQLite
    through the file format given (``parquet`` by default: the Arrow table as it is)."""
    import dlt
    import pyarrow as pa
    import pyarrow.compute as pc
    from dlt.sources.sql_database import sql_table

    def paid_only(query: Any, table: Any) -> Any:
        return query.where(table.c.status == "paid")

    def nullable(table: Any) -> Any:  # as in dlt_merge: no NOT NULL carried onto renamed columns
        for column in table.columns:
            column.nullable = True
        return table

    counter = {"n": 0}
    truncate = pc.CastOptions(target_type=pa.int64(), allow_decimal_truncate=True, allow_float_truncate=True)

    def transform(chunk: Any) -> Any:
        amount = chunk.column("amount")
        if pa.types.is_floating(amount.type):  # a REAL affinity read as float: round as Sling's query does
            cents = pc.cast(pc.round(pc.multiply(amount, 100.0)), options=truncate)
        else:  # NUMERIC read as decimal128: exact, truncated as int() truncates
            cents = pc.cast(pc.multiply(amount, pa.scalar(100, pa.int64())), options=truncate)
        counter["n"] += chunk.num_rows
        return pa.table({"id": chunk.column("id"), "customer": chunk.column("customer_id"),
                         "status": chunk.column("status"), "note": chunk.column("note"),
                         "updated_at": chunk.column("updated_at"), "amount_cents": cents})

    resource = sql_table(credentials=src, table="orders", chunk_size=batch, backend="pyarrow",
                         query_adapter_callback=paid_only, table_adapter_callback=nullable,
                         reflection_level="full_with_precision")
    resource = resource.add_map(transform)
    resource.apply_hints(table_name="fact_orders", write_disposition="merge", primary_key="id")
    if file_format is None:
        file_format = "csv" if dst.startswith("postgresql") else "parquet"
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = dlt.pipeline(pipeline_name="bench", pipelines_dir=tmp, destination=_dlt_destination(dst),
                                dataset_name=DLT_DATASET, progress=None)
        info = pipeline.run(resource, loader_file_format=file_format)  # type: ignore[arg-type]
        info.raise_on_failed_jobs()
    return counter["n"], counter["n"]


# --------------------------------------------------------------------------- COPY / stdlib paths and the floor


def copy_pg_pg(src: str, dst: str, *, batch: int = BATCH) -> tuple[int, int]:
    """COPY (SELECT ...) TO STDOUT -> Python per row -> COPY into a temp staging table -> one merge."""
    import psycopg

    n = 0
    with psycopg.connect(_libpq(src)) as sc, psycopg.connect(_libpq(dst)) as dc:
        dc.execute("CREATE TEMP TABLE stage (id int8, customer int8, status text, note text, updated_at timestamp, "
                   "amount_cents int8) ON COMMIT DROP")
        with (sc.cursor().copy(f"COPY (SELECT {SELECT_COLS} FROM orders WHERE status = 'paid') TO STDOUT") as out,
              dc.cursor().copy(f"COPY stage ({', '.join(FACT_COLS)}) FROM STDIN (FORMAT BINARY)") as into):
            out.set_types(PG_TYPES)
            into.set_types(["int8", "int8", "text", "text", "timestamp", "int8"])
            write = into.write_row
            for i, cust, amount, status, note, ts in out.rows():
                write((i, cust, status, note, ts, int(amount * 100)))
                n += 1
        written = dc.execute(_pg_merge_sql("stage")).rowcount
        dc.commit()
    return n, written


def copy_pg_sqlite(src: str, dst: str, *, batch: int = BATCH) -> tuple[int, int]:
    """COPY (SELECT ...) TO STDOUT -> Python per row -> stdlib sqlite3 executemany upsert."""
    import psycopg

    n = 0
    con = sqlite3.connect(_sqlite_path(dst))
    sql = _sqlite_upsert_sql()
    query = f"COPY (SELECT {SELECT_COLS} FROM orders WHERE status = 'paid') TO STDOUT"
    with psycopg.connect(_libpq(src)) as sc, sc.cursor().copy(query) as out:
        out.set_types(PG_TYPES)
        buf: list[tuple[Any, ...]] = []
        for i, cust, amount, status, note, ts in out.rows():
            buf.append((i, cust, status, note, ts.isoformat(" "), int(amount * 100)))
            if len(buf) >= batch:
                con.executemany(sql, buf)
                n += len(buf)
                buf = []
        con.executemany(sql, buf)
        n += len(buf)
    con.commit()
    con.close()
    return n, n


def stdlib_sqlite(src: str, dst: str, *, batch: int = BATCH) -> tuple[int, int]:
    """stdlib sqlite3: fetchmany pages -> Python per row -> executemany of one prepared upsert."""
    s = sqlite3.connect(_sqlite_path(src))
    d = sqlite3.connect(_sqlite_path(dst))
    sql = _sqlite_upsert_sql()
    n = 0
    cur = s.execute(f"SELECT {SELECT_COLS} FROM orders WHERE status = 'paid'")
    while page := cur.fetchmany(batch):
        d.executemany(sql, [(i, c, st, note, ts, int(a * 100)) for i, c, a, st, note, ts in page])
        n += len(page)
    d.commit()
    s.close()
    d.close()
    return n, n


def floor_pg(src: str, dst: str, *, batch: int = BATCH) -> tuple[int, int]:
    """One statement in the source database: INSERT ... SELECT ... WHERE ... ON CONFLICT."""
    import psycopg

    assert src == dst, "the floor runs inside one database"
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in UPDATE)
    with psycopg.connect(_libpq(src)) as c:
        written = c.execute(
            f"INSERT INTO fact_orders ({', '.join(FACT_COLS)}) SELECT id, customer_id, status, note, updated_at, "
            f"trunc(amount * 100)::int8 FROM orders WHERE status = 'paid' ON CONFLICT (id) DO UPDATE SET {sets}"
        ).rowcount
        c.commit()
    return written, written


def floor_sqlite(src: str, dst: str, *, batch: int = BATCH, exact: bool = False) -> tuple[int, int]:
    """One statement with the source ATTACHed: INSERT ... SELECT ... WHERE true ON CONFLICT.

    As written by hand it computes cents on floats (0.29 * 100 -> 28) and copies updated_at as stored;
    ``exact`` writes what the row path writes for this data (whole cents, '... .000000' timestamps),
    knowing what a generic statement has to check: that amounts have 2 decimals and timestamps one shape.
    """
    d = sqlite3.connect(_sqlite_path(dst))
    d.execute("ATTACH DATABASE ? AS src", (_sqlite_path(src),))
    sets = ", ".join(f"{c} = excluded.{c}" for c in UPDATE)
    at, cents = ("updated_at || '.000000'", "CAST(round(amount * 100) AS INTEGER)") if exact else (
        "updated_at", "CAST(amount * 100 AS INTEGER)")
    written = d.execute(
        f"INSERT INTO fact_orders ({', '.join(FACT_COLS)}) SELECT id, customer_id, status, note, {at}, "
        f"{cents} FROM src.orders WHERE status = 'paid' ON CONFLICT (id) DO UPDATE SET {sets}"
    ).rowcount
    d.commit()
    d.close()
    return written, written


APPROACHES: dict[str, Callable[..., tuple[int, int]]] = {
    "ours": ours,
    "ours_run": functools.partial(ours, transaction="run"),
    "ours_rows": functools.partial(ours, pushdown=False),
    "ours_cli": ours_cli,
    "ours_cli_rows": functools.partial(ours_cli, pushdown=False),
    "sling": sling,
    "core": core,
    "orm": orm,
    "dlt": dlt_merge,
    "dlt_arrow": dlt_arrow,
    "dlt_arrow_jsonl": functools.partial(dlt_arrow, file_format="typed-jsonl"),
    "dlt_arrow_insert": functools.partial(dlt_arrow, file_format="insert_values"),
    "copy_pg_pg": copy_pg_pg,
    "copy_pg_sqlite": copy_pg_sqlite,
    "stdlib_sqlite": stdlib_sqlite,
    "floor_pg": floor_pg,
    "floor_sqlite": floor_sqlite,
    "floor_sqlite_exact": functools.partial(floor_sqlite, exact=True),
}
# each of the others also as a whole process of its own (start-up and imports included): NAME_process
PROCESS_APPROACHES = ("dlt_arrow", "dlt_arrow_jsonl", "dlt_arrow_insert", "copy_pg_pg", "copy_pg_sqlite",
                      "stdlib_sqlite", "floor_pg", "floor_sqlite", "floor_sqlite_exact")
APPROACHES.update({f"{name}_process": in_fresh_process(name) for name in PROCESS_APPROACHES})
WHOLE_PROCESS = {"ours_cli", "ours_cli_rows", "sling", *(f"{name}_process" for name in PROCESS_APPROACHES)}
"""The approaches timed as a whole process (the RSS is that process's)."""


if __name__ == "__main__":  # python approaches.py NAME SRC DST: one in-process approach, its counts as JSON
    import json
    import sys

    print(json.dumps(APPROACHES[sys.argv[1]](sys.argv[2], sys.argv[3])))
