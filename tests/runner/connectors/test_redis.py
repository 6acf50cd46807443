"""Redis sink (hash / JSON per key, TTL) and source (stream with resume, key pattern): real Redis and memory://."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import socket
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis
from activedataflow.errors import ConnectorError
from activedataflow.runner.connectors import address_of, open_sink, open_source
from activedataflow.runner.connectors.redis import RedisSinkWriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.runner.connectors.tables import redis_sink, redis_source

COLUMNS = ("id", "customer", "amount", "status", "updated_at")
T0 = dt.datetime(2024, 3, 31, 1, 30, tzinfo=dt.UTC)


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), "memory"])
def rurl(request: pytest.FixtureRequest) -> str:
    """The real Redis server (flushed) and the in-process emulator (a fresh memory:// server)."""
    if request.param == "redis":
        return request.getfixturevalue("redis_url")
    return f"memory://{uuid.uuid4().hex}"


def client(url: str) -> redis.Redis:
    if url.startswith("memory://"):
        from activedataflow.runner.connectors.redis import redis_client

        return redis_client(url, field="test", decode_responses=True)
    return redis.Redis.from_url(url, decode_responses=True)


def write(url: str, rows: list[tuple[Any, ...]], columns: tuple[str, ...] = COLUMNS, **fields: Any) -> RedisSinkWriter:
    sink = open_sink(redis_sink(url, **fields), url)
    assert isinstance(sink, RedisSinkWriter)
    sink.open(columns)
    sink.write(rows)
    sink.commit()
    sink.close()
    return sink


def read(url: str, cursor: Any = None, **fields: Any) -> tuple[tuple[str, ...], list[tuple[Any, ...]], list[Any]]:
    source = open_source(redis_source(url, **fields), url)
    try:
        columns = source.open(cursor)
        batches = list(source.batches())
    finally:
        source.close()
    return columns, [r for b in batches for r in b.rows], [b.cursor for b in batches]


# --------------------------------------------------------------------------- sink


def test_hash_per_key_from_the_template(rurl: str) -> None:
    sink = write(rurl, [(1, 7, Decimal("12.30"), "paid", T0), (2, 8, None, "open", T0)], batchSize=1)
    r = client(rurl)
    assert r.hgetall("order:1") == {"id": "1", "customer": "7", "amount": "12.30", "status": "paid",
                                    "updated_at": "2024-03-31T01:30:00+00:00"}
    assert r.hgetall("order:2") == {"id": "2", "customer": "8", "status": "open",
                                    "updated_at": "2024-03-31T01:30:00+00:00"}  # NULL fields left out
    assert r.ttl("order:1") == -1
    assert sink.stats.written == 2


def test_a_row_replaces_the_whole_hash(rurl: str) -> None:
    write(rurl, [(1, 7, Decimal(1), "paid", T0)])
    write(rurl, [(1, 7, None, "refunded", T0)])
    assert client(rurl).hgetall("order:1") == {"id": "1", "customer": "7", "status": "refunded",
                                               "updated_at": "2024-03-31T01:30:00+00:00"}


def test_json_per_key_is_exact(rurl: str) -> None:
    write(rurl, [(1, 7, Decimal("12.30"), None, T0)], format="json", keyTemplate="shop:{customer}:order:{id}")
    assert json.loads(client(rurl).get("shop:7:order:1")) == {
        "id": 1, "customer": 7, "amount": "12.30", "status": None, "updated_at": "2024-03-31T01:30:00+00:00"}


@pytest.mark.parametrize("fmt", ["hash", "json"])
def test_ttl_applies_to_every_key(rurl: str, fmt: str) -> None:
    write(rurl, [(i, 1, Decimal(1), "paid", T0) for i in range(3)], format=fmt, ttlSeconds=300)
    r = client(rurl)
    assert all(0 < r.ttl(f"order:{i}") <= 300 for i in range(3))


def test_rows_without_a_key_value_are_failed_rows(rurl: str) -> None:
    sink = write(rurl, [(1, 7, None, "paid", T0), (None, 8, None, "open", T0)], maxFailedRecords=1)
    assert (sink.stats.written, sink.stats.failed) == (1, 1)
    assert sink.stats.errors == ["row 2: key column id is null"]
    assert client(rurl).keys("order:*") == ["order:1"]


def test_more_failed_rows_than_allowed_fail_the_sink(rurl: str) -> None:
    with pytest.raises(ConnectorError, match=r"^spec\.sink\.maxFailedRecords: 1 row\(s\) failed, more than "
                                             r"maxFailedRecords \(0\); first: row 1: key column id is null$"):
        write(rurl, [(None, 8, None, "open", T0)])


def test_a_placeholder_that_is_not_a_column_lists_the_columns(rurl: str) -> None:
    sink = open_sink(redis_sink(rurl, keyTemplate="order:{order_id}"), rurl)
    with pytest.raises(ConnectorError, match=r"^spec\.sink\.keyTemplate: placeholder \{order_id\} is not a column "
                                             r"the flow writes; columns: id, customer, amount, status, updated_at$"):
        sink.open(COLUMNS)


def test_rows_are_flushed_in_pipelines_of_batch_size(rurl: str) -> None:
    sink = open_sink(redis_sink(rurl, batchSize=3), rurl)
    sink.open(COLUMNS)
    sink.write([(i, 1, None, "paid", T0) for i in range(5)])
    assert len(client(rurl).keys("order:*")) == 3  # one pipeline flushed, two rows buffered
    sink.rollback()  # drops the buffer; flushed keys stay (Redis has no rollback)
    assert sink.checkpoint() is True
    sink.close()
    assert len(client(rurl).keys("order:*")) == 3


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 10**6), st.text(max_size=20), st.booleans()), max_size=20,
                unique_by=lambda r: r[0]))
