"""When a flow runs next: cron (5 fields, macros, @every), intervals, time zones and DST (as the CronJob does).

The agreement with robfig/cron itself is tests/core/test_schedule_oracle.py."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from activedataflow.model import DataFlowSpec, parse_interval
from activedataflow.schedule import CronSpec, Every, next_cron, next_run, parse_cron
from hypothesis import given, settings
from hypothesis import strategies as st

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def spec(**fields: Any) -> DataFlowSpec:
    return DataFlowSpec.model_validate(
        {
            "source": {"type": "sql", "connection": {"url": "sqlite:///a.db"}, "table": "t"},
            "sink": {"type": "sql", "connection": {"url": "sqlite:///b.db"}, "table": "u"},
            **fields,
        }
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("expr", "same_as"),
    [
        ("  0   2 * *   1-5 ", "0 2 * * 1-5"),
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("0 0 ? * *", "0 0 * * *"),
        ("0 0 * * sun", "0 0 * * 0"),
    ],
)
def test_cron_and_macros(expr: str, same_as: str) -> None:
    assert parse_cron(expr) == parse_cron(same_as)


def test_every_is_a_fixed_delay_in_whole_seconds() -> None:
    assert parse_cron("@every 5m") == Every(300)
    assert parse_cron("@every 1h30m") == Every(5400)
    assert parse_cron("@every 100ms") == Every(1)  # robfig: at least a second
    assert next_cron("@every 90m", utc(2026, 1, 1, 10, 0, 0)) == utc(2026, 1, 1, 11, 30)


def test_a_minute_field_is_a_bit_set() -> None:
    spec = parse_cron("5,10-12 * * * *")
    assert isinstance(spec, CronSpec)
    assert spec.minute == (1 << 5) | (1 << 10) | (1 << 11) | (1 << 12)


@pytest.mark.parametrize(
    "bad",
    ["* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "@reboot", "every day", "", "0 0 * * 7", "0 0 L * *",
     "0 0 * * 5L", "0 0 * * 1#2", "TZ=Europe/Berlin 0 0 * * *"],
)
def test_bad_cron_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_cron(bad)


@pytest.mark.parametrize(("text", "seconds"), [("15m", 900), ("1h30m", 5400), ("90s", 90), ("2h", 7200), ("1m30s", 90)])
def test_intervals(text: str, seconds: int) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("bad", ["", "15", "m", "15x", "0s", "1.5h", "-5m", "h1"])
def test_bad_intervals_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_interval(bad)


def test_cron_defaults_to_utc() -> None:
    s = spec(schedule="0 2 * * *")
    assert next_run(s, after=utc(2024, 6, 1, 12, 0)) == utc(2024, 6, 2, 2, 0)


def test_cron_in_a_time_zone_is_wall_clock_time() -> None:
    s = spec(schedule="0 2 * * *", timeZone="Europe/Berlin")
    assert next_run(s, after=utc(2024, 6, 1, 12, 0)) == utc(2024, 6, 2, 0, 0)  # 02:00 CEST = 00:00 UTC
    assert next_run(s, after=utc(2024, 1, 1, 12, 0)) == utc(2024, 1, 2, 1, 0)  # 02:00 CET = 01:00 UTC


def test_next_run_is_strictly_after_a_tick() -> None:
    assert next_cron("*/15 * * * *", utc(2024, 1, 1, 10, 15)) == utc(2024, 1, 1, 10, 30)
    assert next_cron("*/15 * * * *", utc(2024, 1, 1, 10, 14, 59, 999)) == utc(2024, 1, 1, 10, 15)


@pytest.mark.parametrize(("zone", "day"), [(BERLIN, datetime(2024, 3, 31)), (NEW_YORK, datetime(2024, 3, 10))])
def test_spring_forward_a_0230_daily_job_does_not_run_that_day(zone: ZoneInfo, day: datetime) -> None:
    # 02:30 does not exist that day; the CronJob controller (robfig/cron) starts no Job then
    before = day.replace(hour=0, tzinfo=zone)
    ticks = run_times("30 2 * * *", zone, before, hours=48)
    assert [t.astimezone(zone).replace(tzinfo=None) for t in ticks] == [day + timedelta(days=1, hours=2, minutes=30)]


@pytest.mark.parametrize(("zone", "day"), [(BERLIN, datetime(2024, 10, 27)), (NEW_YORK, datetime(2024, 11, 3))])
def test_fall_back_a_job_in_the_repeated_hour_runs_twice(zone: ZoneInfo, day: datetime) -> None:
    hour = 2 if zone is BERLIN else 1  # the repeated hour: 02:00-03:00 in Berlin, 01:00-02:00 in New York
    ticks = run_times(f"30 {hour} * * *", zone, day.replace(hour=0, tzinfo=zone), hours=24)
    assert [t.astimezone(zone).replace(tzinfo=None) for t in ticks] == [day.replace(hour=hour, minute=30)] * 2
    assert ticks[1] - ticks[0] == timedelta(hours=1)


def test_an_hourly_job_keeps_its_pace_across_fall_back() -> None:
    ticks = run_times("0 * * * *", BERLIN, datetime(2024, 10, 27, 0, 0, tzinfo=BERLIN), hours=5)
    gaps = {b - a for a, b in itertools.pairwise(ticks)}
    assert gaps == {timedelta(hours=1)}


def run_times(expr: str, zone: ZoneInfo, start: datetime, *, hours: int) -> list[datetime]:
    s = spec(schedule=expr, timeZone=zone.key)
    out: list[datetime] = []
    t = start.astimezone(UTC)
    end = t + timedelta(hours=hours)
    while (t := next_run(s, after=t)) < end:
        out.append(t)
    return out


def test_interval_with_the_heartbeat_runtime_counts_from_the_last_run() -> None:
    s = spec(interval="1h30m", runtime={"type": "heartbeat"})
    now = utc(2024, 1, 1, 10, 7)
    assert next_run(s, after=now) == now  # never ran: due now
    assert next_run(s, after=now, last_run_at=utc(2024, 1, 1, 9, 0)) == utc(2024, 1, 1, 10, 30)


def test_interval_with_the_cronjob_runtime_follows_its_cron_ticks() -> None:
    s = spec(interval="15m")
    assert next_run(s, after=utc(2024, 1, 1, 10, 7)) == utc(2024, 1, 1, 10, 15)


def test_an_interval_is_an_absolute_duration_across_dst() -> None:
    s = spec(interval="24h", runtime={"type": "heartbeat"}, timeZone="Europe/Berlin")
    last = utc(2024, 3, 30, 12, 0)
    assert next_run(s, after=last, last_run_at=last) == last + timedelta(hours=24)


CRONS = st.sampled_from(
    [
        "* * * * *",
        "*/15 * * * *",
        "30 2 * * *",
        "0 0 1 * *",
        "5 4 * * 0",
        "0 9-17/2 * * 1-5",
        "59 23 31 12 *",
        "0 1,2,3 * * *",
        "@hourly",
        "@daily",
        "0 0 29 2 *",
    ]
)
ZONES = st.sampled_from([None, "UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"])
INSTANTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31), timezones=st.just(UTC))


@given(expr=CRONS, zone=ZONES, after=INSTANTS)
@settings(max_examples=50, deadline=None)
def test_next_run_is_strictly_after_and_a_cron_match(expr: str, zone: str | None, after: datetime) -> None:
    s = spec(schedule=expr, **({"timeZone": zone} if zone else {}))
    nxt = next_run(s, after=after)
    assert nxt > after
    assert nxt.tzinfo is not None and nxt.utcoffset() == timedelta(0)
    local = nxt.astimezone(ZoneInfo(zone) if zone else UTC)
    assert local.second == 0 and local.microsecond == 0
    # a match: the tick's wall-clock fields are allowed by the expression
    spec_ = parse_cron(expr)
    assert isinstance(spec_, CronSpec)
    assert spec_.minute >> local.minute & 1 and spec_.hour >> local.hour & 1 and spec_.month >> local.month & 1
