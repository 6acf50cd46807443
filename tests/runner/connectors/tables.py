"""Test tables and spec builders shared by the connector tests."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from activedataflow.model import RedisSink, RedisSource, SqlSink, SqlSource
from sqlalchemy.dialects import mysql

# microseconds survive on MariaDB only with DATETIME(6)
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
T0 = dt.datetime(2024, 3, 31, 1, 30, 0, 123456)


def orders_table(metadata: sa.MetaData, name: str = "orders", **kw: Any) -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.BigInteger, nullable=False),
        sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("status", sa.String(40)),
        sa.Column("note", sa.Text),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        **kw,
    )


def order(i: int, **over: Any) -> dict[str, Any]:
    row = {
        "id": i, "customer_id": i % 7, "amount": Decimal(i) / 4 + Decimal("0.01"),
        "status": "paid" if i % 2 else "open", "note": f"note {i}", "updated_at": T0 + dt.timedelta(seconds=i),
    }
    row.update(over)
    return row


def make_orders(url: str, rows: list[dict[str, Any]], *, name: str = "orders", schema: str | None = None) -> sa.Table:
    """(Re)create the orders table at ``url`` with ``rows``."""
    engine = sa.create_engine(url)
    md = sa.MetaData(schema=schema)
    table = orders_table(md, name)
    with engine.begin() as c:
        table.drop(c, checkfirst=True)
        table.create(c)
        if rows:
            c.execute(table.insert(), rows)
    engine.dispose()
    return table


def create(url: str, *tables_sql: sa.Table) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as c:
        for t in tables_sql:
            t.drop(c, checkfirst=True)
            t.create(c)
    engine.dispose()


def insert(url: str, table: str, rows: list[dict[str, Any]]) -> None:
    engine = sa.create_engine(url)
    t = sa.Table(table, sa.MetaData(), autoload_with=engine)
    with engine.begin() as c:
        c.execute(t.insert(), rows)
    engine.dispose()


def read_table(url: str, table: str, order_by: str = "id") -> list[dict[str, Any]]:
    engine = sa.create_engine(url)
    t = sa.Table(table, sa.MetaData(), autoload_with=engine)
    with engine.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(sa.select(t).order_by(t.c[order_by]))]
    engine.dispose()
    return rows


def sql_source(url: str, **fields: Any) -> SqlSource:
    return SqlSource.model_validate({"type": "sql", "connection": {"url": url}, "table": "orders", **fields})


def sql_sink(url: str, **fields: Any) -> SqlSink:
    return SqlSink.model_validate({"type": "sql", "connection": {"url": url}, "table": "fact_orders", **fields})


def redis_sink(url: str, **fields: Any) -> RedisSink:
    return RedisSink.model_validate({"type": "redis", "connection": {"url": url}, "keyTemplate": "order:{id}",
                                     **fields})


def redis_source(url: str, **fields: Any) -> RedisSource:
    return RedisSource.model_validate({"type": "redis", "connection": {"url": url}, **fields})
