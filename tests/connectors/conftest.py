"""Databases for the connector tests: every SQL behaviour runs on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa


@pytest.fixture
def mysql_url(mysql_server: str) -> Iterator[str]:
    """A fresh, empty MariaDB database for one test (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(mysql_server)
    with admin.begin() as c:
        c.execute(sa.text(f"CREATE DATABASE `{name}`"))
    try:
        yield sa.make_url(mysql_server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.begin() as c:
            c.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture
def sqlite_db(tmp_path) -> str:
    """An existing (empty) SQLite file: connectors refuse to create a missing one."""
    path = tmp_path / "data.db"
    sa.create_engine(f"sqlite:///{path}").connect().close()
    return f"sqlite:///{path}"


SQL_BACKENDS = {"sqlite": "sqlite_db", "postgresql": "pg_url", "mysql": "mysql_url"}


@pytest.fixture(params=list(SQL_BACKENDS))
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite, PostgreSQL and MariaDB."""
    return request.getfixturevalue(SQL_BACKENDS[request.param])


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url_fast(request: pytest.FixtureRequest) -> str:
    """SQLite and PostgreSQL, for the heavier property tests."""
    return request.getfixturevalue(SQL_BACKENDS[request.param])
