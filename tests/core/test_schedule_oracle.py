"""The store's schedule agrees with the CronJob's: core/schedule.py against robfig/cron v3.0.1 itself.

The oracle (tests/oracle/robfig) is the Go library the Kubernetes API server validates a CronJob's
schedule with and its controller computes ticks with; built from the module proxy, asked in
batches (one process per test).
"""

from __future__ import annotations

import string
from datetime import UTC, datetime

import pytest
from activedataflow.schedule import next_cron, parse_cron
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.oracle.dst import around, changes
from tests.oracle.robfig import Robfig, oracle

pytestmark = pytest.mark.go

ZONES = [
    "UTC", "Europe/Berlin", "Europe/London", "America/New_York", "America/Havana", "America/Santiago",
    "Australia/Lord_Howe", "Pacific/Chatham", "Asia/Kolkata", "",
]
SCHEDULES = [
    "0 * * * *", "*/15 * * * *", "30 * * * *", "45 * * * *", "*/7 * * * *",
    "0 0 * * *", "30 0 * * *", "0 1 * * *", "30 1 * * *", "0 2 * * *", "30 2 * * *", "45 2 * * *",
    "0 3 * * *", "15 2,3 * * *", "0 */2 * * *", "0 22-23,0-3 * * *", "0 0 * * 0", "0 12 * * 1-5",
    "@daily", "@hourly", "@weekly", "@every 5m", "@every 90m",
]


@pytest.fixture(scope="module")
def robfig() -> Robfig:
    return oracle()


def dst_cases() -> list[tuple[str, str, datetime]]:
    """(schedule, zone, after) around every 2026 DST change of each zone (a zone without DST: around
    Berlin's, as a control)."""
    out = []
    for zone in ZONES:
        for change in changes(zone or "UTC", 2026) or changes("Europe/Berlin", 2026):
            out += [(s, zone, t) for t in around(change) for s in SCHEDULES]
    return out


def test_every_2026_dst_change_gives_the_cronjob_controllers_ticks(robfig: Robfig) -> None:
    cases = dst_cases()
    answers = robfig.ask([{"schedule": s, "zone": z, "after": t, "count": 2} for s, z, t in cases])
    differ = []
    for (schedule, zone, after), answer in zip(cases, answers, strict=True):
        ours: list[datetime | None] = []
        t: datetime | None = after
        for _ in answer.ticks:
            assert t is not None
            t = next_cron(schedule, t, zone or None)
            ours.append(t)
        if ours != answer.ticks:
            differ.append((schedule, zone, after.isoformat(), ours, answer.ticks))
    assert len(cases) > 25_000
    assert differ == []


def test_the_issues_examples(robfig: Robfig) -> None:
    # Kubernetes starts no Job on 2026-03-29 for 02:30 Berlin (the hour does not exist), the next at 00:30 UTC
    assert next_cron("30 2 * * *", datetime(2026, 3, 28, 1, 30, tzinfo=UTC), "Europe/Berlin") == datetime(
        2026, 3, 30, 0, 30, tzinfo=UTC)
    # the fall-back day's 01:00 comes twice in New York: 05:00 and 06:00 UTC
    first = next_cron("0 1 * * *", datetime(2026, 10, 31, 12, tzinfo=UTC), "America/New_York")
    assert first == datetime(2026, 11, 1, 5, tzinfo=UTC)
    assert next_cron("0 1 * * *", first, "America/New_York") == datetime(2026, 11, 1, 6, tzinfo=UTC)


ACCEPTED = [
    "0 0 ? * *", "@every 5m", "@every 1h30m", "@every 0", "@every -5m", "@every 1.5h", "@yearly", "@annually",
    "@monthly", "@weekly", "@daily", "@midnight", "@hourly", "*/15 * * * *", "0 0 * * 0", "0 0 * * sun",
    "0 0 * JAN-mar Mon-FRI", "5/10 * * * *", "*/1 * * * *", "0 0 1,15 * *", "0 0 1,,15 * *", "? ? ? ? ?",
    "+5 * * * *", "*-3 * * * *", "0 0 31 2 *", "  0  0 * * *", "0\t0 * * *", ", * * * *",
]
REFUSED = [
    "0 0 * * 7", "0 0 L * *", "0 0 * * 5L", "0 0 * * 1#2", "0 0 15W * *", "@reboot", "@Daily", "@daily ",
    " @daily", "@every", "@every 5", "@every  5m", "@every 5 m", "TZ=UTC 0 0 * * *", "CRON_TZ=UTC 0 0 * * *",
    "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "0 0 0 * *", "0 0 * 13 *", "*/0 * * * *",
    "5-1 * * * *", "1-2-3 * * * *", "1/2/3 * * * *", "-1 * * * *", "jan * * * *", "", "0 0 * * MON#2",
]


def test_validation_agrees_on_the_issues_expressions(robfig: Robfig) -> None:
    answers = robfig.ask([{"schedule": s} for s in ACCEPTED + REFUSED])
    assert [a.valid for a in answers] == [True] * len(ACCEPTED) + [False] * len(REFUSED)
    assert [_valid(s) for s in ACCEPTED + REFUSED] == [a.valid for a in answers]


def _valid(expr: str) -> bool:
    try:
        parse_cron(expr)
    except ValueError:
        return False
    return True


ATOM = st.one_of(
    st.sampled_from(["*", "?", "L", "W", "#", "-", "/", ",", "jan", "FEB", "sun", "Mon", "fri", "İ", "+"]),
    st.integers(0, 65).map(str),
    st.text(string.digits + "*?/-,LW#+", min_size=1, max_size=4),
)
DURATIONISH = r"[-+]?[0-9]{0,3}(\.[0-9]{0,2})?(ns|us|ms|s|m|h|x)?([0-9]m)?"
FIELD = st.lists(ATOM, min_size=1, max_size=4).map("".join)
CRONISH = st.one_of(
    st.lists(FIELD, min_size=4, max_size=6).map(" ".join),
    st.builds(str.join, st.sampled_from([" ", "\t", "  "]), st.lists(FIELD, min_size=5, max_size=5)),
    st.builds("@every {}".format, st.from_regex(DURATIONISH, fullmatch=True)),
    st.sampled_from(["@yearly", "@monthly", "@weekly", "@daily", "@hourly", "@midnight", "@annually", "@foo"]),
)


@given(st.lists(CRONISH, min_size=1, max_size=300))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_validation_agrees_with_the_api_server_for_generated_expressions(exprs: list[str]) -> None:
    answers = oracle().ask([{"schedule": s} for s in exprs])
    assert [(s, _valid(s)) for s in exprs] == [(s, a.valid) for s, a in zip(exprs, answers, strict=True)]


@given(st.lists(CRONISH, min_size=1, max_size=100), st.sampled_from(ZONES),
       st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_ticks_agree_for_generated_expressions(exprs: list[str], zone: str, after: datetime) -> None:
    valid = [s for s in exprs if _valid(s)]
    answers = oracle().ask([{"schedule": s, "zone": zone, "after": after} for s in valid])
    assert [(s, next_cron(s, after, zone or None)) for s in valid] == [
        (s, a.ticks[0]) for s, a in zip(valid, answers, strict=True)]