def test_hash_rows_read_back_as_text(rows: list[tuple[int, str, bool]]) -> None:
    url = f"memory://{uuid.uuid4().hex}"
    write(url, rows, ("id", "name", "flag"), batchSize=7)
    r = client(url)
    assert {k: r.hgetall(k) for k in r.keys("order:*")} == {
        f"order:{i}": {"id": str(i), "name": name, "flag": "true" if flag else "false"} for i, name, flag in rows}


def test_unreachable_redis_names_the_address_not_the_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://:s3cr3t-pw@127.0.0.1:{port}/0"
    with pytest.raises(ConnectorError, match=rf"^spec\.sink\.connection: cannot connect to Redis at 127\.0\.0\.1:"
                                             rf"{port}/0: ") as err:
        open_sink(redis_sink(url), url).open(COLUMNS)
    assert "s3cr3t" not in str(err.value)


def test_literal_text_after_the_last_placeholder_is_part_of_the_key(rurl: str) -> None:
    write(rurl, [(1, 7, None, "paid", T0)], keyTemplate="order:{id}:v1")
    assert client(rurl).keys("order:*") == ["order:1:v1"]


def test_a_key_template_that_does_not_parse_is_refused_at_open(rurl: str) -> None:
    sink = open_sink(redis_sink(rurl, keyTemplate="order:{id}:{status"), rurl)
    with pytest.raises(ConnectorError, match=r"^spec\.sink\.keyTemplate: invalid key template 'order:\{id\}:\{status': "
                                             r"expected '\}' before end of string$"):
        sink.open(COLUMNS)


def test_a_key_template_whose_only_braces_are_escaped_is_refused_at_open(rurl: str) -> None:
    """``{{id}}`` is the literal text ``{id}`` (the model's check sees a placeholder in it): every row one key."""
    sink = open_sink(redis_sink(rurl, keyTemplate="order:{{id}}"), rurl)
    with pytest.raises(ConnectorError, match=r"^spec\.sink\.keyTemplate: key template 'order:\{\{id\}\}' has no "
                                             r"\{column\} placeholder .*every row would write the same key$"):
        sink.open(COLUMNS)


def test_an_interval_is_written_to_a_hash_as_iso_8601(rurl: str) -> None:
    write(rurl, [(1, dt.timedelta(days=2, hours=1, minutes=30))], ("id", "wait"))
    assert client(rurl).hgetall("order:1") == {"id": "1", "wait": "P2DT1H30M"}


def test_a_url_that_is_not_a_redis_url_is_refused_without_the_password() -> None:
    url = "http://:s3cr3t-pw@cache:6379/0"
    with pytest.raises(ConnectorError, match=r"^spec\.sink\.connection: not a Redis URL: 'http://:\*\*\*@cache:6379/0' "
                                             r"\(Redis URL must specify one of the following schemes") as err:
        open_sink(redis_sink(url), url).open(COLUMNS)
    assert "s3cr3t" not in str(err.value)


