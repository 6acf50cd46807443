"""The SQL tables (core/store/schema.py): what the timestamp columns take."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from activedataflow.store import open_store
from activedataflow.store.schema import flows
from activedataflow.store.sql import SqlStore

NOW = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)


def flow_row(**values: object) -> dict[str, object]:
    return {"name": "orders", "namespace": "shop", "description": "", "spec": {}, "enabled": True,
            "concurrency_policy": "Forbid", "created_at": NOW, "updated_at": NOW, **values}


def test_a_timestamp_column_refuses_a_naive_datetime_and_writes_nothing(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    assert isinstance(store, SqlStore)
    try:
        with pytest.raises(sa.exc.StatementError, match="naive datetime 2025-03-30T00:30:00"), \
                store._engine.begin() as c:
            c.execute(flows.insert().values(**flow_row(next_run_at=datetime(2025, 3, 30, 0, 30))))
        assert store.list_flows() == []
    finally:
        store.close()

