"""When a flow runs next: 5-field cron (and @hourly...) or an interval, in an IANA time zone.

Cron is evaluated in the flow's wall-clock time zone with DST handled the way
cron does it (via cronsim): a 02:30 daily job runs once on the spring-forward
day (at 03:00) and once on the fall-back day. Intervals are absolute durations
from the last run (DST does not stretch them). All results are UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from .model import CRON_MACROS, DataFlowSpec, parse_interval

__all__ = ["next_run", "parse_cron", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_cron(expr: str) -> str:
    """Validate a cron expression; returns its 5-field form. Raises ValueError."""
    text = " ".join(expr.split())
    text = CRON_MACROS.get(text.lower(), text)
    if text.startswith("@"):
        raise ValueError(f"unknown macro '{expr}'; use one of {', '.join(sorted(CRON_MACROS))}")
    if len(text.split(" ")) != 5:
        raise ValueError(f"'{expr}' must have 5 fields (minute hour day-of-month month day-of-week)")
    try:
        CronSim(text, datetime(2000, 1, 1))
    except CronSimError as err:
        raise ValueError(f"'{expr}' is not a valid cron expression: {err}") from None
    return text


def next_cron(expr: str, after: datetime, tz: str | None = None) -> datetime:
    """First cron tick strictly after ``after`` (aware), as UTC."""
    zone = ZoneInfo(tz) if tz else UTC
    local = after.astimezone(zone).replace(second=0, microsecond=0)
    tick = next(CronSim(parse_cron(expr), local))
    while tick <= after:  # 'after' may have seconds; the first tick can equal its minute
        tick = next(CronSim(parse_cron(expr), tick))
    return tick.astimezone(UTC)


def next_run(spec: DataFlowSpec, *, after: datetime, last_run_at: datetime | None = None) -> datetime:
    """When the flow is next due, after ``after``.

    For an interval, the next run is ``last_run_at + interval`` (or ``after`` if
    the flow never ran, since a flow never run before is due).
    """
    if spec.schedule is not None:
        return next_cron(spec.schedule, after, spec.timeZone)
    assert spec.interval is not None
    step = timedelta(seconds=parse_interval(spec.interval))
    if last_run_at is None:
        return after
    return last_run_at + step
