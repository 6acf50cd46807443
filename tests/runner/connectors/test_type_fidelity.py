"""Types in transit: what arrives in the sink for every (source, sink, plan, type, value), on the real servers.

A value arrives identical where the sink column can hold it; otherwise it goes through the mapping
README's "Types in transit" table documents (uuid and json as text, arrays as JSON text, interval as
ISO 8601 text, aware timestamps into a column without a zone as UTC), or its row fails naming the
column (counted as failed, the other rows written). NULL stays NULL everywhere.

Every source database gets one table with a column per type it has and a row per value (the row's
other columns NULL, so one value that must fail leaves the rest of the matrix alone, and every row
checks the NULL of every other column); each (source, sink, plan) is run once per session and every
cell asserts one arriving value, read back as the sink database's own text of it (PostgreSQL
``::text``, MariaDB ``CAST(... AS CHAR)``, SQLite ``typeof:value``, bytes as hex), so no driver's
conversion on the way back hides a change.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from activedataflow.runner.connectors import sql as sqlmod
from activedataflow.runner.executor import FlowExecutor
from activedataflow.runner.plan import plan_flow
from activedataflow.store import open_store

from tests.flows import dataflow, sql_sink, sql_source

pytestmark = [pytest.mark.postgres, pytest.mark.mysql, pytest.mark.redis, pytest.mark.timeout(300)]

PG, MY, LITE, RHASH, RJSON = "postgresql", "mysql", "sqlite", "redis-hash", "redis-json"
FAIL = object()  # the row fails, naming the column


@dataclass
class Value:
    src: dict[str, str]  # source database -> SQL literal (a database missing here has no such column)
    out: dict[str, Any]  # sink -> the arriving text (see ``read_back``), FAIL, or for redis-json the JSON value


@dataclass
class Type:
    name: str
    ddl: dict[str, str]  # database -> column type, as source and as sink
    values: list[Value] = field(default_factory=list)


def same(pg: str, lite: str | None = None, *, redis_json: Any = None, my: str | None = None,
         rhash: str | bytes | None = None) -> dict[str, Any]:
    """The usual expectation: PostgreSQL's and MariaDB's text ``pg``, SQLite's ``lite``, Redis the text too."""
    rhash = pg if rhash is None else rhash
    return {PG: pg, MY: pg if my is None else my, LITE: lite, RHASH: rhash,
            RJSON: rhash if redis_json is None else redis_json}


ALL3 = (PG, MY, LITE)


def lit(text: str, *dbs: str) -> dict[str, str]:
    return dict.fromkeys(dbs or ALL3, text)


