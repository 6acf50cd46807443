"""The one engine factory of the store and the SQL connectors (core/store/engine.py): what both get from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from activedataflow.runner.connectors.sql import create_sql_engine
from activedataflow.store import sql_url
from activedataflow.store.engine import create_engine, normalize_url
from activedataflow.store.sql import create_store_engine


class _Stop(Exception):
    """Raised from do_connect: the test has what it wanted to see, no server is asked."""


def connect_params(engine: sa.Engine) -> dict[str, Any]:
    """The keyword arguments ``engine`` hands the driver's connect(), without connecting."""
    seen: dict[str, Any] = {}

    @sa.event.listens_for(engine, "do_connect")
    def _capture(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        seen.update(cparams)
        raise _Stop

    with pytest.raises(_Stop):
        engine.connect()
    engine.dispose()
    return seen


@pytest.mark.parametrize(("url", "driver"), [
    ("postgres://u@db/x", "postgresql+psycopg"),
    ("postgresql://u@db/x", "postgresql+psycopg"),
    ("mysql://u@db/x", "mysql+pymysql"),
    ("mariadb://u@db/x", "mariadb+pymysql"),
    ("postgresql+psycopg://u@db/x", "postgresql+psycopg"),
    ("sqlite:///x.db", "sqlite"),
])
def test_a_bare_scheme_gets_the_driver_we_ship_in_the_store_and_the_connectors(url: str, driver: str) -> None:
    assert normalize_url(sa.make_url(url)).drivername == driver
    assert sql_url(url).drivername == driver
    if not url.startswith("sqlite"):
        assert create_sql_engine(url, field="spec.source.connection").url.drivername == driver


def test_the_store_and_the_connectors_keep_their_own_connect_timeouts() -> None:
    url = "postgresql+psycopg://u:pw@127.0.0.1:1/x"
    assert connect_params(create_store_engine(sa.make_url(url)))["connect_timeout"] == 5
    assert connect_params(create_sql_engine(url, field="spec.sink.connection"))["connect_timeout"] == 10


def test_a_connect_timeout_in_the_url_wins() -> None:
    url = "postgresql+psycopg://u:pw@127.0.0.1:1/x?connect_timeout=3"
    assert connect_params(create_store_engine(sa.make_url(url)))["connect_timeout"] == "3"
    assert connect_params(create_sql_engine(url, field="spec.sink.connection"))["connect_timeout"] == "3"


def test_sqlite_runs_the_callers_pragmas_and_begins_with_the_callers_statement(tmp_path: Path) -> None:
    begun: list[str] = []

    def begin(_conn: sa.Connection) -> str:
        begun.append("BEGIN IMMEDIATE")
        return "BEGIN IMMEDIATE"

    engine = create_engine(sa.make_url(f"sqlite:///{tmp_path / 'x.db'}"), connect_timeout=1, sqlite_timeout=7,
                           sqlite_pragmas=["PRAGMA foreign_keys=ON"], sqlite_begin=begin)
    with engine.connect() as conn, conn.begin():
        raw = conn.connection.driver_connection
        assert raw is not None and raw.isolation_level is None  # pysqlite emits no BEGIN of its own
        assert raw.in_transaction  # ours did
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 7000
    engine.dispose()
    assert begun == ["BEGIN IMMEDIATE"]
