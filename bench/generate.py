"""Generate the PERF_ANCHORS workload: ``orders`` with N rows, about half ``paid``.

    orders(id bigint pk, customer_id bigint, amount numeric(12,2), status text,
           note text (~40 chars), updated_at timestamp)

The same deterministic rows (seeded) go into a SQLite file and/or a PostgreSQL
database, so every approach moves the same data. PostgreSQL is loaded with COPY,
SQLite with ``executemany``; both are fast enough to regenerate 1M rows in
seconds. ``fact_orders`` (the sink) is created by :func:`create_fact` and
emptied before every measured run by :func:`reset_fact`.

Usage (by hand)::

    bench/.venv/bin/python bench/generate.py --rows 100000 --sqlite /tmp/orders.db --pg URL
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import string
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal

STATUSES = ("paid", "pending", "refunded", "cancelled")
BASE_TIME = datetime(2024, 1, 1)
CHUNK = 50_000

PG_ORDERS = """
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    amount numeric(12,2) NOT NULL,
    status text NOT NULL,
    note text,
    updated_at timestamp NOT NULL
)"""
PG_FACT = """
CREATE TABLE IF NOT EXISTS fact_orders (
    id bigint PRIMARY KEY,
    customer bigint,
    status text,
    note text,
    updated_at timestamp,
    amount_cents bigint
)"""
# SQLite keeps NUMERIC as it is given; the runner's SQLAlchemy Numeric type turns it into Decimal.
SQLITE_ORDERS = """
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    amount NUMERIC(12,2) NOT NULL,
    status TEXT NOT NULL,
    note TEXT,
    updated_at TIMESTAMP NOT NULL
)"""
SQLITE_FACT = """
CREATE TABLE IF NOT EXISTS fact_orders (
    id INTEGER PRIMARY KEY,
    customer INTEGER,
    status TEXT,
    note TEXT,
    updated_at TIMESTAMP,
    amount_cents INTEGER
)"""


def rows(n: int, seed: int = 42) -> Iterator[tuple[int, int, Decimal, str, str, datetime]]:
    """The N orders, always the same for the same seed. ~50% paid."""
    rnd = random.Random(seed)
    letters = string.ascii_letters + " "
    for i in range(1, n + 1):
        status = "paid" if rnd.random() < 0.5 else rnd.choice(STATUSES[1:])
        cents = rnd.randint(1, 999_999)
        note = "".join(rnd.choices(letters, k=rnd.randint(30, 50)))
        yield (i, rnd.randint(1, 100_000), Decimal(cents).scaleb(-2), status, note, BASE_TIME + timedelta(seconds=i))


def _chunks(n: int) -> Iterator[list[tuple]]:
    buf: list[tuple] = []
    for r in rows(n):
        buf.append(r)
        if len(buf) >= CHUNK:
            yield buf
            buf = []
    if buf:
        yield buf


def load_sqlite(path: str, n: int) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("DROP TABLE IF EXISTS orders")
    con.execute("DROP TABLE IF EXISTS fact_orders")
    con.execute(SQLITE_ORDERS)
    con.execute(SQLITE_FACT)
    for chunk in _chunks(n):
        # Decimal as its text (exact; SQLite stores NUMERIC '12.30' as REAL 12.3, as any app writing it would)
        con.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",
            [(i, c, str(a), s, note, u.isoformat(" ")) for i, c, a, s, note, u in chunk],
        )
    con.commit()
    con.close()


def load_pg(url: str, n: int) -> None:
    import psycopg

    with psycopg.connect(pg_dsn(url)) as con:
        con.execute("DROP TABLE IF EXISTS orders")
        con.execute("DROP TABLE IF EXISTS fact_orders")
        con.execute(PG_ORDERS)
        con.execute(PG_FACT)
        with con.cursor() as cur, cur.copy("COPY orders FROM STDIN") as copy:
            for chunk in _chunks(n):
                for r in chunk:
                    copy.write_row(r)
        con.commit()
        con.autocommit = True
        # set hint bits and the visibility map now, or the first approach measured pays for it
        con.execute("VACUUM (FREEZE, ANALYZE) orders")


def create_fact_sqlite(path: str) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(SQLITE_FACT)
    con.commit()
    con.close()


def create_fact_pg(url: str) -> None:
    import psycopg

    with psycopg.connect(pg_dsn(url)) as con:
        con.execute(PG_FACT)


def reset_fact(url_or_path: str) -> None:
    """Empty fact_orders (creating it if needed) before a measured run."""
    if url_or_path.startswith("postgresql"):
        import psycopg

        with psycopg.connect(pg_dsn(url_or_path)) as con:
            con.execute(PG_FACT)
            con.execute("TRUNCATE fact_orders")
    else:
        path = url_or_path.removeprefix("sqlite:///")
        con = sqlite3.connect(path)
        con.execute(SQLITE_FACT)
        con.execute("DELETE FROM fact_orders")
        con.commit()
        con.execute("VACUUM")
        con.close()


def pg_dsn(url: str) -> str:
    """A libpq DSN from a SQLAlchemy ``postgresql+psycopg://`` URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--sqlite", help="SQLite file to (re)create orders in")
    ap.add_argument("--pg", action="append", default=[], help="PostgreSQL URL to (re)create orders in (repeatable)")
    args = ap.parse_args()
    for path in [args.sqlite] if args.sqlite else []:
        t = time.perf_counter()
        load_sqlite(path, args.rows)
        print(f"sqlite {path}: {args.rows} rows in {time.perf_counter() - t:.1f}s")
    for url in args.pg:
        t = time.perf_counter()
        load_pg(url, args.rows)
        print(f"postgresql: {args.rows} rows in {time.perf_counter() - t:.1f}s")


if __name__ == "__main__":
    main()
