"""When a flow runs next: cron (5 fields, @hourly..., @every), an interval, in an IANA time zone.

One cron semantics everywhere, the Kubernetes CronJob's: the API server validates a CronJob's
schedule with robfig/cron v3's standard parser (``cron.ParseStandard``) and refuses ``TZ=`` /
``CRON_TZ=`` in it; the CronJob controller computes its ticks with robfig's ``Schedule.Next`` in
the CronJob's ``timeZone`` (``pkg/controller/cronjob``: ``"TZ=<zone> " + schedule``). This module
is a port of the two (robfig/cron v3.0.1 ``parser.go``, ``spec.go``, ``constantdelay.go``, and the
Go ``time`` rules they lean on), so the store's ``next_run_at`` is the CronJob's next tick and the
model refuses exactly the schedules the API server refuses. ``tests/oracle/robfig`` checks it
against robfig itself.

What that means for users (differences from Vixie cron): day-of-week is 0-6 (``7`` is refused),
``?`` means ``*``, no ``L``/``W``/``#``; ``@every 90m`` runs every 90 minutes; a daily job at a
wall-clock time the spring-forward day skips (02:30 in Berlin on the last Sunday of March) does not
run that day, and one in the hour the fall-back day repeats (01:30 in New York) runs twice.

Intervals are absolute durations from the last run (DST does not stretch them). All results are UTC.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo

from .model import DataFlowSpec, parse_interval

__all__ = [
    "DEFAULT_HEARTBEAT_SCHEDULE",
    "HEARTBEAT_SCHEDULE_ENV",
    "CronSpec",
    "Every",
    "Schedule",
    "check_cron",
    "cron_for_interval",
    "cronjob_schedule",
    "next_cron",
    "next_run",
    "next_run_for_status",
    "next_tick",
    "parse_cron",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- the parser (parser.go)

STAR_BIT: Final = 1 << 63  # set when a field was '*' or '?' (dayMatches: AND instead of OR)


@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int] | None = None


MINUTES = _Bounds(0, 59)
HOURS = _Bounds(0, 23)
DOM = _Bounds(1, 31)
MONTHS = _Bounds(1, 12, {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)})
DOW = _Bounds(0, 6, {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))})


@dataclass(frozen=True)
class CronSpec:
    """robfig's SpecSchedule: one bit per allowed value of each field (seconds always 0)."""

    minute: int
    hour: int
    dom: int
    month: int
    dow: int
    second: int = 1


@dataclass(frozen=True)
class Every:
    """robfig's ConstantDelaySchedule (``@every <duration>``): whole seconds, at least one."""

    seconds: int


Schedule = CronSpec | Every


def _bits(low: int, high: int, step: int) -> int:
    return sum(1 << i for i in range(low, high + 1, step))


def _all(b: _Bounds) -> int:
    return _bits(b.low, b.high, 1) | STAR_BIT


_DESCRIPTORS: Final = {
    "@yearly": CronSpec(1, 1, 1 << DOM.low, 1 << MONTHS.low, _all(DOW)),
    "@annually": CronSpec(1, 1, 1 << DOM.low, 1 << MONTHS.low, _all(DOW)),
    "@monthly": CronSpec(1, 1, 1 << DOM.low, _all(MONTHS), _all(DOW)),
    "@weekly": CronSpec(1, 1, _all(DOM), _all(MONTHS), 1 << DOW.low),
    "@daily": CronSpec(1, 1, _all(DOM), _all(MONTHS), _all(DOW)),
    "@midnight": CronSpec(1, 1, _all(DOM), _all(MONTHS), _all(DOW)),
    "@hourly": CronSpec(1, _all(HOURS), _all(DOM), _all(MONTHS), _all(DOW)),
}
_EVERY = "@every "
# Go's unicode.IsSpace (strings.Fields splits on it); Python's str.split() also splits on \x1c-\x1f
_GO_SPACE = re.compile("[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")
_ATOI = re.compile(r"[+-]?[0-9]+")
_INT64_MAX: Final = (1 << 63) - 1


def parse_cron(expr: str) -> Schedule:
    """The schedule ``expr`` as the Kubernetes API server accepts it for a CronJob, or ValueError
    saying why it refuses it (robfig's reason)."""
    try:
        return _parse_standard(expr)
    except ValueError as err:
        raise ValueError(f"'{expr}' is not a cron schedule Kubernetes accepts: {err}{_HINT}") from None


_HINT: Final = (
    " (5 fields: minute 0-59, hour 0-23, day of month 1-31, month 1-12 or jan-dec, day of week 0-6 or sun-sat;"
    " or @yearly, @monthly, @weekly, @daily, @hourly, @every <duration>)"
)


