"""Helpers shared by the SQL and the Redis backends: time, JSON values, messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import UnknownFlow
from .base import ACTIVE_STATUSES, ERROR_MESSAGE_LIMIT, RunRecord, UnknownRun

CONNECT_TIMEOUT = 5  # seconds: an unreachable store is reported, never waited for
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def redis_database_problem(url: str) -> str | None:
    """What is wrong with the database number of a ``redis://``/``rediss://`` URL, or None. redis-py
    silently takes database 0 for a path that is not a number (``redis://host/flows``): refused here, so
    a flow's or the store's keys never land in another database than the URL seems to say."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("redis", "rediss"):
        return None  # unix:// has the socket as its path and the database in ?db=
    path = unquote(parts.path).strip("/")
    if path and not path.isdigit():
        return f"the path /{path} is not a database number (redis://host:6379/0)"
    return None


def aware_utc(value: datetime, what: str = "datetime") -> datetime:
    """``value`` as timezone-aware UTC; a naive datetime is a programming error (its zone is unknown)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value.astimezone(UTC)


def optional_utc(value: datetime | None, what: str = "datetime") -> datetime | None:
    return None if value is None else aware_utc(value, what)


def to_micros(value: datetime) -> int:
    """Exact microseconds since the epoch (no float rounding)."""
    return (aware_utc(value) - EPOCH) // _MICROSECOND


def from_micros(value: int | str) -> datetime:
    return EPOCH + timedelta(microseconds=int(value))


def lease_until(now: datetime, lease_seconds: float) -> datetime:
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
    return aware_utc(now, "now") + timedelta(seconds=lease_seconds)


def check_json(value: Any, what: str = "cursor") -> str:
    """``value`` serialised as JSON; ValueError naming ``what`` if it is not a JSON value."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be a JSON value (null, bool, number, string, list, object): {err}") from None


def bound_message(message: str | None) -> str | None:
    if message is None or len(message) <= ERROR_MESSAGE_LIMIT:
        return message
    return message[: ERROR_MESSAGE_LIMIT - 3] + "..."


LEASE_LOST = "runner lost:"


def lease_lost_message(run: RunRecord) -> str:
    """The error of a run whose runner stopped renewing its lease (it died or lost the store)."""
    when = run.lease_expires_at.isoformat() if run.lease_expires_at else "unknown time"
    return f"{LEASE_LOST} lease expired at {when} (runner {run.runner_id or 'unknown'})"


def is_lease_lapsed(run: RunRecord, now: datetime) -> bool:
    """Whether ``run`` is still active but its lease ran out: its runner died (a claim or a reaper will fail it)."""
    return run.status in ACTIVE_STATUSES and run.lease_expires_at is not None and run.lease_expires_at <= now


def is_lease_lost(run: RunRecord) -> bool:
    """Whether ``run`` was failed because its runner stopped renewing its lease."""
    return run.status == "failed" and (run.error_message or "").startswith(LEASE_LOST)


def duration(started_at: datetime | None, ended_at: datetime) -> float | None:
    return None if started_at is None else max(0.0, (ended_at - started_at).total_seconds())


def unknown_flow(name: str, namespace: str, store: str) -> UnknownFlow:
    return UnknownFlow(f"no flow '{name}' in namespace '{namespace}' in the store {store}")


def unknown_run(run_id: str, store: str) -> UnknownRun:
    return UnknownRun(f"no run with id {run_id!r} in the store {store}")
