"""Redis source and sink (redis-py; ``memory://`` is an in-process fakeredis server).

Sink (:class:`RedisSinkWriter`): one key per row from ``keyTemplate``
(``order:{id}``), stored as a hash (the row replaces the key: ``DEL`` + ``HSET``)
or as a JSON string (``SET``), with an optional TTL; each flush of
``batchSize`` rows is one MULTI/EXEC pipeline. Redis has no rollback: a row
once flushed stays, and a re-run overwrites the same keys (idempotent).

Hash field values are text: numbers and Decimals as ``str()``, datetimes and
intervals as ISO 8601, booleans ``true``/``false``, lists/dicts as JSON text,
bytes as they are; NULL fields are left out. JSON values keep numbers,
booleans and lists; Decimals, datetimes, intervals and JSON documents read
from SQL become strings (exact), bytes base64 (:func:`.codec.json_default`);
NaN and infinities fail the row, naming the column (JSON has no such number).

Source (:class:`RedisSourceReader`):

* ``stream``: entries in id order with ``XRANGE`` pages; with ``incremental``
  the cursor is the last entry id and reading resumes strictly after it;
* ``keyPattern``: ``SCAN MATCH`` pages, each key's hash (``HGETALL``) or JSON
  string (``GET``) as a row. SCAN may return a key twice while Redis rehashes.

Columns are ``columns`` when given, else the fields of the first entry or key;
``_id`` (stream entry id) and ``_key`` (key) can be asked for by name.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import string
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Literal, overload
from urllib.parse import urlsplit

import redis

from ...errors import ConnectorError, redact
from ...model import RedisSink, RedisSource
from ...store.common import redis_database_problem
from ..deadline import current_deadline
from .base import Batch, Row
from .codec import interval_iso, json_default, json_text
from .common import CONNECT_TIMEOUT_SECONDS, BufferedSinkWriter, ClosingSourceReader

__all__ = ["RedisSinkWriter", "RedisSourceReader", "compile_key_template", "redis_client"]

log = logging.getLogger("activedataflow.connectors.redis")

SOCKET_TIMEOUT_SECONDS = 60
ID_COLUMN = "_id"
KEY_COLUMN = "_key"

_fake_servers: dict[str, Any] = {}
_fake_lock = threading.Lock()


def _address(url: str) -> str:
    if url.startswith("memory://"):
        return "memory://"
    parts = urlsplit(url)
    port: int | str
    try:
        port = parts.port or 6379
    except ValueError:
        port = "?"
    return f"{parts.hostname or 'localhost'}:{port}{parts.path if parts.path not in ('', '/') else ''}"


@overload
def redis_client(url: str, *, field: str, decode_responses: Literal[True]) -> redis.Redis[str]: ...
@overload
def redis_client(url: str, *, field: str, decode_responses: Literal[False] = False) -> redis.Redis[bytes]: ...


def redis_client(url: str, *, field: str, decode_responses: bool = False) -> redis.Redis[Any]:
    """A connected client for ``redis://``, ``rediss://``, ``unix://`` or ``memory://`` (one fakeredis
    server per ``memory://`` URL in this process), checked with PING; ConnectorError naming the address."""
    if url.startswith("memory://"):
        import fakeredis

        with _fake_lock:
            server = _fake_servers.setdefault(url, fakeredis.FakeServer())
        return fakeredis.FakeRedis(server=server, decode_responses=decode_responses)
    # the stubs' overloads of from_url tell Redis[str] from Redis[bytes] by a literal decode_responses
    options: dict[str, Any] = {"decode_responses": decode_responses}
    deadline = current_deadline()  # a run with runtime.timeoutSeconds: no reply awaited past its time
    timeout = min(SOCKET_TIMEOUT_SECONDS, deadline.statement_seconds()) if deadline else SOCKET_TIMEOUT_SECONDS
    if (problem := redis_database_problem(url)) is not None:
        raise ConnectorError(f"not a Redis URL: {redact(url)!r} ({problem})", field=field)
    try:
        client: redis.Redis[Any] = redis.Redis.from_url(
            url, socket_connect_timeout=min(CONNECT_TIMEOUT_SECONDS, timeout), socket_timeout=timeout, **options
        )
    except ValueError as err:
        raise ConnectorError(f"not a Redis URL: {redact(url)!r} ({redact(str(err))})", field=field) from None
    try:
        client.ping()
    except redis.RedisError as err:
        client.close()
        raise ConnectorError(f"cannot connect to Redis at {_address(url)}: {redact(str(err))}", field=field) from None
    return client


# --------------------------------------------------------------------------- sink


def compile_key_template(template: str, columns: Sequence[str], *, field: str) -> tuple[str, tuple[int, ...]]:
    """``order:{id}`` -> (``order:{0}``, positions of the placeholders' columns in the row)."""
    out: list[str] = []
    positions: list[int] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ConnectorError(f"invalid key template {template!r}: {err}", field=field) from None
    for literal, name, spec, conversion in parsed:
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is None:
            continue
        if name not in columns:
            raise ConnectorError(
                f"placeholder {{{name}}} is not a column the flow writes; columns: {', '.join(columns)}", field=field
            )
        out.append("{" + str(len(positions)) + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
                   + "}")
        positions.append(list(columns).index(name))
    if not positions:  # the model's check saw "{id}" in "order:{{id}}", an escaped brace: every row one key
        raise ConnectorError(f"key template {template!r} has no {{column}} placeholder ({{{{ and }}}} are literal "
                             "braces): every row would write the same key", field=field)
    return "".join(out), tuple(positions)


