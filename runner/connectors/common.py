"""What the connectors share: sources that close on a failed open; sinks' buffer and rejected-row count."""

from __future__ import annotations

import abc
from typing import Any

from ...errors import ConnectorError
from .base import Row, SinkStats, SinkWriter, SourceReader

__all__ = ["CONNECT_TIMEOUT_SECONDS", "BufferedSinkWriter", "ClosingSourceReader"]

CONNECT_TIMEOUT_SECONDS = 10  # a source or sink server that does not answer fails the run, named, within this


class ClosingSourceReader(SourceReader):
    """A source whose :meth:`open` releases what it connected when it fails (unknown table, bad cursor...)."""

    def open(self, cursor: Any = None) -> tuple[str, ...]:
        try:
            return self._open(cursor)
        except BaseException:
            self.close()
            raise

    @abc.abstractmethod
    def _open(self, cursor: Any) -> tuple[str, ...]:
        """Connect, check, and return the output columns (see :meth:`SourceReader.open`)."""


class BufferedSinkWriter(SinkWriter):
    """Holds at most ``batch_size`` rows; :meth:`_flush` writes a chunk (rows numbered from 1 across the run).

    A sink reports a rejected row with :meth:`_row_failed`; once more rows failed
    than ``max_failed`` (``maxFailedRecords``) it raises ConnectorError.
    """

    def __init__(self, *, field: str, batch_size: int, max_failed: int) -> None:
        self.field = field
        self.batch_size = batch_size
        self.max_failed = max_failed
        self.stats = SinkStats()
        self._buffer: list[Row] = []
        self._row_number = 0  # rows handed to _flush so far

    def write(self, rows: list[Row]) -> None:
        self._buffer.extend(rows)
        size = self.batch_size
        while len(self._buffer) >= size:
            chunk, self._buffer = self._buffer[:size], self._buffer[size:]
            self._flush_chunk(chunk)

    def _flush_buffer(self) -> None:
        rows, self._buffer = self._buffer, []
        self._flush_chunk(rows)

    def _flush_chunk(self, rows: list[Row]) -> None:
        if rows:
            first = self._row_number + 1
            self._row_number += len(rows)
            self._flush(rows, first)

    @abc.abstractmethod
    def _flush(self, rows: list[Row], first_row: int) -> None:
        """Write ``rows`` (non-empty); ``first_row`` is the run-wide number of the first one (from 1)."""

    def _drop_buffer(self) -> None:
        self._buffer = []

    def _row_failed(self, message: str) -> None:
        self.stats.add_error(message)
        if self.stats.failed > self.max_failed:
            raise ConnectorError(
                f"{self.stats.failed} row(s) failed, more than maxFailedRecords ({self.max_failed}); "
                f"first: {self.stats.errors[0]}",
                field=f"{self.field}.maxFailedRecords",
            )
