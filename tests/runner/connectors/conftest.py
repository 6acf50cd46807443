"""Databases for the connector tests: every SQL behaviour runs on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa


@pytest.fixture
def sqlite_db(tmp_path) -> str:
    """An existing (empty) SQLite file: connectors refuse to create a missing one."""
    path = tmp_path / "data.db"
    sa.create_engine(f"sqlite:///{path}").connect().close()
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def pg_connectors_db(pg_server: str) -> Iterator[tuple[str, sa.Engine]]:
    """One PostgreSQL database for the connector tests (each test gets its own schema in it)."""
    name = f"connectors_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(pg_server).set(database=name)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        yield url.render_as_string(hide_password=False), engine
    finally:
        engine.dispose()
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_schema_url(pg_connectors_db: tuple[str, sa.Engine]) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema, first on the URL's search_path: an empty database for the
    connectors at a fraction of the cost of CREATE DATABASE."""
    url, engine = pg_connectors_db
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with engine.connect() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    finally:
        with engine.connect() as c:
            c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


SQL_BACKENDS = {"sqlite": "sqlite_db", "postgresql": "pg_schema_url", "mysql": "mysql_url"}
# the servers a backend starts (got at run time, so not seen at collection: tests/conftest.py SERVER_MARKERS)
BACKEND_PARAMS = {"sqlite": pytest.param("sqlite"),
                  "postgresql": pytest.param("postgresql", marks=pytest.mark.postgres),
                  "mysql": pytest.param("mysql", marks=pytest.mark.mysql)}


@pytest.fixture(params=list(BACKEND_PARAMS.values()))
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite, PostgreSQL and MariaDB."""
    return request.getfixturevalue(SQL_BACKENDS[request.param])


@pytest.fixture(params=[BACKEND_PARAMS["sqlite"], BACKEND_PARAMS["postgresql"]])
def db_url_fast(request: pytest.FixtureRequest) -> str:
    """SQLite and PostgreSQL, for the heavier property tests."""
    return request.getfixturevalue(SQL_BACKENDS[request.param])


@pytest.fixture
def generic_sql(monkeypatch: pytest.MonkeyPatch) -> None:
    """The connectors' own SQLAlchemy paths: no per-dialect fast strategies, no raw-cursor source."""
    from activedataflow.runner.connectors import sql

    monkeypatch.setenv("ADF_FASTPATH", "off")
    monkeypatch.setattr(sql.sink, "_STRATEGIES", {})


@pytest.fixture(params=["fastpath", "generic"])
def sql_path(request: pytest.FixtureRequest) -> str:
    """The same test through the production fast paths and through the generic SQLAlchemy paths."""
    if request.param == "generic":
        request.getfixturevalue("generic_sql")
    return str(request.param)