def test_a_database_path_that_is_not_a_number_is_refused_naming_the_field() -> None:
    url = "redis://:s3cr3t-pw@cache:6379/orders"
    with pytest.raises(ConnectorError, match=r"^spec\.sink\.connection: not a Redis URL: "
                                             r"'redis://:\*\*\*@cache:6379/orders' "
                                             r"\(the path /orders is not a database number") as err:
        open_sink(redis_sink(url), url).open(COLUMNS)
    assert "s3cr3t" not in str(err.value)


def test_the_address_in_messages_is_host_port_and_database() -> None:
    assert address_of(redis_sink("redis://:pw@cache:6380/2"), "redis://:pw@cache:6380/2") == "Redis at cache:6380/2"
    assert address_of(redis_sink("redis://cache"), "redis://cache") == "Redis at cache:6379"
    # a port that is not a number: the connector refuses the URL when it opens; messages before that still name it
    assert address_of(redis_sink("redis://cache:63x9/0"), "redis://cache:63x9/0") == "Redis at cache:?/0"


@pytest.mark.redis
def test_closing_the_sink_closes_its_connection_and_closing_again_does_nothing(redis_url: str) -> None:
    admin = client(redis_url)
    before = len(admin.client_list())
    sink = write(redis_url, [(1, 7, None, "paid", T0)])  # write() closes the sink
    assert len(admin.client_list()) == before
    sink.close()
    assert len(admin.client_list()) == before
    assert admin.hgetall("order:1")["status"] == "paid"


# --------------------------------------------------------------------------- stream source


def add_events(url: str, n: int, start: int = 0) -> list[str]:
    r = client(url)
    return [r.xadd("orders", {"id": str(i), "status": "paid" if i % 2 else "open"}) for i in range(start, start + n)]


def test_stream_entries_in_order_in_batches(rurl: str) -> None:
    ids = add_events(rurl, 7)
    source = open_source(redis_source(rurl, stream="orders", batchSize=3), rurl)
    assert source.open() == ("id", "status")
    batches = list(source.batches())
    source.close()
    assert [len(b.rows) for b in batches] == [3, 3, 1]
    assert [r for b in batches for r in b.rows] == [(str(i), "paid" if i % 2 else "open") for i in range(7)]
    assert [b.cursor for b in batches] == [None, None, None]  # not incremental
    assert len(ids) == 7


def test_stream_resumes_strictly_after_the_committed_id(rurl: str) -> None:
    ids = add_events(rurl, 5)
    columns, rows, cursors = read(rurl, stream="orders", batchSize=2, incremental=True, columns=["_id", "id"])
    assert columns == ("_id", "id")
    assert rows == [(ids[i], str(i)) for i in range(5)]
    assert cursors == [ids[1], ids[3], ids[4]]
    more = add_events(rurl, 3, start=5)
    _, rows, cursors = read(rurl, cursors[1], stream="orders", batchSize=2, incremental=True, columns=["id"])
    assert rows == [(str(i),) for i in range(4, 8)]  # after the cursor of the second batch
    assert cursors[-1] == more[-1]
    _, rows, _ = read(rurl, more[-1], stream="orders", incremental=True)
    assert rows == []


def test_stream_limit(rurl: str) -> None:
    add_events(rurl, 10)
    _, rows, _ = read(rurl, stream="orders", batchSize=4, limit=6, columns=["id"])
    assert rows == [(str(i),) for i in range(6)]


def test_missing_stream_is_an_error(rurl: str) -> None:
    client(rurl).set("orders", "x")
    with pytest.raises(ConnectorError, match=r"^spec\.source\.stream: stream 'ordrs' not found in Redis at "):
        read(rurl, stream="ordrs")
    with pytest.raises(ConnectorError, match=r"^spec\.source\.stream: key 'orders' is a string, not a stream$"):
        read(rurl, stream="orders")


def test_a_committed_cursor_that_is_not_a_stream_id_is_refused(rurl: str) -> None:
    add_events(rurl, 1)
    with pytest.raises(ConnectorError, match=r"^spec\.source\.incremental: the committed cursor 'order-7' is not a "
                                             r"stream entry id$"):
        read(rurl, "order-7", stream="orders", incremental=True)


# --------------------------------------------------------------------------- key pattern source


