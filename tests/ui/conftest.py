"""The monitoring page's tests run on real stores: SQLite (a file) and memory:// (the emulator)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from activedataflow.store import Store, open_store
from activedataflow.store.redis_store import RedisStore


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'adf.db'}")
    else:
        s = open_store("memory://")
        assert isinstance(s, RedisStore)
        s.r.flushall()
    try:
        yield s
    finally:
        if isinstance(s, RedisStore):
            s.r.flushall()
        s.close()
