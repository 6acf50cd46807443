"""Choosing the store by URL, the schema migrations, and unreachable or malformed stores."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from activedataflow.errors import ConfigError, StoreUnavailable
from activedataflow.store import FlowUpsert, open_store
from activedataflow.store.migrations import HEAD_REVISION, VERSION_TABLE
from activedataflow.store.redis_store import RedisStore
from activedataflow.store.sql import SqlStore

from tests.core.store.conftest import url_of
from tests.services import PG_PASSWORD

UNREACHABLE = [
    pytest.param("postgresql+psycopg://u:secret@127.0.0.1:1/x", id="postgresql"),
    pytest.param("postgresql://u:secret@127.0.0.1:1/x", id="postgresql-default-driver"),
    pytest.param("mysql+pymysql://u:secret@127.0.0.1:1/x", id="mysql"),
    pytest.param("redis://:secret@127.0.0.1:1/0", id="redis"),
    pytest.param("redis://user:secret@127.0.0.1:1/0", id="redis-acl"),
]


@pytest.mark.parametrize("url", UNREACHABLE)
def test_ping_of_an_unreachable_store_names_the_address_not_the_password(url: str) -> None:
    store = open_store(url, migrate=False)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as err:
        store.ping()
    assert time.monotonic() - started < 5
    assert "127.0.0.1:1" in str(err.value) and "secret" not in str(err.value)
    assert "secret" not in store.url_for_display


@pytest.mark.parametrize("url", UNREACHABLE)
def test_opening_an_unreachable_store_fails_fast(url: str) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"cannot reach the store at .*127\.0\.0\.1:1") as err:
        open_store(url)
    assert time.monotonic() - started < 5
    assert "secret" not in str(err.value)


@pytest.mark.parametrize("url", UNREACHABLE)
def test_the_flow_listings_of_an_unreachable_store_name_the_address(url: str) -> None:
    """The operator's start-up sweep reads ``flow_keys`` and logs StoreUnavailable; anything else stops the start."""
    store = open_store(url, migrate=False)
    for listing in (store.list_flows, store.flow_keys):
        with pytest.raises(StoreUnavailable, match=r"cannot reach the store at .*127\.0\.0\.1:1") as err:
            listing()
        assert "secret" not in str(err.value)


def test_sqlite_in_a_missing_directory_is_unavailable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/missing/adf.db"
    with pytest.raises(StoreUnavailable, match=r"missing/adf\.db"):
        open_store(url)


@pytest.mark.parametrize(
    "url", ["ftp://u:secret@example.com/x", "oracle://u:secret@db/x", "no url at all", "mongodb://u:secret@h/db"]
)
def test_an_unknown_scheme_is_a_config_error_naming_the_redacted_url(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_store(url)
    assert "secret" not in str(err.value)
    assert url.replace("secret", "***") in str(err.value)
    assert "sqlite:///" in str(err.value)  # says what would work


def test_the_url_comes_from_the_argument_then_the_environment_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADF_STORE_URL", raising=False)
    default = open_store()
    assert isinstance(default, SqlStore) and default.url_for_display == "sqlite:///adf.db"
    default.close()
    assert (tmp_path / "adf.db").exists()

    monkeypatch.setenv("ADF_STORE_URL", "memory://")
    assert isinstance(open_store(), RedisStore)
    explicit = open_store(f"sqlite:///{tmp_path}/other.db")
    assert isinstance(explicit, SqlStore) and explicit.url_for_display.endswith("other.db")


def test_memory_stores_in_one_process_share_their_data(memory_url: str) -> None:
    first = open_store("memory://")
    first.upsert_flow(FlowUpsert(name="orders", namespace="shop", spec={}))
    second = open_store("memory://")
    assert [f.name for f in second.list_flows()] == ["orders"]


@pytest.mark.postgres
def test_postgresql_urls_get_the_psycopg_driver_and_a_masked_display(pg_url: str) -> None:
    plain = sa.make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    store = open_store(plain)
    assert isinstance(store, SqlStore) and store.url.drivername == "postgresql+psycopg"
    store.ping()
    assert PG_PASSWORD not in store.url_for_display and "***" in store.url_for_display
    store.close()


SQL_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_migrations_create_the_schema_once_and_record_the_revision(
    request: pytest.FixtureRequest, backend: str
) -> None:
    url = url_of(request, backend)
    store = open_store(url)
    store.upsert_flow(FlowUpsert(name="orders", namespace="shop", spec={"a": 1}))
    store.close()
    again = open_store(url)  # a second process/upgrade keeps the data
    assert [f.name for f in again.list_flows()] == ["orders"]
    again.close()

    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        assert {"flows", "runs", VERSION_TABLE} <= set(inspector.get_table_names())
        flow_indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("flows")}
        assert flow_indexes["ix_flows_enabled_next_run_at"] == ["enabled", "next_run_at"]
        run_indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("runs")}
        assert run_indexes["ix_runs_flow_created_at"] == ["flow_id", "created_at"]
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("flows")}
        uniques |= {tuple(i["column_names"]) for i in inspector.get_indexes("flows") if i.get("unique")}
        assert ("namespace", "name") in uniques
        with engine.connect() as c:
            assert c.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [HEAD_REVISION]
    finally:
        engine.dispose()


def test_a_redis_store_written_by_a_newer_layout_is_refused(memory_url: str) -> None:
    store = open_store(memory_url, migrate=False)
    assert isinstance(store, RedisStore)
    store.r.set("adf:schema", 99)
    with pytest.raises(ConfigError, match="layout version 99"):
        open_store(memory_url)


@pytest.mark.redis
def test_redis_keys_are_prefixed_and_hold_json(redis_url: str) -> None:
    store = open_store(redis_url)
    assert isinstance(store, RedisStore)
    store.upsert_flow(FlowUpsert(name="orders", namespace="shop", spec={"source": {"table": "orders"}}))
    store.commit_cursor("orders", "shop", {"id": 7})
    assert all(key.startswith("adf:") for key in store.r.keys("*"))
    assert store.r.hget("adf:flow:shop/orders", "cursor") == '{"id":7}'
    assert store.r.zscore("adf:due", "shop/orders") == float("-inf")


def test_the_head_revision_the_store_checks_is_alembics_newest() -> None:
    from activedataflow.store.migrations import HEAD_REVISION
    from activedataflow.store.sql import MIGRATIONS
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_opening_a_store_already_at_head_does_not_load_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/adf.db"
    open_store(url).close()  # migrated here
    probe = (
        "import sys; from activedataflow.store import open_store; s = open_store(sys.argv[1]); s.ping(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'mako'}))"
    )
    out = subprocess.run([sys.executable, "-c", probe, url], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
