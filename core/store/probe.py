"""Whether a heartbeat has anything to do, answered for a SQLite store with the standard library alone.

Every heartbeat CronJob tick starts a process, and most ticks find nothing due. Opening
the store the usual way imports SQLAlchemy (the store, then the model for a due flow):
measured on the 2-core machine, ``adf heartbeat`` with nothing due took 0.75 s and 52 MB,
of which SQLAlchemy's import alone is ~0.2 s and ~26 MB. :func:`nothing_due` asks the same
two questions the heartbeat asks first (a flow due? a run whose lease lapsed?) with
:mod:`sqlite3`, read-only, and answers ``True`` only when both answers are certainly no;
on any doubt (not SQLite, no such file, a schema not at the head revision, the database
busy, anything unexpected) it answers ``False`` and the caller takes the usual path, which
then decides. So a wrong answer can only cost time, never skip a due flow.

The queries mirror :meth:`SqlStore._due_query <activedataflow.store.sql.SqlStore._due_query>`
and the lease condition of its reaper; ``tests/core/store/test_probe.py`` checks by property
that they agree with the store on any stored state.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote

from .base import ACTIVE_STATUSES
from .migrations import HEAD_REVISION, VERSION_TABLE

__all__ = ["nothing_due", "sqlite_path"]

# SQLAlchemy's text form of a naive UTC DATETIME on SQLite (schema.UTCDateTime stores that):
# fixed width, so text order is time order.
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL (relative or ``sqlite:////absolute``); None for anything else
    (another scheme, a driver or query options, the in-memory database)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    path = unquote(url[len(prefix):])
    return Path(path) if path and path != ":memory:" else None


def nothing_due(url: str, now: datetime, namespace: str | None = None) -> bool:
    """True only if the SQLite store at ``url`` certainly has no flow due by ``now`` (in ``namespace``,
    or any) and no active run whose lease lapsed by ``now``; False when unsure."""
    path = sqlite_path(url)
    if path is None:
        return False
    at = now.astimezone(UTC).replace(tzinfo=None).strftime(_SQLITE_TIME)
    active = ", ".join("?" for _ in ACTIVE_STATUSES)
    in_namespace = "" if namespace is None else " AND namespace = ?"
    try:
        # mode=ro: never creates or changes the file (no such file, or a directory, fails here);
        # timeout=0: a writer holding the lock means "unsure".
        db = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=0)
    except sqlite3.Error:
        return False
    try:
        (revision,) = db.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone() or (None,)
        if revision != HEAD_REVISION:
            return False
        ns = () if namespace is None else (namespace,)
        due = db.execute(
            f"SELECT EXISTS (SELECT 1 FROM flows WHERE enabled = 1 AND next_run_at IS NULL{in_namespace})"
            f" OR EXISTS (SELECT 1 FROM flows WHERE enabled = 1 AND next_run_at <= ?{in_namespace})"
            f" OR EXISTS (SELECT 1 FROM runs WHERE status IN ({active}) AND lease_expires_at <= ?)",
            (*ns, at, *ns, *ACTIVE_STATUSES, at),
        ).fetchone()
        return bool(due == (0,))
    except sqlite3.Error:
        return False
    finally:
        db.close()
