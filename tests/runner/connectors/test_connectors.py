"""The connectors package itself (runner/connectors/__init__.py): where a spec reads or writes, for messages."""

from __future__ import annotations

from activedataflow.runner.connectors import address_of

from tests.runner.connectors.tables import sql_sink, sql_source


def test_a_sql_address_is_the_table_at_host_port_and_database_without_the_password() -> None:
    url = "postgresql+psycopg://adf:s3cr3t-pw@db.internal/shop"
    assert address_of(sql_source(url), url) == "orders at db.internal:5432/shop"
    assert address_of(sql_sink("mysql://adf:pw@maria:3307/dw"), "mysql://adf:pw@maria:3307/dw") == (
        "fact_orders at maria:3307/dw")
    assert address_of(sql_sink("sqlite:////data/dw.db"), "sqlite:////data/dw.db") == (
        "fact_orders at SQLite database /data/dw.db")


def test_a_url_that_is_not_a_database_url_leaves_the_table_alone() -> None:
    """The connector refuses such a URL when it opens (test_sql_source); messages before that name the table."""
    assert address_of(sql_source("orders-db"), "orders-db") == "orders"
