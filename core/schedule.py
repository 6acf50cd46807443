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

__all__ = ["cron_for_interval", "next_cron", "next_run", "parse_cron", "utcnow"]


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


def cron_for_interval(seconds: int) -> str | None:
    """The cron expression firing exactly every ``seconds``, or None if cron cannot.

    Cron can only express intervals that divide an hour (1m, 2m, 3m, 4m, 5m, 6m,
    10m, 12m, 15m, 20m, 30m), a day (1h, 2h, 3h, 4h, 6h, 8h, 12h) or a whole day (24h).
    """
    if seconds % 60:
        return None
    minutes = seconds // 60
    if minutes < 60 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    if minutes % 60:
        return None
    hours = minutes // 60
    if hours < 24 and 24 % hours == 0:
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    return "0 0 * * *" if hours == 24 else None


def next_run(spec: DataFlowSpec, *, after: datetime, last_run_at: datetime | None = None) -> datetime:
    """When the flow is next due, after ``after``.

    With ``runtime.type: cronjob`` the CronJob is the clock, so an interval is
    evaluated as its exact cron equivalent (``15m`` -> ``*/15 * * * *``): the store's
    next due time then equals the CronJob's next tick, and the Job that starts a
    few seconds after the tick finds its flow due. Otherwise (the shared
    heartbeat) the next run is ``last_run_at + interval`` (or ``after`` if the
    flow never ran, since a flow never run before is due).
    """
    if spec.schedule is not None:
        return next_cron(spec.schedule, after, spec.timeZone)
    assert spec.interval is not None
    seconds = parse_interval(spec.interval)
    if spec.runtime.type == "cronjob" and (cron := cron_for_interval(seconds)) is not None:
        return next_cron(cron, after, spec.timeZone)
    step = timedelta(seconds=seconds)
    if last_run_at is None:
        return after
    return last_run_at + step