def test_key_pattern_reads_hashes_and_json(rurl: str) -> None:
    r = client(rurl)
    for i in range(12):
        r.hset(f"order:{i}", mapping={"id": str(i), "status": "paid"})
    r.set("order:json", json.dumps({"id": 99, "status": "open", "extra": [1]}))
    r.set("customer:1", "not matched")
    r.rpush("order:list", "a list is skipped")
    columns, rows, cursors = read(rurl, keyPattern="order:*", batchSize=5, columns=["_key", "id", "status"])
    assert columns == ("_key", "id", "status")
    assert sorted(rows, key=lambda x: x[0]) == sorted(
        [(f"order:{i}", str(i), "paid") for i in range(12)] + [("order:json", 99, "open")], key=lambda x: x[0])
    assert set(cursors) == {None}


def test_key_pattern_columns_default_to_the_first_keys_fields(rurl: str) -> None:
    client(rurl).hset("order:1", mapping={"id": "1", "status": "paid"})
    columns, rows, _ = read(rurl, keyPattern="order:*")
    assert columns == ("id", "status")
    assert rows == [("1", "paid")]


def test_key_pattern_limit_and_batches(rurl: str) -> None:
    r = client(rurl)
    for i in range(30):
        r.hset(f"order:{i}", "id", str(i))
    source = open_source(redis_source(rurl, keyPattern="order:*", batchSize=4, limit=10), rurl)
    source.open()
    sizes = [len(b.rows) for b in source.batches()]
    source.close()
    assert sum(sizes) == 10 and max(sizes) <= 4


def test_key_pattern_cannot_be_incremental(rurl: str) -> None:
    with pytest.raises(ConnectorError, match=r"^spec\.source\.incremental: only a stream can be read incrementally"):
        read(rurl, keyPattern="order:*", incremental=True)


def test_a_string_that_is_not_json_is_read_as_its_value(rurl: str) -> None:
    client(rurl).set("greeting:1", "hello")
    columns, rows, _ = read(rurl, keyPattern="greeting:*", columns=["_key", "value"])
    assert columns == ("_key", "value")
    assert rows == [("greeting:1", "hello")]


@pytest.mark.parametrize("other_keys", [[], ["order:list"]], ids=["no key matches", "only a list matches"])
def test_a_pattern_matching_no_hash_or_string_reads_no_rows_with_the_key_column(rurl: str,
                                                                                  other_keys: list[str]) -> None:
    r = client(rurl)
    r.set("customer:1", "not matched")
    for key in other_keys:
        r.rpush(key, "a list is skipped")
    columns, rows, _ = read(rurl, keyPattern="order:*")
    assert columns == ("_key",)
    assert rows == []


# --------------------------------------------------------------------------- error paths, on the real Redis


@pytest.mark.redis
def test_a_stream_replaced_by_a_string_after_open_fails_the_read_with_wrongtype(redis_url: str) -> None:
    add_events(redis_url, 3)
    source = open_source(redis_source(redis_url, stream="orders", batchSize=2), redis_url)
    try:
        assert source.open() == ("id", "status")
        r = client(redis_url)
        r.delete("orders")
        r.set("orders", "no longer a stream")  # another client, between the sample and the first XRANGE
        port = redis_url.rsplit(":", 1)[1].split("/")[0]
        with pytest.raises(ConnectorError, match=rf"^spec\.source: reading Redis at 127\.0\.0\.1:{port}/0 failed: "
                                                 r"WRONGTYPE Operation against a key holding the wrong kind of value"):
            list(source.batches())
    finally:
        source.close()


def _after_each_scan(source: Any, then: Any) -> None:
    """Call ``then(keys)`` with the keys each real SCAN of ``source`` returned, before the source reads them."""
    real_scan = source._client.scan

    def scan(*args: Any, **kwargs: Any) -> Any:
        cursor, keys = real_scan(*args, **kwargs)
        then(keys)
        return cursor, keys

    source._client.scan = scan


def _after_the_type_lookup(source: Any, then: Any) -> None:
    """Call ``then()`` after each pipeline of TYPE lookups of ``source`` ran, before the values are read."""
    real_pipeline = source._client.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real_pipeline(*args, **kwargs)
        real_execute, calls = pipe.execute, []

        def execute(*a: Any, **k: Any) -> Any:
            result = real_execute(*a, **k)
            calls.append(1)
            if len(calls) == 1:  # the TYPE lookups: the reads go in the pipeline's second round trip
                then()
            return result

        pipe.execute = execute
        return pipe

    source._client.pipeline = pipeline