def _parse_standard(expr: str) -> Schedule:
    """robfig's ParseStandard, with the API server's refusal of TZ= / CRON_TZ=."""
    if not expr:
        raise ValueError("empty spec string")
    if "TZ" in expr:  # apis/batch/validation validateScheduleFormat (TZ= would also change robfig's zone)
        raise ValueError("cannot use TZ or CRON_TZ in schedule, use timeZone instead")
    if expr.startswith("@"):
        return _descriptor(expr)
    fields = [f for f in _GO_SPACE.split(expr) if f]
    if len(fields) != 5:
        raise ValueError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    minute, hour, dom, month, dow = (
        _field(f, b) for f, b in zip(fields, (MINUTES, HOURS, DOM, MONTHS, DOW), strict=True)
    )
    return CronSpec(minute, hour, dom, month, dow)


def _descriptor(expr: str) -> Schedule:
    if (spec := _DESCRIPTORS.get(expr)) is not None:
        return spec
    if expr.startswith(_EVERY):
        nanos = _go_parse_duration(expr[len(_EVERY):])
        if nanos is None:
            raise ValueError(f"failed to parse duration {expr}: time: invalid duration {expr[len(_EVERY):]!r}")
        return Every(max(nanos, 10**9) // 10**9)  # Every(): under a second is a second; nanoseconds dropped
    raise ValueError(f"unrecognized descriptor: {expr}")


def _field(text: str, bounds: _Bounds) -> int:
    bits = 0
    for part in text.split(","):
        if part:  # strings.FieldsFunc: empty parts vanish
            bits |= _range(part, bounds)
    return bits


def _range(expr: str, b: _Bounds) -> int:
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    extra = 0
    if low_and_high[0] in ("*", "?"):
        start, end, extra = b.low, b.high, STAR_BIT
    else:
        start = _int_or_name(low_and_high[0], b.names)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _int_or_name(low_and_high[1], b.names)
        else:
            raise ValueError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _atoi(range_and_step[1])
        if len(low_and_high) == 1:  # "N/step" means "N-max/step"
            end = b.high
        if step > 1:
            extra = 0
    else:
        raise ValueError(f"too many slashes: {expr}")
    if start < b.low:
        raise ValueError(f"beginning of range ({start}) below minimum ({b.low}): {expr}")
    if end > b.high:
        raise ValueError(f"end of range ({end}) above maximum ({b.high}): {expr}")
    if start > end:
        raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ValueError(f"step of range should be a positive number: {expr}")
    return _bits(start, end, step) | extra


def _int_or_name(expr: str, names: dict[str, int] | None) -> int:
    if names is not None and (named := names.get(_go_lower(expr))) is not None:
        return named
    return _atoi(expr)


def _go_lower(text: str) -> str:
    """Go's strings.ToLower: the simple (one-to-one) case mapping, so 'İ' lowers to 'i'."""
    return "".join("i" if c == "\u0130" else c.lower() for c in text)


def _atoi(expr: str) -> int:
    """Go's strconv.Atoi and robfig's mustParseInt (no negative numbers)."""
    too_long = len(expr.lstrip("+-0")) > 19
    if not _ATOI.fullmatch(expr) or too_long or abs(num := int(expr)) > _INT64_MAX + (expr[0] == "-"):
        raise ValueError(f"failed to parse int from {expr}")
    if num < 0:
        raise ValueError(f"negative number ({num}) not allowed: {expr}")
    return num


_UNITS: Final = {
    b"ns": 1, b"us": 1_000, "µs".encode(): 1_000, "μs".encode(): 1_000, b"ms": 1_000_000,
    b"s": 10**9, b"m": 60 * 10**9, b"h": 3600 * 10**9,
}
_LIMIT: Final = 1 << 63


def _go_parse_duration(text: str) -> int | None:
    """Go's time.ParseDuration in nanoseconds, None where it errs: ``[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+``."""
    s = text.encode()
    neg = bool(s) and s[:1] == b"-"
    if s[:1] in (b"-", b"+"):
        s = s[1:]
    if s == b"0":
        return 0
    if not s:
        return None
    total = 0
    while s:
        term = _duration_term(s)
        if term is None:
            return None
        value, s = term
        total += value
        if total > _LIMIT:
            return None
    if neg:
        return -total
    return None if total > _INT64_MAX else total


def _duration_term(s: bytes) -> tuple[int, bytes] | None:
    """The nanoseconds of the leading ``[0-9]*(\\.[0-9]*)?[a-z]+`` of ``s`` and the rest, None where Go errs."""
    if not (s[:1] == b"." or s[:1].isdigit()):
        return None
    digits = len(s) - len(s.lstrip(b"0123456789"))
    significant = s[:digits].lstrip(b"0")
    if len(significant) > 19 or (whole := int(significant or b"0")) > _LIMIT:
        return None
    s = s[digits:]
    frac, scale, post = 0, 1.0, False
    if s[:1] == b".":
        s = s[1:]
        n = len(s) - len(s.lstrip(b"0123456789"))
        post = n > 0
        frac, scale = _leading_fraction(s[:n])
        s = s[n:]
    if not digits and not post:
        return None
    i = next((k for k, c in enumerate(s) if c == ord(".") or 48 <= c <= 57), len(s))
    if i == 0 or (unit := _UNITS.get(s[:i])) is None:
        return None
    if whole > _LIMIT // unit:
        return None
    value = whole * unit
    if frac > 0:
        value += int(float(frac) * (float(unit) / scale))
        if value > _LIMIT:
            return None
    return value, s[i:]


def _leading_fraction(digits: bytes) -> tuple[int, float]:
    x, scale = 0, 1.0
    for c in digits:
        if x > _INT64_MAX // 10:
            break  # Go stops accumulating precision (it keeps consuming the digits)
        y = x * 10 + c - 48
        if y > _LIMIT:
            break
        x, scale = y, scale * 10
    return x, scale


def check_cron(expr: str) -> Schedule:
    """``expr`` parsed (:func:`parse_cron`), also refused when it never fires (``0 0 31 2 *``): the
    API server accepts such a CronJob, which then never starts a Job."""
    schedule = parse_cron(expr)
    if next_tick(schedule, datetime(2000, 1, 1, tzinfo=UTC), UTC) is None:
        raise ValueError(f"'{expr}' never fires (no such day)")
    return schedule


# --------------------------------------------------------------------------- Next (spec.go) on Go's clock


class _Clock:
    """Go's time.Time arithmetic in one location, on whole unix seconds."""

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone

    def local(self, unix: int) -> datetime:
        return datetime.fromtimestamp(unix, self.zone)

    def offset(self, unix: int) -> int:
        delta = self.local(unix).utcoffset()
        return 0 if delta is None else int(delta.total_seconds())

    def date(self, year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> int:
        """time.Date: out-of-range values normalised; a wall time a DST change skips or repeats
        resolved as Go does (the offset in force at the wall time read as UTC, corrected once)."""
        year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
        days = date(year, month, 1).toordinal() - _EPOCH_ORDINAL + day - 1
        wall = days * 86400 + hour * 3600 + minute * 60 + second
        return wall - self.offset(wall - self.offset(wall))


_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


def _day_matches(s: CronSpec, t: datetime) -> bool:
    dom = bool(1 << t.day & s.dom)
    dow = bool(1 << (t.isoweekday() % 7) & s.dow)
    if s.dom & STAR_BIT or s.dow & STAR_BIT:
        return dom and dow
    return dom or dow


@dataclass(frozen=True)
class _Field:
    """One of Next's loops: while the field does not match, (the first time) reset the time to the
    field's start, advance one unit; a wrap to the field's first value restarts the search (WRAP)."""

    matches: Callable[[datetime], bool]
    reset: Callable[[int, datetime], int]
    advance: Callable[[int, datetime], int]
    wraps: Callable[[datetime], bool]


def _fields(s: CronSpec, clock: _Clock) -> tuple[_Field, ...]:
    def next_day(t: int, lt: datetime) -> int:
        t = clock.date(lt.year, lt.month, lt.day + 1, lt.hour, lt.minute, lt.second)
        hour = clock.local(t).hour
        if hour != 0:  # midnight skipped or repeated by DST: back to it (robfig's Sao Paulo note)
            t += (24 - hour) * 3600 if hour > 12 else -hour * 3600
        return t

    return (
        _Field(lambda lt: bool(1 << lt.month & s.month),
               lambda t, lt: clock.date(lt.year, lt.month, 1, 0),
               lambda t, lt: clock.date(lt.year, lt.month + 1, lt.day, lt.hour, lt.minute, lt.second),
               lambda lt: lt.month == 1),
        _Field(lambda lt: _day_matches(s, lt),
               lambda t, lt: clock.date(lt.year, lt.month, lt.day, 0),
               next_day,
               lambda lt: lt.day == 1),
        _Field(lambda lt: bool(1 << lt.hour & s.hour),
               lambda t, lt: clock.date(lt.year, lt.month, lt.day, lt.hour),
               lambda t, lt: t + 3600,
               lambda lt: lt.hour == 0),
        _Field(lambda lt: bool(1 << lt.minute & s.minute),
               lambda t, lt: t - t % 60,  # Truncate(time.Minute): whole minutes of UTC, as Go does
               lambda t, lt: t + 60,
               lambda lt: lt.minute == 0),
        _Field(lambda lt: bool(1 << lt.second & s.second),
               lambda t, lt: t,
               lambda t, lt: t + 1,
               lambda lt: lt.second == 0),
    )


def _spec_next(s: CronSpec, after: int, clock: _Clock) -> int | None:
    """robfig's SpecSchedule.Next on whole unix seconds (spec.go, loop for loop)."""
    t = after + 1  # the upcoming second
    added = False  # whether a field was advanced (the first advance resets the fields below it)
    year_limit = clock.local(t).year + 5
    fields = _fields(s, clock)
    while True:  # WRAP
        lt = clock.local(t)
        if lt.year > year_limit:
            return None
        for f in fields:
            while not f.matches(lt):
                if not added:
                    added = True
                    t = f.reset(t, lt)
                    lt = clock.local(t)
                t = f.advance(t, lt)
                lt = clock.local(t)
                if f.wraps(lt):
                    break
            else:
                continue  # the field matches: on to the next
            break  # wrapped: search again from the month
        else:
            return t


def next_tick(schedule: Schedule, after: datetime, zone: tzinfo) -> datetime | None:
    """robfig's ``Schedule.Next(after)`` in ``zone``, as UTC; None if no tick within five years."""
    unix = (after - _EPOCH) // timedelta(seconds=1)  # the whole second; Next starts at the one after it
    if isinstance(schedule, Every):
        return _utc(unix + schedule.seconds)
    found = _spec_next(schedule, unix, _Clock(zone))
    return None if found is None else _utc(found)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(unix: int) -> datetime:
    return _EPOCH + timedelta(seconds=unix)


def next_cron(expr: str, after: datetime, tz: str | None = None) -> datetime | None:
    """The CronJob's first tick strictly after ``after`` (aware), as UTC; None if it never fires.

    Without ``tz`` the CronJob controller's own zone, UTC."""
    return next_tick(parse_cron(expr), after, ZoneInfo(tz) if tz else UTC)


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


def cronjob_schedule(spec: DataFlowSpec) -> str:
    """The schedule of the CronJob that runs a ``runtime.type: cronjob`` flow: ``spec.schedule`` as written
    (the model accepts what the API server accepts, and both read it the same way), an interval as its
    exact cron equivalent."""
    if spec.schedule is not None:
        return spec.schedule
    seconds = spec.interval_seconds
    assert seconds is not None
    cron = cron_for_interval(seconds)
    assert cron is not None, "the model refuses intervals cron cannot express when runtime.type is cronjob"
    return cron


DEFAULT_HEARTBEAT_SCHEDULE: Final = "* * * * *"  # the shared heartbeat CronJob's schedule unless configured
HEARTBEAT_SCHEDULE_ENV: Final = "ADF_HEARTBEAT_SCHEDULE"  # the operator's setting, passed on to heartbeat Pods


def next_run_for_status(
    spec: DataFlowSpec, due: datetime | None, now: datetime, *, heartbeat_schedule: str = DEFAULT_HEARTBEAT_SCHEDULE
) -> datetime | None:
    """``status.nextRunAt``, written by the operator (reconcile) and by the runner (after a run) alike: the
    first tick, at or after the store's due time ``due`` (a never-run flow is due now), of the CronJob that
    runs the flow: its own, or for a heartbeat flow the shared one (``heartbeat_schedule``). None while
    suspended."""
    if spec.suspend:
        return None
    after = now if due is None else max(due - timedelta(seconds=1), now)
    if spec.runtime.type == "heartbeat":
        return next_cron(heartbeat_schedule, after)
    return next_cron(cronjob_schedule(spec), after, spec.timeZone)


def next_run(spec: DataFlowSpec, *, after: datetime, last_run_at: datetime | None = None) -> datetime:
    """When the flow is next due, after ``after``.

    A schedule: its next tick, as the CronJob computes it (for every runtime, so a flow moved
    between runtimes keeps its times). With ``runtime.type: cronjob`` the CronJob is the clock, so
    an interval is evaluated as its exact cron equivalent (``15m`` -> ``*/15 * * * *``). Otherwise
    (the shared heartbeat) the next run is ``last_run_at + interval`` (or ``after`` if the flow never
    ran, since a flow never run before is due).
    """
    if spec.schedule is not None:
        return _must(next_cron(spec.schedule, after, spec.timeZone), spec.schedule)
    assert spec.interval is not None
    seconds = parse_interval(spec.interval)
    if spec.runtime.type == "cronjob" and (cron := cron_for_interval(seconds)) is not None:
        return _must(next_cron(cron, after, spec.timeZone), cron)
    step = timedelta(seconds=seconds)
    if last_run_at is None:
        return after
    return last_run_at + step


def _must(tick: datetime | None, expr: str) -> datetime:
    if tick is None:  # the model refuses schedules that never fire (check_cron)
        raise ValueError(f"spec.schedule: '{expr}' has no tick in the next five years")
    return tick
