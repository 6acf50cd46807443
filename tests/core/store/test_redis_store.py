"""The Redis backend's own details (core/store/redis_store.py); the store contract is test_conformance.py's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from activedataflow.errors import ConfigError
from activedataflow.store import Counts, FlowUpsert, UnknownRun, open_store
from activedataflow.store.redis_store import RedisStore

from tests.core.store.conftest import url_of

T0 = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)

REDIS_BACKENDS = [
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("memory", id="memory"),
]


@pytest.mark.parametrize("url", [
    pytest.param("redis://:secret@127.0.0.1:notaport/0", id="port-not-a-number"),
    pytest.param("redis://:secret@127.0.0.1:99999/0", id="port-out-of-range"),
    pytest.param("redis://:secret@127.0.0.1:6379/0?socket_timeout=soon", id="bad-option"),
    pytest.param("redis://:secret@127.0.0.1:6379/flows", id="database-not-a-number"),
])
def test_a_malformed_redis_url_is_a_config_error_naming_the_redacted_url(url: str) -> None:
    with pytest.raises(ConfigError, match="is not a valid Redis URL") as err:
        RedisStore.from_url(url)
    assert "secret" not in str(err.value) and "redis://:***@127.0.0.1" in str(err.value)


def test_a_database_path_that_is_not_a_number_is_named_not_taken_as_database_0() -> None:
    with pytest.raises(ConfigError, match=r"the path /flows is not a database number"):
        RedisStore.from_url("redis://127.0.0.1:6379/flows")


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379", "redis://127.0.0.1:6379/", "rediss://127.0.0.1/15"])
def test_a_url_without_a_path_or_with_a_number_is_accepted(url: str) -> None:
    RedisStore.from_url(url).close()  # no connection is made until the first command


def test_repr_names_the_address_without_the_password() -> None:
    store = RedisStore.from_url("redis://:secret@cache.example:6379/2")
    assert repr(store) == "RedisStore('redis://:***@cache.example:6379/2')"
    store.close()


@pytest.mark.parametrize("backend", REDIS_BACKENDS)
def test_finishing_a_run_deleted_meanwhile_is_unknown_and_writes_no_stray_record(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """The flow (and its runs) deleted between the run's first read and its WATCHed transaction.

    The race is made deterministic by deleting the flow right after that first read (a patched
    ``hget`` of this client): no real interleaving of two clients lands there reliably."""
    store = open_store(url_of(request, backend))
    assert isinstance(store, RedisStore)
    try:
        store.upsert_flow(FlowUpsert(name="orders", namespace="shop", spec={}))
        run = store.claim("orders", "shop", now=T0, runner_id="runner-a", lease_seconds=60)
        assert run is not None
        store.start_run(run.id, now=T0, lease_seconds=60)
        read = store.r.hget

        def read_then_delete_the_flow(*args: Any) -> Any:
            value = read(*args)
            assert store.delete_flow("orders", "shop") is True
            return value

        monkeypatch.setattr(store.r, "hget", read_then_delete_the_flow)
        with pytest.raises(UnknownRun, match=repr(run.id)):
            store.finish_run(run.id, status="success", now=T0, counts=Counts(3, 3, 0))
        monkeypatch.undo()
        assert store.r.exists(f"adf:run:{run.id}", "adf:flow:shop/orders") == 0  # nothing written back
        assert store.get_run(run.id) is None and store.list_runs() == []
    finally:
        store.close()