@pytest.mark.redis
def test_keys_deleted_between_scan_and_the_type_lookup_are_left_out(redis_url: str) -> None:
    r = client(redis_url)
    for i in range(6):
        r.hset(f"order:{i}", mapping={"id": str(i)})
    source = open_source(redis_source(redis_url, keyPattern="order:*", batchSize=100, columns=["_key", "id"]),
                         redis_url)
    deleted: list[str] = []
    try:
        source.open()

        def delete_two(keys: list[str]) -> None:
            if not deleted:
                deleted.extend(sorted(keys)[:2])
                r.delete(*deleted)

        _after_each_scan(source, delete_two)
        rows = [row for batch in source.batches() for row in batch.rows]
    finally:
        source.close()
    assert len(deleted) == 2
    assert sorted(rows) == sorted((f"order:{i}", str(i)) for i in range(6) if f"order:{i}" not in deleted)


@pytest.mark.redis
def test_keys_deleted_between_the_type_lookup_and_the_read_are_left_out(redis_url: str) -> None:
    r = client(redis_url)
    r.hset("order:1", mapping={"id": "1"})
    r.hset("order:2", mapping={"id": "2"})
    r.set("order:3", json.dumps({"id": 3}))
    r.set("order:4", json.dumps({"id": 4}))
    source = open_source(redis_source(redis_url, keyPattern="order:*", batchSize=100, columns=["_key", "id"]),
                         redis_url)
    try:
        source.open()
        _after_the_type_lookup(source, lambda: r.delete("order:2", "order:4"))  # one hash (HGETALL: {}), one GET (None)
        rows = [row for batch in source.batches() for row in batch.rows]
    finally:
        source.close()
    assert sorted(rows) == [("order:1", "1"), ("order:3", 3)]


@pytest.mark.redis
def test_a_pipeline_refused_mid_batch_fails_the_sink_and_writes_none_of_the_batch(redis_url: str) -> None:
    """A user allowed only the keys order:1*: the batch's second row is refused (no permission) while MULTI queues it,
    so EXEC discards the whole batch and the sink fails naming the address, not the password."""
    user, password = f"w{uuid.uuid4().hex[:8]}", "s3cr3t-writer-pw"
    admin = client(redis_url)
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~order:1*", "+@all")
    try:
        host_port = redis_url.split("://", 1)[1]
        url = f"redis://{user}:{password}@{host_port}"
        sink = open_sink(redis_sink(url, batchSize=10), url)
        sink.open(COLUMNS)
        sink.write([(1, 7, 1, "paid", T0), (2, 8, 2, "paid", T0), (10, 9, 3, "paid", T0)])
        expected = (rf"^spec\.sink: writing to Redis at {re.escape(host_port)} failed: Command # 3 \(DEL order:2\) "
                    r"of pipeline caused error: this user has no permissions to access one of the keys")
        with pytest.raises(ConnectorError, match=expected) as err:
            sink.commit()
        sink.close()
    finally:
        admin.execute_command("ACL", "DELUSER", user)
    assert password not in str(err.value)
    assert admin.keys("order:*") == []  # order:1 and order:10 were allowed, and not written either
    assert sink.stats.written == 0


@contextlib.contextmanager
def acl_user(redis_url: str, *rules: str) -> Iterator[tuple[str, str]]:
    """A Redis user with ``rules`` (ACL SETUSER), deleted afterwards: (user name, URL logging in as it)."""
    user, password = f"u{uuid.uuid4().hex[:8]}", "s3cr3t-user-pw"
    admin = client(redis_url)
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", *rules)
    try:
        yield user, f"redis://{user}:{password}@{redis_url.split('://', 1)[1]}"
    finally:
        admin.execute_command("ACL", "DELUSER", user)


@pytest.mark.redis
def test_a_source_not_allowed_to_read_the_stream_fails_at_open_with_the_servers_refusal(redis_url: str) -> None:
    add_events(redis_url, 1)
    with acl_user(redis_url, "~*", "+ping", "+client") as (_, url):
        host_port = redis_url.split("://", 1)[1]
        with pytest.raises(ConnectorError, match=rf"^spec\.source: reading Redis at {re.escape(host_port)} failed: "
                                                 r".*no permissions to run the 'type' command") as err:
            read(url, stream="orders")
    assert "s3cr3t" not in str(err.value)

