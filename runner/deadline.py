"""``spec.runtime.timeoutSeconds``, enforced by the runner itself (the Job's ``activeDeadlineSeconds`` only
kills the Pod, leaving the run ``in_progress`` until its lease lapses).

The executor opens a :func:`run_deadline` around the part of a run that touches the source and the sink.
Everything that blocks in between asks it how much time is left:

* SQL connections (:func:`activedataflow.runner.connectors.sql.create_sql_engine`) hand the remaining
  time to the database before their statements: PostgreSQL ``statement_timeout`` (lock waits included),
  MariaDB ``max_statement_time`` / MySQL ``max_execution_time`` with ``lock_wait_timeout`` and
  ``innodb_lock_wait_timeout``, SQLite ``busy_timeout`` and a progress handler that interrupts a
  statement once the time is up. The server stops the statement even if the runner is gone;
* Redis clients get a socket timeout no longer than the time left;
* the executor checks the budget between batches and before falling back from a failed push-down.

A run whose budget ran out is failed with :meth:`Deadline.reason` ("timed out after 5 s
(runtime.timeoutSeconds) while reading orders from db:5432/shop"), its sink rolled back as its
``transaction`` mode says.

The deadline travels in a context variable: the connectors read it when they connect (in the run's
thread); what they install keeps the :class:`Deadline` itself, so a read-ahead thread obeys it too.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from ..errors import ConnectorError

__all__ = [
    "CLEANUP_SECONDS",
    "REFRESH_SECONDS",
    "Deadline",
    "RunTimedOut",
    "current_deadline",
    "run_deadline",
]

CLEANUP_SECONDS = 5.0  # what a statement issued after the time ran out gets (ROLLBACK TO SAVEPOINT, DROP ...)
REFRESH_SECONDS = 1.0  # a connection's server-side timeout is set anew once it is this old: a statement
# ends at most this long after the deadline


class RunTimedOut(ConnectorError):
    """The run used up ``spec.runtime.timeoutSeconds``."""


@dataclass
class Deadline:
    seconds: float  # the budget, as the spec gives it
    at: float  # time.monotonic() when it runs out
    activity: str = "starting"  # what the run is doing, for the reason

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def statement_seconds(self) -> float:
        """How long the next statement may take: the time left, or :data:`CLEANUP_SECONDS` once it is up."""
        left = self.remaining()
        return left if left > 0 else CLEANUP_SECONDS

    def statement_ms(self) -> int:
        return max(1, math.ceil(self.statement_seconds() * 1000))  # 0 would mean "no timeout"

    def reason(self) -> str:
        seconds = int(self.seconds) if float(self.seconds).is_integer() else self.seconds
        return f"timed out after {seconds} s (runtime.timeoutSeconds) while {self.activity}"

    def check(self, activity: str | None = None) -> None:
        """Raise :class:`RunTimedOut` if the time is up; else note what the run does next."""
        if self.expired():
            raise RunTimedOut(self.reason())
        if activity is not None:
            self.activity = activity


_current: ContextVar[Deadline | None] = ContextVar("adf_run_deadline", default=None)


def current_deadline() -> Deadline | None:
    """The deadline of the run this thread works on, if it has one."""
    return _current.get()


@contextlib.contextmanager
def run_deadline(seconds: float | None) -> Iterator[Deadline | None]:
    """The run's deadline, ``seconds`` from now (None: no timeout), as :func:`current_deadline` inside."""
    deadline = None if seconds is None else Deadline(seconds, time.monotonic() + seconds)
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)
