"""`adf demo`: sample data in the embedded default (SQLite) and a sample flow on it."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["make_orders", "prepare_demo"]

STATUSES = ("paid", "pending", "refunded", "paid")

MANIFEST = """\
apiVersion: activedataflow.io/v1alpha1
kind: DataFlow
metadata:
  name: paid-orders
  namespace: demo
spec:
  description: Copy paid orders into the warehouse (adf demo)
  schedule: "*/15 * * * *"
  source:
    type: sql
    connection: {{url: "sqlite:///{shop}"}}
    table: orders
    columns: [id, customer_id, amount, status, updated_at]
    where: [{{column: status, op: "=", value: paid}}]
    batchSize: 5000
    incremental: {{cursorColumn: updated_at}}
  transform:
    - rename: {{customer_id: customer}}
    - filter: "row.amount > 0"
    - set: {{amount_cents: "int(row.amount * 100)"}}
    - drop: [amount]
  sink:
    type: sql
    connection: {{url: "sqlite:///{warehouse}"}}
    table: fact_orders
    mode: upsert
    uniqueBy: [id]
    updateOnly: [amount_cents, status, updated_at]
    batchSize: 5000
    transaction: batch
"""


def make_orders(path: Path, rows: int, *, start_id: int = 1, seed: int = 7) -> None:
    """Create (if needed) and fill the demo `orders` table with ``rows`` rows from ``start_id``."""
    rnd = random.Random(seed + start_id)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, "
            "amount NUMERIC(12,2) NOT NULL, status TEXT NOT NULL, note TEXT, updated_at TIMESTAMP NOT NULL)"
        )
        db.executemany(
            "INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?, ?, ?)",
            (
                (
                    i,
                    rnd.randint(1, 5000),
                    f"{rnd.randint(-500, 100_000) / 100:.2f}",
                    rnd.choice(STATUSES),
                    f"order {i} for the demo",
                    (base + timedelta(seconds=i * 37)).strftime("%Y-%m-%d %H:%M:%S.%f"),
                )
                for i in range(start_id, start_id + rows)
            ),
        )


def prepare_demo(workdir: str | Path, *, rows: int = 10_000) -> tuple[Path, str]:
    """Write shop.db (source), warehouse.db (sink) and paid-orders.yaml into ``workdir``."""
    root = Path(workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    shop, warehouse = root / "shop.db", root / "warehouse.db"
    fresh = not shop.exists()
    if fresh:
        make_orders(shop, rows)
    else:  # a second `adf demo` adds new orders, so the incremental cursor has something to pick up
        with sqlite3.connect(shop) as db:
            last = db.execute("SELECT COALESCE(MAX(id), 0) FROM orders").fetchone()[0]
        make_orders(shop, max(rows // 10, 1), start_id=last + 1)
    with sqlite3.connect(warehouse) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS fact_orders (id INTEGER PRIMARY KEY, customer INTEGER NOT NULL, "
            "status TEXT NOT NULL, updated_at TIMESTAMP NOT NULL, amount_cents INTEGER NOT NULL)"
        )
    manifest = root / "paid-orders.yaml"
    manifest.write_text(MANIFEST.format(shop=shop, warehouse=warehouse))
    with sqlite3.connect(shop) as db:
        total = db.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
    what = "created" if fresh else "added new orders to"
    return manifest, f"demo: {what} {shop} ({total} orders); sink {warehouse}; flow {manifest}"
