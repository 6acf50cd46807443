"""Every DST change of a year in a zone, and instants around each: where cron implementations part."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


def changes(zone: str, year: int) -> list[datetime]:
    """The instants (UTC) in ``year`` at which ``zone``'s UTC offset changes."""
    tz = ZoneInfo(zone)
    start = datetime(year, 1, 1, tzinfo=UTC)
    found: list[datetime] = []
    step = timedelta(hours=1)
    t = start
    while t.year == year:
        if (t + step).astimezone(tz).utcoffset() != t.astimezone(tz).utcoffset():
            low, high = t, t + step  # the offset changes in (low, high]: bisect to the minute
            while high - low > timedelta(minutes=1):
                mid = low + (high - low) / 2
                if mid.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset():
                    low = mid
                else:
                    high = mid
            found.append(high.replace(second=0, microsecond=0))
        t += step
    return found


def around(change: datetime, *, hours: int = 26, step_minutes: int = 60) -> Iterator[datetime]:
    """Instants from ``hours`` before ``change`` to ``hours`` after it, every ``step_minutes``, with a
    few on and beside the change itself (and one with seconds)."""
    minutes = hours * 60
    for m in range(-minutes, minutes + 1, step_minutes):
        yield change + timedelta(minutes=m)
    for s in (-61, -60, -1, 0, 1, 59, 60, 30 * 60 + 7):
        yield change + timedelta(seconds=s)