def _hash_value(value: Any) -> str | bytes:
    if isinstance(value, bytes | str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        return json_text(value)
    if isinstance(value, dt.timedelta):
        return interval_iso(value)
    return str(value)


def _json_row(columns: Sequence[str], row: Row) -> str:
    """The row as one JSON object; a value JSON cannot hold (NaN, infinity) fails it, naming the column."""
    try:
        return json.dumps(dict(zip(columns, row, strict=True)), default=json_default, separators=(",", ":"),
                          allow_nan=False)
    except ValueError:
        bad = next(c for c, v in zip(columns, row, strict=True) if isinstance(v, float) and not math.isfinite(v))
        raise ValueError(f"column {bad}: {row[columns.index(bad)]} is not a JSON number") from None


class RedisSinkWriter(BufferedSinkWriter):
    """One key per row (see the module docstring). Every checkpoint is durable: returns True."""

    def __init__(self, spec: RedisSink, url: str, *, field: str = "spec.sink") -> None:
        super().__init__(field=field, batch_size=spec.batchSize, max_failed=spec.maxFailedRecords)
        self.spec = spec
        self.url = url
        self.columns: tuple[str, ...] = ()
        self._client: redis.Redis[bytes] | None = None
        self._template = ""
        self._key_positions: tuple[int, ...] = ()

    def open(self, columns: Sequence[str]) -> None:
        self.columns = tuple(columns)
        self._template, self._key_positions = compile_key_template(
            self.spec.keyTemplate, self.columns, field=f"{self.field}.keyTemplate"
        )
        self._client = redis_client(self.url, field=f"{self.field}.connection")

    def _flush(self, rows: list[Row], first_row: int) -> None:
        assert self._client is not None, "open() first"
        pipe = self._client.pipeline(transaction=True)
        commands: list[tuple[int, int]] = []  # per queued row: (row number, commands queued)
        cols, ttl, positions, template = self.columns, self.spec.ttlSeconds, self._key_positions, self._template
        for n, row in enumerate(rows, start=first_row):
            parts = [row[p] for p in positions]
            if any(v is None for v in parts):
                null = [cols[p] for p, v in zip(positions, parts, strict=True) if v is None]
                self._row_failed(f"row {n}: key column {', '.join(null)} is null")
                continue
            try:
                key = template.format(*parts)
                if self.spec.format == "json":
                    payload = _json_row(cols, row)
                    pipe.set(key, payload, ex=ttl)
                    commands.append((n, 1))
                else:
                    # never empty: it holds the key's own columns, not null here
                    mapping: dict[str | bytes, str | bytes] = {
                        c: _hash_value(v) for c, v in zip(cols, row, strict=True) if v is not None}
                    pipe.delete(key)
                    pipe.hset(key, mapping=mapping)
                    if ttl:
                        pipe.expire(key, ttl)
                    commands.append((n, 2 + bool(ttl)))
            except (TypeError, ValueError) as err:
                self._row_failed(f"row {n}: {redact(str(err))}")
        try:
            results = pipe.execute(raise_on_error=False)
        except redis.RedisError as err:
            raise ConnectorError(f"writing to Redis at {_address(self.url)} failed: {redact(str(err))}",
                                 field=self.field) from None
        i = 0
        for n, count in commands:
            errors = [r for r in results[i : i + count] if isinstance(r, Exception)]
            i += count
            # Redis refuses DEL/HSET/EXPIRE/SET while MULTI queues them (EXECABORT, the except above), but for ACL
            # rules changed after the queueing and before EXEC: a race no test can place inside the pipeline's one write
            if errors:  # pragma: no cover - only ACL rules changed between MULTI's queueing and EXEC (above)
                self._row_failed(f"row {n}: {redact(str(errors[0]))}")
            else:
                self.stats.written += 1

    def checkpoint(self) -> bool:
        self._flush_buffer()
        return True

    def commit(self) -> None:
        self.checkpoint()

    def rollback(self) -> None:
        """Drop unflushed rows; flushed keys stay (Redis has no rollback; re-runs overwrite them)."""
        self._drop_buffer()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# --------------------------------------------------------------------------- source


def _parse_json_value(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {"value": raw}
    return value if isinstance(value, dict) else {"value": value}


class RedisSourceReader(ClosingSourceReader):
    """Reads a stream (XRANGE pages, resumable) or the keys matching a pattern (SCAN pages)."""

    def __init__(self, spec: RedisSource, url: str, *, field: str = "spec.source") -> None:
        self.spec = spec
        self.url = url
        self.field = field
        self.columns: tuple[str, ...] = ()
        self._client: redis.Redis[str] | None = None
        self._after: str | None = None

    def _open(self, cursor: Any) -> tuple[str, ...]:
        spec, f = self.spec, self.field
        if spec.incremental and spec.stream is None:
            raise ConnectorError("only a stream can be read incrementally (keyPattern has no order)",
                                 field=f"{f}.incremental")
        if cursor is not None and not (isinstance(cursor, str) and _is_stream_id(cursor)):
            raise ConnectorError(f"the committed cursor {cursor!r} is not a stream entry id", field=f"{f}.incremental")
        self._client = redis_client(self.url, field=f"{f}.connection", decode_responses=True)
        self._after = cursor if spec.incremental else None
        try:
            sample = self._sample_stream() if spec.stream is not None else self._sample_key()
        except redis.RedisError as err:
            raise ConnectorError(f"reading Redis at {_address(self.url)} failed: {redact(str(err))}",
                                 field=f) from None
        meta = ID_COLUMN if spec.stream is not None else KEY_COLUMN
        self.columns = tuple(spec.columns) if spec.columns else tuple(sample) or (meta,)
        return self.columns

    def _sample_stream(self) -> list[str]:
        assert self._client is not None and self.spec.stream is not None
        kind = self._client.type(self.spec.stream)  # type: ignore[no-untyped-call]  # unannotated in types-redis
        if kind == "none":
            raise ConnectorError(f"stream {self.spec.stream!r} not found in Redis at {_address(self.url)}",
                                 field=f"{self.field}.stream")
        if kind != "stream":
            raise ConnectorError(f"key {self.spec.stream!r} is a {kind}, not a stream", field=f"{self.field}.stream")
        first = self._client.xrange(self.spec.stream, count=1)
        return list(first[0][1]) if first else []

    def _sample_key(self) -> list[str]:
        assert self._client is not None and self.spec.keyPattern is not None
        for key in self._client.scan_iter(match=self.spec.keyPattern, count=self.spec.batchSize):
            row = self._fetch_values([key])
            if row:
                return [c for c in row[0] if c != KEY_COLUMN]
        return []

    def batches(self) -> Iterator[Batch]:
        try:
            yield from (self._stream_batches() if self.spec.stream is not None else self._key_batches())
        except redis.RedisError as err:
            raise ConnectorError(f"reading Redis at {_address(self.url)} failed: {redact(str(err))}",
                                 field=self.field) from None

    def _stream_batches(self) -> Iterator[Batch]:
        assert self._client is not None and self.spec.stream is not None
        remaining, size, cols = self.spec.limit, self.spec.batchSize, self.columns
        while remaining is None or remaining > 0:
            page = size if remaining is None else min(size, remaining)
            start = "-" if self._after is None else f"({self._after}"
            entries = self._client.xrange(self.spec.stream, min=start, max="+", count=page)
            if not entries:
                return
            rows = [tuple(entry_id if c == ID_COLUMN else fields.get(c) for c in cols) for entry_id, fields in entries]
            self._after = entries[-1][0]
            if remaining is not None:
                remaining -= len(rows)
            yield Batch(cols, rows, self._after if self.spec.incremental else None)
            if len(entries) < page:
                return

    def _key_batches(self) -> Iterator[Batch]:
        assert self._client is not None and self.spec.keyPattern is not None
        remaining, size, cols = self.spec.limit, self.spec.batchSize, self.columns
        pending: list[Row] = []
        scan_cursor = 0
        while True:
            scan_cursor, keys = self._client.scan(scan_cursor, match=self.spec.keyPattern, count=size)
            for values in self._fetch_values(keys):
                pending.append(tuple(values.get(c) for c in cols))
            while len(pending) >= size or (pending and scan_cursor == 0):
                out, pending = pending[:size], pending[size:]
                if remaining is not None:
                    out = out[:remaining]
                    remaining -= len(out)
                yield Batch(cols, out, None)
                if remaining == 0:
                    return
            if scan_cursor == 0:
                return

    def _fetch_values(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        """Each key's fields (hash) or JSON object (string), with ``_key``; keys of other types are skipped."""
        if not keys:
            return []
        assert self._client is not None
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        kinds = pipe.execute()
        readable = [(k, t) for k, t in zip(keys, kinds, strict=True) if t in ("hash", "string")]
        for key, kind in zip(keys, kinds, strict=True):
            if kind not in ("hash", "string", "none"):
                log.warning("skipping key %s: a %s, not a hash or a JSON string", key, kind)
        for key, kind in readable:
            if kind == "hash":
                pipe.hgetall(key)
            else:
                pipe.get(key)
        values = pipe.execute()
        rows: list[dict[str, Any]] = []
        for (key, kind), value in zip(readable, values, strict=True):
            if value is None or value == {}:
                continue  # deleted between SCAN and read
            fields = value if kind == "hash" else _parse_json_value(value)
            rows.append({**fields, KEY_COLUMN: key})
        return rows

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _is_stream_id(value: str) -> bool:
    ms, _, seq = value.partition("-")
    return ms.isdigit() and (seq == "" or seq.isdigit())
