"""Source and sink connectors (SQL through SQLAlchemy, Redis), chosen by the spec's ``type``.

The FlowExecutor resolves the connection URL (:func:`activedataflow.runner.connections.resolve_url`)
and asks for a connector; connecting happens in ``open`` so every error a user
can cause surfaces there, naming the field::

    source = open_source(spec.source, src_url)      # not connected yet
    columns = source.open(committed_cursor)         # connect, check table/columns
    sink = open_sink(spec.sink, sink_url)
    sink.open(output_columns)
    for batch in source.batches(): ...              # see base.py for the commit protocol
"""

from __future__ import annotations

from ...errors import UserError
from ...model import RedisSink, RedisSource, SqlSink, SqlSource
from .base import Batch, Row, SinkStats, SinkWriter, SourceReader

__all__ = ["Batch", "Row", "SinkStats", "SinkWriter", "SourceReader", "address_of", "open_sink", "open_source"]


def address_of(spec: SqlSource | SqlSink | RedisSource | RedisSink, url: str) -> str:
    """Where ``spec`` reads or writes, for messages: ``orders at db:5432/shop``, never a password."""
    if isinstance(spec, SqlSource | SqlSink):
        from .sql.engine import _address, _parse_url

        try:
            return f"{spec.table} at {_address(_parse_url(url, 'url'))}"
        except UserError:  # not a database URL: the connector says so when it opens
            return spec.table
    from .redis import _address as redis_address

    return f"Redis at {redis_address(url)}"


def open_source(spec: SqlSource | RedisSource, url: str, *, field: str = "spec.source") -> SourceReader:
    """The reader for ``spec`` at ``url`` (resolved, may hold a password); call ``.open(cursor)`` next."""
    if isinstance(spec, SqlSource):
        from ..fastpath import sql_source_reader

        return sql_source_reader(spec, url, field=field)
    from .redis import RedisSourceReader  # the model's Source union has no third type

    return RedisSourceReader(spec, url, field=field)


def open_sink(spec: SqlSink | RedisSink, url: str, *, field: str = "spec.sink") -> SinkWriter:
    """The writer for ``spec`` at ``url``; call ``.open(columns)`` next."""
    if isinstance(spec, SqlSink):
        from ..fastpath import install
        from .sql import SqlSinkWriter

        install()  # the per-dialect write strategies (COPY on PostgreSQL, prepared executemany)
        return SqlSinkWriter(spec, url, field=field)
    from .redis import RedisSinkWriter  # the model's Sink union has no third type

    return RedisSinkWriter(spec, url, field=field)
