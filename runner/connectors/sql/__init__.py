"""SQL source and sink through SQLAlchemy 2 Core (SQLite, PostgreSQL, MySQL/MariaDB).

Source (:class:`SqlSourceReader`): a reflected table, structured ``where``
conditions compiled to bound parameters only (identifiers are checked against
the reflected table, values never become SQL text), and **keyset pagination**:
``WHERE (k1, k2) > (:k1, :k2) ORDER BY k1, k2 LIMIT :n`` — never OFFSET. The
keyset is ``orderBy`` (default: the primary key), extended with the primary
key when it does not already contain a unique key; with ``incremental`` it is
``(cursorColumn, primary key)`` and reading resumes strictly after the
committed cursor. Pages run in short read-only transactions; one page is held
in memory at a time.

On SQLite, DATETIME, DATE and TIME keys are compared as the text the table
holds (``SqlSourceReader.raw_keys``): SQLite orders that text, and values
written by other programs ('2024-01-01 00:00:01', CURRENT_TIMESTAMP's form)
are not equal to the text SQLAlchemy binds for the same datetime
('2024-01-01 00:00:01.000000'). Bound as datetimes, the next page would skip
the rest of a timestamp whose rows straddle a page boundary; bound as the text
read, it resumes exactly after the last row.

Sink (:class:`SqlSinkWriter`): buffers rows and flushes every ``batchSize``
rows through a :class:`WriteStrategy` chosen by dialect (:func:`register_write_strategy`;
the default, :class:`ExecutemanyStrategy`, runs one prepared INSERT /
native upsert statement with ``executemany``). Each flush runs inside a
SAVEPOINT; when it fails on data (constraint or type errors) the buffer is
split in halves until the bad rows are isolated: they are counted in
``stats.failed`` (first few errors kept), the good rows are written. More
failed rows than ``maxFailedRecords`` raise :class:`ConnectorError`.

Values in transit go through :mod:`.codec` (README, "Types in transit"): the reader gets JSON
as its text and PostgreSQL intervals as ISO 8601, the sink maps each value into its column's type
before any write strategy sees it, and a value its column cannot hold fails its row, naming the column.

Cursor values (``Batch.cursor``) are JSON-safe and round-trip exactly:
:func:`encode_cursor_value` / :func:`decode_cursor_value`.

One job per module, pointing one way (the import-linter contract in pyproject.toml): :mod:`.cursor`
(the cursor codec), :mod:`.engine` (URLs, engines, sessions, the deadline, driver errors),
:mod:`.reflect` (tables, columns, unique keys, manifest values), :mod:`.source` (the reader) and
:mod:`.sink` (the target, its statement, the write strategies, the writer).
"""

from __future__ import annotations

from .cursor import decode_cursor_value, encode_cursor_value
from .engine import (
    connect,
    create_sql_engine,
    display_url,
    lost,
    talking,
)
from .reflect import check_column
from .sink import (
    ExecutemanyStrategy,
    SinkTarget,
    SqlSinkWriter,
    WriteStrategy,
    build_write_statement,
    register_write_strategy,
    write_strategy_for,
)
from .source import SQLITE_TEXT_TEMPORAL, SqlSourceReader

__all__ = [
    "SQLITE_TEXT_TEMPORAL",
    "ExecutemanyStrategy",
    "SinkTarget",
    "SqlSinkWriter",
    "SqlSourceReader",
    "WriteStrategy",
    "build_write_statement",
    "check_column",
    "connect",
    "create_sql_engine",
    "decode_cursor_value",
    "display_url",
    "encode_cursor_value",
    "lost",
    "register_write_strategy",
    "talking",
    "write_strategy_for",
]
