"""What a source and a sink look like to the FlowExecutor.

Rows travel as tuples in batches; a batch's ``columns`` names the positions.
Tuples (not dicts) keep the per-row cost low: transforms are compiled against
column positions once per run.

Commit protocol (how a failed run never skips rows):

1. the executor reads a :class:`Batch` from the source; ``batch.cursor`` is the
   source position just after its last row;
2. it transforms the rows and calls ``sink.write(rows)`` (the sink buffers and
   flushes every ``batchSize`` rows);
3. it calls ``sink.checkpoint()``: with ``transaction: batch`` or ``none`` the
   sink flushes and commits, and returns True; only then does the executor
   commit ``batch.cursor`` to the store. With ``transaction: run`` checkpoint
   flushes without committing and returns False;
4. at the end ``sink.commit()``; on any error ``sink.rollback()``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

Row = tuple[Any, ...]


@dataclass
class Batch:
    columns: tuple[str, ...]
    rows: list[Row]
    cursor: Any = None  # JSON-safe source position after the last row (incremental reads)
    read: int | None = None  # rows read for this batch, when the source dropped some already (else len(rows))


@dataclass
class SinkStats:
    written: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first few row errors, secrets redacted

    MAX_ERRORS = 5

    def add_error(self, message: str) -> None:
        self.failed += 1
        if len(self.errors) < self.MAX_ERRORS:
            self.errors.append(message)


class SourceReader(abc.ABC):
    """Reads rows in batches. Constant memory: at most one batch is held."""

    @abc.abstractmethod
    def open(self, cursor: Any = None) -> tuple[str, ...]:
        """Connect, check the table/columns exist (ConnectorError naming what is
        missing and listing what exists), and return the output columns.
        ``cursor`` is the last committed position for incremental reads."""

    @abc.abstractmethod
    def batches(self) -> Iterator[Batch]: ...

    def close(self) -> None:  # noqa: B027
        """Release the connection."""


class SinkWriter(abc.ABC):
    stats: SinkStats

    @abc.abstractmethod
    def open(self, columns: Sequence[str]) -> None:
        """Connect, check the target and that ``columns`` exist in it; begin the transaction."""

    @abc.abstractmethod
    def write(self, rows: list[Row]) -> None:
        """Buffer rows; flush whenever the buffer reaches batchSize."""

    @abc.abstractmethod
    def checkpoint(self) -> bool:
        """Flush; commit unless transaction is ``run``. True if everything written so far is durable."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Flush and commit everything (end of a successful run)."""

    @abc.abstractmethod
    def rollback(self) -> None:
        """Discard everything not yet committed."""

    def close(self) -> None:  # noqa: B027
        """Release the connection (after commit or rollback)."""
