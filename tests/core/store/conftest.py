"""The store under test, once per backend: SQLite, PostgreSQL, Redis, memory:// and MariaDB."""

from __future__ import annotations

import pytest

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("memory", id="memory"),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]


def url_of(request: pytest.FixtureRequest, backend: str) -> str:
    fixture = {"sqlite": "sqlite_url", "postgresql": "pg_url", "redis": "redis_url", "memory": "memory_url",
               "mysql": "mysql_url"}[backend]
    return str(request.getfixturevalue(fixture))


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest) -> str:
    return url_of(request, request.param)