TYPES = [
    Type("i16", {PG: "smallint", MY: "SMALLINT", LITE: "INTEGER"}, [
        Value(lit("-32768"), same("-32768", "integer:-32768", redis_json=-32768)),
        Value(lit("32767"), same("32767", "integer:32767", redis_json=32767)),
    ]),
    Type("i32", {PG: "integer", MY: "INT", LITE: "INTEGER"}, [
        Value(lit("-2147483648"), same("-2147483648", "integer:-2147483648", redis_json=-2147483648)),
    ]),
    Type("i64", {PG: "bigint", MY: "BIGINT", LITE: "INTEGER"}, [
        Value(lit("9223372036854775807"), same("9223372036854775807", "integer:9223372036854775807",
                                               redis_json=9223372036854775807)),
        Value(lit("-9223372036854775808"), same("-9223372036854775808", "integer:-9223372036854775808",
                                                redis_json=-9223372036854775808)),
    ]),
    Type("num", {PG: "numeric(12,4)", MY: "DECIMAL(12,4)", LITE: "NUMERIC(12,4)"}, [
        Value(lit("12345678.1234"), same("12345678.1234", "real:12345678.1234")),
        Value(lit("-0.0001"), same("-0.0001", "real:-0.0001")),
        Value(lit("0"), same("0.0000", "integer:0")),  # SQLite's NUMERIC affinity keeps 0.0 as INTEGER
    ]),
    Type("f64", {PG: "double precision", MY: "DOUBLE", LITE: "REAL"}, [
        Value(lit("1.5"), same("1.5", "real:1.5", redis_json=1.5)),
        Value(lit("-0.1"), same("-0.1", "real:-0.1", redis_json=-0.1)),
        Value(lit("1e300"), same("1e+300", "real:1.0e+300", my="1e300", redis_json=1e300)),
        Value({PG: "'NaN'"}, {PG: "NaN", MY: FAIL, LITE: FAIL, RHASH: "nan", RJSON: FAIL}),
        Value({PG: "'Infinity'", LITE: "9e999"}, {PG: "Infinity", MY: FAIL, LITE: "real:Inf", RHASH: "inf",
                                                   RJSON: FAIL}),
        Value({PG: "'-Infinity'", LITE: "-9e999"}, {PG: "-Infinity", MY: FAIL, LITE: "real:-Inf", RHASH: "-inf",
                                                     RJSON: FAIL}),
    ]),
    Type("flag", {PG: "boolean", MY: "BOOLEAN", LITE: "BOOLEAN"}, [
        Value({PG: "true", MY: "1", LITE: "1"}, same("true", "integer:1", my="1", redis_json=True)),
        Value({PG: "false", MY: "0", LITE: "0"}, same("false", "integer:0", my="0", redis_json=False)),
    ]),
    Type("txt", {PG: "text", MY: "TEXT", LITE: "TEXT"}, [
        Value(lit("'héllo wörld ✓ 𝄞 日本'"), same("héllo wörld ✓ 𝄞 日本", "text:héllo wörld ✓ 𝄞 日本")),
        Value(lit("''"), same("", "text:")),
    ]),
    Type("bin", {PG: "bytea", MY: "LONGBLOB", LITE: "BLOB"}, [
        Value({PG: "'\\x00ff10'::bytea", MY: "x'00ff10'", LITE: "x'00ff10'"},
              same("00ff10", "blob:00ff10", rhash=b"\x00\xff\x10", redis_json="AP8Q")),
        Value({PG: "''::bytea", MY: "''", LITE: "x''"}, same("", "blob:", rhash=b"", redis_json="")),
    ]),
    Type("day", {PG: "date", MY: "DATE", LITE: "DATE"}, [
        Value(lit("'2024-02-29'"), same("2024-02-29", "text:2024-02-29")),
    ]),
    Type("tod", {PG: "time", MY: "TIME(6)", LITE: "TIME"}, [
        Value(lit("'23:59:59.999999'"), same("23:59:59.999999", "text:23:59:59.999999")),
        Value(lit("'00:00:00'"), same("00:00:00", "text:00:00:00.000000", my="00:00:00.000000")),
    ]),
    Type("ts", {PG: "timestamp", MY: "DATETIME(6)", LITE: "DATETIME"}, [
        Value(lit("'2024-03-31 01:30:00.123456'"),
              same("2024-03-31 01:30:00.123456", "text:2024-03-31 01:30:00.123456",
                   rhash="2024-03-31T01:30:00.123456")),
    ]),
    Type("tstz", {PG: "timestamptz", MY: "DATETIME(6)", LITE: "DATETIME"}, [
        Value({PG: "'2024-03-31 01:30:00.5+02'"},
              same("2024-03-30 23:30:00.5+00", "text:2024-03-30 23:30:00.500000", my="2024-03-30 23:30:00.500000",
                   rhash="2024-03-30T23:30:00.500000+00:00")),
    ]),
    Type("span", {PG: "interval", MY: "TEXT", LITE: "TEXT"}, [
        Value({PG: "'1 year 2 mons 3 days'"}, same("1 year 2 mons 3 days", "text:P1Y2M3D", my="P1Y2M3D",
                                                   rhash="P1Y2M3D", redis_json="P1Y2M3D")),
        Value({PG: "'-1.5 seconds'"}, same("-00:00:01.5", "text:PT-1.5S", my="PT-1.5S", rhash="PT-1.5S",
                                            redis_json="PT-1.5S")),
        Value({PG: "'3 days 04:05:06'"}, same("3 days 04:05:06", "text:P3DT4H5M6S", my="P3DT4H5M6S",
                                               rhash="P3DT4H5M6S", redis_json="P3DT4H5M6S")),
    ]),
    Type("uid", {PG: "uuid", MY: "CHAR(36)", LITE: "TEXT"}, [
        Value({PG: "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'"},
              same("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "text:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
    ]),
    Type("doc", {PG: "json", MY: "JSON", LITE: "JSON"}, [
        Value(lit("'{\"b\": 1,  \"a\": [1, 2]}'"), same('{"b": 1,  "a": [1, 2]}', 'text:{"b": 1,  "a": [1, 2]}')),
        Value(lit("'null'"), same("null", "text:null")),
        # a column declared JSON has NUMERIC affinity in SQLite: a document that is a bare number is stored as one
        Value(lit("'1.000000000000000000001'", PG, MY), same("1.000000000000000000001", "integer:1")),
    ]),
    Type("docb", {PG: "jsonb", MY: "JSON", LITE: "JSON"}, [
        Value({PG: "'{\"b\": 1,  \"a\": [1, 2]}'"}, same('{"a": [1, 2], "b": 1}', 'text:{"a": [1, 2], "b": 1}')),
        Value({PG: "'null'"}, same("null", "text:null")),
    ]),
    Type("ints", {PG: "integer[]", MY: "TEXT", LITE: "TEXT"}, [
        Value({PG: "'{1,NULL,3}'"}, same("{1,NULL,3}", "text:[1,null,3]", my="[1,null,3]", rhash="[1,null,3]",
                                          redis_json=[1, None, 3])),
        Value({PG: "'{}'"}, same("{}", "text:[]", my="[]", rhash="[]", redis_json=[])),
    ]),
    Type("strs", {PG: "text[]", MY: "JSON", LITE: "TEXT"}, [
        Value({PG: "'{é,\"a,b\"}'"}, same('{é,"a,b"}', 'text:["é","a,b"]', my='["é","a,b"]', rhash='["é","a,b"]',
                                          redis_json=["é", "a,b"])),
    ]),
    Type("mood", {PG: "mood", MY: "ENUM('sad','happy')", LITE: "TEXT"}, [
        Value({PG: "'happy'", MY: "'happy'"}, same("happy", "text:happy")),
    ]),
]
BY_NAME = {t.name: t for t in TYPES}


def columns_of(db: str) -> list[Type]:
    """The types a source database has a column for (those with at least one value it can hold)."""
    return [t for t in TYPES if any(db in v.src for v in t.values)]


def rows_of(db: str) -> list[tuple[int, Type | None, int]]:
    """(id, type, value index) of the source rows: one row all NULL, then one row per value."""
    out: list[tuple[int, Type | None, int]] = [(1, None, -1)]
    for t in columns_of(db):
        for i, v in enumerate(t.values):
            if db in v.src:
                out.append((len(out) + 1, t, i))
    return out


def row_id(db: str, type_name: str, index: int) -> int:
    return next(i for i, t, j in rows_of(db) if t is not None and t.name == type_name and j == index)


# --------------------------------------------------------------------------- databases, once per module


def execute(url: str, *statements: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as c:
        for s in statements:
            c.exec_driver_sql(s)
    engine.dispose()


def make_table(url: str, db: str, table: str, types: list[Type]) -> None:
    cols = ", ".join(f"{t.name} {t.ddl[db]}" for t in types)
    execute(url, f"DROP TABLE IF EXISTS {table}", f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, {cols})")


def fill_source(url: str, db: str) -> None:
    types = columns_of(db)
    make_table(url, db, "src", types)
    inserts = []
    for rid, t, i in rows_of(db):
        values = [t.values[i].src[db] if t is not None and c.name == t.name else "NULL" for c in types]
        inserts.append(f"INSERT INTO src VALUES ({rid}, {', '.join(values)})")
    execute(url, *inserts)


@dataclass
class Databases:
    urls: dict[str, str]
    redis: str


@pytest.fixture(scope="module")
def dbs(pg_connectors_db: tuple[str, sa.Engine], mysql_server: str, redis_server: str,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    pg_base, admin = pg_connectors_db
    schema = f"fidelity_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        c.exec_driver_sql(f"CREATE TYPE \"{schema}\".mood AS ENUM ('sad', 'happy')")
    pg = sa.make_url(pg_base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)
    my_name = f"fidelity_{uuid.uuid4().hex[:8]}"
    execute(mysql_server, f"CREATE DATABASE `{my_name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    my = sa.make_url(mysql_server).set(database=my_name).render_as_string(hide_password=False)
    path = Path(tmp_path_factory.mktemp("fidelity")) / "types.db"
    sa.create_engine(f"sqlite:///{path}").connect().close()
    lite = f"sqlite:///{path}"
    urls = {PG: pg, MY: my, LITE: lite}
    for db, url in urls.items():
        fill_source(url, db)
    try:
        yield Databases(urls, redis_server)
    finally:
        execute(mysql_server, f"DROP DATABASE IF EXISTS `{my_name}`")
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')


# --------------------------------------------------------------------------- running a flow, reading back


PLANS = ("rows", "generic", "pushdown")


@dataclass
class Arrived:
    values: dict[int, dict[str, Any]]  # row id -> column -> arriving text (absent: the row was not written)
    read: int
    written: int
    failed: int
    plan: str
    error: str | None = None  # the run failed (every cell of it fails with this message)


def flow_for(src_url: str, sink_url: str, sink: str, table: str, *, max_failed: int = 1000,
             name: str = "types", source_table: str = "src", columns: Sequence[str] = ()) -> Any:
    if sink in (RHASH, RJSON):
        sink_spec: dict[str, Any] = {"type": "redis", "connection": {"url": sink_url}, "keyTemplate": table + ":{id}",
                                     "format": "hash" if sink == RHASH else "json", "maxFailedRecords": max_failed}
    else:
        sink_spec = sql_sink(sink_url, table, maxFailedRecords=max_failed)
    return dataflow(name=name, sink=sink_spec, source=sql_source(src_url, source_table, batchSize=50),
                    # through the generated row loop (each value through an expression) / a WHERE and SELECT in SQL
                    transform=[{"filter": "row.id >= 0"}, {"set": {c: f"row.{c}" for c in columns}}])


def sql_text(db: str, column: str, ddl: str) -> str:
    """The sink database's own text of a column's value (NULL stays NULL)."""
    binary = ddl.lower() in ("bytea", "longblob", "blob")
    if db == PG:
        return f"encode({column}, 'hex')" if binary else f"{column}::text"
    if db == MY:
        return f"LOWER(HEX({column}))" if binary else f"CAST({column} AS CHAR)"
    shown = f"lower(hex({column}))" if binary else f"CAST({column} AS TEXT)"
    return f"CASE WHEN {column} IS NULL THEN NULL ELSE typeof({column}) || ':' || {shown} END"


def read_back(dbs: Databases, sink: str, table: str, types: list[Type]) -> dict[int, dict[str, Any]]:
    if sink in (RHASH, RJSON):
        client = redis.Redis.from_url(dbs.redis)
        try:
            out: dict[int, dict[str, Any]] = {}
            for key in client.scan_iter(f"{table}:*"):
                rid = int(key.decode().rsplit(":", 1)[1])
                if sink == RHASH:
                    fields = {k.decode(): v for k, v in client.hgetall(key).items()}
                    out[rid] = {k: (v if BY_NAME.get(k) and BY_NAME[k].name == "bin" else v.decode())
                                for k, v in fields.items()}
                else:
                    raw = client.get(key)
                    assert raw is not None
                    out[rid] = json.loads(raw)
            return out
        finally:
            client.close()
    engine = sa.create_engine(dbs.urls[sink], poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as c:
            if sink == PG:
                c.exec_driver_sql("SET TIME ZONE 'UTC'; SET intervalstyle = 'postgres'")
            shown = ", ".join(sql_text(sink, t.name, t.ddl[sink]) for t in types)
            result = c.exec_driver_sql(f"SELECT id, {shown} FROM {table}")
            return {r[0]: dict(zip([t.name for t in types], r[1:], strict=True)) for r in result}
    finally:
        engine.dispose()


_RUNS: dict[tuple[str, str, str], Arrived] = {}


def run_flow(dbs: Databases, src: str, sink: str, plan: str, table: str, types: list[Type],
             *, max_failed: int = 1000) -> tuple[Any, str]:
    sink_url = dbs.redis if sink in (RHASH, RJSON) else dbs.urls[sink]
    if sink not in (RHASH, RJSON):
        make_table(sink_url, sink, table, types)
    f = flow_for(dbs.urls[src], sink_url, sink, table, max_failed=max_failed, columns=[t.name for t in types])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADF_PUSHDOWN", "on" if plan == "pushdown" else "off")
        if plan == "generic":
            mp.setenv("ADF_FASTPATH", "off")
            mp.setattr(sqlmod.sink, "_STRATEGIES", {})
        kind = plan_flow(f, dbs.urls[src], sink_url).kind
        store = open_store("memory://")
        try:
            executor = FlowExecutor(store)
            outcome = executor.run(executor.register(f), trigger="manual", force=True)
        finally:
            store.close()
    assert outcome.run is not None
    return outcome.run, kind


def arrived(dbs: Databases, src: str, sink: str, plan: str) -> Arrived:
    key = (src, sink, plan)
    if key not in _RUNS:
        table = f"dst_{src[:2]}_{sink}_{plan}".replace("-", "_")
        types = columns_of(src)
        run, kind = run_flow(dbs, src, sink, plan, table, types)
        error = None if run.status == "success" else run.error_message or "failed"
        _RUNS[key] = Arrived(read_back(dbs, sink, table, types), run.records_read, run.records_written,
                             run.records_failed, kind, error)
    got = _RUNS[key]
    assert got.error is None, f"the run failed: {got.error}"
    return got


# --------------------------------------------------------------------------- the matrix

SINKS = (PG, MY, LITE, RHASH, RJSON)
COMBOS = [(src, sink, plan) for src in ALL3 for sink in SINKS for plan in PLANS
          if (plan != "pushdown" or (src == sink and src in (PG, LITE)))
          and (sink not in (RHASH, RJSON) or (src == PG and plan == "rows"))]
CELLS = [pytest.param(src, sink, plan, t.name, i, id=f"{src}-{sink}-{plan}-{t.name}-{i}")
         for src, sink, plan in COMBOS for t in columns_of(src) for i, v in enumerate(t.values) if src in v.src]
NULL_CELLS = [pytest.param(src, sink, plan, t.name, id=f"{src}-{sink}-{plan}-{t.name}-null")
              for src, sink, plan in COMBOS for t in columns_of(src)]


@pytest.mark.parametrize(("src", "sink", "plan", "type_name", "index"), CELLS)
def test_a_value_arrives_as_the_mapping_says(dbs: Databases, src: str, sink: str, plan: str, type_name: str,
                                             index: int) -> None:
    got = arrived(dbs, src, sink, plan)
    expected = BY_NAME[type_name].values[index].out[sink]
    rid = row_id(src, type_name, index)
    if expected is FAIL:
        assert rid not in got.values, f"{type_name} value {index} was written: {got.values.get(rid)}"
        return
    assert rid in got.values, f"the row of {type_name} value {index} was not written"
    assert got.values[rid].get(type_name) == expected


@pytest.mark.parametrize(("src", "sink", "plan", "type_name"), NULL_CELLS)
def test_null_stays_null(dbs: Databases, src: str, sink: str, plan: str, type_name: str) -> None:
    got = arrived(dbs, src, sink, plan)
    others = [rid for rid, t, _ in rows_of(src) if t is None or t.name != type_name]
    for rid in others:
        if rid in got.values:  # redis: a NULL field is left out of a hash; JSON holds null
            assert got.values[rid].get(type_name) is None, (rid, got.values[rid])


@pytest.mark.parametrize(("src", "sink", "plan"), [pytest.param(*c, id="-".join(c)) for c in COMBOS])
def test_only_the_rows_that_cannot_arrive_fail(dbs: Databases, src: str, sink: str, plan: str) -> None:
    got = arrived(dbs, src, sink, plan)
    failing = sum(1 for t in columns_of(src) for v in t.values if src in v.src and v.out[sink] is FAIL)
    total = len(rows_of(src))
    assert (got.read, got.written, got.failed) == (total, total - failing, failing)
    if plan == "pushdown" and not failing:
        assert got.plan == "pushdown"


FAIL_CELLS = [pytest.param(src, sink, t.name, i, id=f"{src}-{sink}-{t.name}-{i}")
              for src in ALL3 for sink in SINKS for t in columns_of(src) for i, v in enumerate(t.values)
              if src in v.src and v.out[sink] is FAIL and (sink not in (RHASH, RJSON) or src == PG)]


@pytest.mark.parametrize(("src", "sink", "type_name", "index"), FAIL_CELLS)
def test_a_value_the_sink_cannot_hold_fails_its_row_naming_the_column(
        dbs: Databases, src: str, sink: str, type_name: str, index: int) -> None:
    rid = row_id(src, type_name, index)
    table = f"one_{type_name}_{index}"
    types = [BY_NAME[type_name]]
    # the one-column copy of the row, read through a flow of its own with no failure allowed
    make_table(dbs.urls[src], src, table, types)
    execute(dbs.urls[src], f"INSERT INTO {table} SELECT id, {type_name} FROM src WHERE id = {rid}")
    sink_url = dbs.redis if sink in (RHASH, RJSON) else dbs.urls[sink]
    if sink not in (RHASH, RJSON):
        make_table(sink_url, sink, table, types)
    f = flow_for(dbs.urls[src], sink_url, sink, table, max_failed=0, name=f"fail-{type_name}", source_table=table)
    store = open_store("memory://")
    try:
        executor = FlowExecutor(store)
        run = executor.run(executor.register(f), trigger="manual", force=True).run
    finally:
        store.close()
    assert run is not None and run.status == "failed"
    assert run.records_written == 0 and run.records_failed == 1
    assert f"column {type_name}" in (run.error_message or ""), run.error_message
