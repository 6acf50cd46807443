"""Prometheus metrics of the operator: every flow's figures, read from the store at scrape time.

Runner Pods are short-lived, so nothing is pushed: :class:`FlowCollector` reads the store when
Prometheus scrapes (each flow's newest ``runs_per_flow`` runs, one query per flow), keeps the
result ``cache_seconds`` so that a scrape storm costs one read, and :func:`start_metrics_server`
serves it with the operator's own counters on ``/metrics``. Labels of the flow metrics:
``namespace`` and ``flow`` (the DataFlow's).

Flow metrics (from the store):

==============================================  =======  =================================================
``adf_flow_runs_total{result}``                 counter  finished runs, ``result`` = ``succeeded`` |
                                                         ``failed``. Counted by this process: the runs in
                                                         the window at its first read, then each run that
                                                         finishes; it starts again when the operator
                                                         restarts (``rate``/``increase`` handle that).
``adf_flow_records_total{kind}``                counter  records of those finished runs, ``kind`` =
                                                         ``read`` | ``written`` | ``failed`` (same counting)
``adf_flow_last_run_records{kind}``             gauge    records of the newest finished run, same ``kind``
``adf_flow_last_run_duration_seconds``          gauge    duration of the newest finished run (absent if it
                                                         never started)
``adf_flow_last_run_timestamp_seconds``         gauge    the flow's last_run_at: when its newest finished
                                                         run started
``adf_flow_last_run_success``                   gauge    1 if the newest finished run succeeded, else 0
``adf_flow_last_success_timestamp_seconds``     gauge    end of the newest successful run (absent if none
                                                         is in the window nor was seen by this process)
``adf_flow_consecutive_failures``               gauge    finished runs that failed since the last success,
                                                         newest first (at most ``runs_per_flow``)
``adf_flow_active_runs``                        gauge    pending and in-progress runs
``adf_flow_suspended``                          gauge    1 if the flow record is disabled (``suspend: true``;
                                                         a deleted DataFlow's record is kept disabled too)
``adf_flow_next_run_timestamp_seconds``         gauge    when the flow is next due (absent: due now)
``adf_flow_schedule_period_seconds``            gauge    its schedule's period: the interval, or the
                                                         longest gap between two ticks of its cron
                                                         expression (``0 9 * * 1-5``: 72 h)
``adf_flow_created_timestamp_seconds``          gauge    when the flow record was created
==============================================  =======  =================================================

Store and operator metrics:

==============================================  =======  =================================================
``adf_store_up``                                gauge    1 if the last read of the store succeeded; while
                                                         it is 0 no flow metrics are served
``adf_store_read_duration_seconds``             gauge    how long that read took
``adf_operator_reconcile_total{result}``        counter  reconciliations by the operator's handlers,
                                                         ``result`` = ``success`` | ``retry`` (a temporary
                                                         error, retried) | ``error`` (permanent)
``adf_operator_reconcile_errors_total``         counter  reconciliations that did not succeed
                                                         (``retry`` + ``error``)
``process_*``, ``python_*``                              prometheus_client's process and runtime collectors
==============================================  =======  =================================================

The operator's handlers call :func:`record_reconcile`; ``ADF_METRICS_PORT`` (read by
:func:`metrics_port_from_env`) tells the operator where to serve.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from wsgiref.simple_server import WSGIServer
from zoneinfo import ZoneInfo

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..errors import ConfigError, redact
from ..schedule import next_tick, parse_cron
from ..store import ACTIVE_STATUSES, FlowRecord, RunRecord, Store

__all__ = [
    "PORT_ENV_VAR",
    "RECONCILE_RESULTS",
    "FlowCollector",
    "MetricsServer",
    "make_registry",
    "metrics_port_from_env",
    "record_reconcile",
    "schedule_period_seconds",
    "start_metrics_server",
]

log = logging.getLogger(__name__)

PORT_ENV_VAR = "ADF_METRICS_PORT"
RECONCILE_RESULTS = ("success", "retry", "error")
RECORD_KINDS = ("read", "written", "failed")
_RESULT_OF = {"success": "succeeded", "failed": "failed"}  # the store's final status -> the metric's label
_LABELS = ("namespace", "flow")

# The operator's own counters: module-level, registered into every registry make_registry builds.
_RECONCILE = Counter(
    "adf_operator_reconcile", "Reconciliations by the operator's handlers, by result.", ["result"], registry=None
)
_RECONCILE_ERRORS = Counter(
    "adf_operator_reconcile_errors", "Reconciliations that did not succeed (retried or permanent errors).",
    registry=None,
)
for _result in RECONCILE_RESULTS:
    _RECONCILE.labels(result=_result)  # every series exists from the start at 0, so rate() sees the first one


def record_reconcile(result: str) -> None:
    """Count one reconciliation: ``success``, ``retry`` (a temporary error kopf retries) or ``error``.

    Raises ValueError for any other result (a label value is a fixed set, never a message)."""
    if result not in RECONCILE_RESULTS:
        raise ValueError(f"reconcile result must be one of {', '.join(RECONCILE_RESULTS)}, not {result!r}")
    _RECONCILE.labels(result=result).inc()
    if result != "success":
        _RECONCILE_ERRORS.inc()


def metrics_port_from_env(environ: Mapping[str, str] | None = None) -> int | None:
    """The port of ``$ADF_METRICS_PORT``; None when it is unset, empty or 0 (no metrics server)."""
    text = (os.environ if environ is None else environ).get(PORT_ENV_VAR, "").strip()
    if not text:
        return None
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(f"'{text}' is not a port (0-65535)", field=PORT_ENV_VAR)
    return port or None


# --------------------------------------------------------------------------- schedule periods

_PERIOD_TICKS = 2000  # enough ticks to see a weekend in "*/5 9-17 * * 1-5"
_PERIOD_SPAN = 400 * 86400.0  # ...or a year of a rare one


@functools.lru_cache(maxsize=1024)
def _cron_period(expr: str, time_zone: str | None) -> float:
    zone = ZoneInfo(time_zone) if time_zone else UTC
    schedule = parse_cron(expr)
    first = previous = next_tick(schedule, datetime(2024, 1, 1, tzinfo=UTC), zone)
    longest = 0.0
    for _ in range(_PERIOD_TICKS):
        if previous is None or first is None:
            break
        now = next_tick(schedule, previous, zone)
        if now is None:
            break
        longest = max(longest, (now - previous).total_seconds())
        previous = now
        if (now - first).total_seconds() >= _PERIOD_SPAN:
            break
    return longest


def schedule_period_seconds(flow: FlowRecord) -> float | None:
    """The flow's period: its interval, else the longest gap between two ticks of its cron schedule
    (in its time zone, so a fall-back day's 25 h counts). None without either or for a bad expression."""
    if flow.interval_seconds:
        return float(flow.interval_seconds)
    if flow.schedule:
        try:
            return _cron_period(flow.schedule, flow.time_zone)
        except (ValueError, KeyError, StopIteration):  # a record the model would not accept; ZoneInfoNotFound
            return None
    return None


# --------------------------------------------------------------------------- the flow collector


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


@dataclass
class _Tally:
    """What this process counted for one flow (monotonic between restarts)."""

    seen: frozenset[str] = frozenset()  # ids of the final runs in the last window read
    runs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_RESULT_OF.values(), 0))
    records: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RECORD_KINDS, 0))
    last_success: float | None = None


@dataclass(frozen=True)
class _FlowFigures:
    namespace: str
    name: str
    suspended: bool
    runs: Mapping[str, int]
    records: Mapping[str, int]
    last_records: Mapping[str, int] | None
    last_duration: float | None
    last_run_at: float | None
    last_success_flag: bool | None
    last_success: float | None
    consecutive_failures: int
    active_runs: int
    next_run_at: float | None
    period: float | None
    created_at: float | None


@dataclass(frozen=True)
class _Snapshot:
    up: bool
    read_seconds: float
    flows: Sequence[_FlowFigures]


def _records(run: RunRecord) -> dict[str, int]:
    return {"read": run.records_read, "written": run.records_written, "failed": run.records_failed}


class FlowCollector(Collector):
    """Every flow's figures from the store, read at scrape time (bounded and cached).

    ``runs_per_flow``: the newest runs read per flow (the window of the counters and of
    ``adf_flow_consecutive_failures``); ``cache_seconds``: how long one read serves scrapes.
    """

    def __init__(
        self,
        store: Store,
        *,
        runs_per_flow: int = 20,
        cache_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if runs_per_flow < 1:
            raise ValueError("runs_per_flow must be at least 1")
        self.store = store
        self.runs_per_flow = runs_per_flow
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._snapshot: _Snapshot | None = None
        self._read_at = 0.0
        self.reads = 0  # how many times the store was read (for tests and debugging)

    # ------------------------------------------------------------------ reading
    def _figures(self, flow: FlowRecord, runs: list[RunRecord]) -> _FlowFigures:
        tally = self._tallies.setdefault(flow.key, _Tally())
        final = [r for r in runs if r.status in _RESULT_OF]
        for run in final:
            if run.id not in tally.seen:
                tally.runs[_RESULT_OF[run.status]] += 1
                for kind, count in _records(run).items():
                    tally.records[kind] += count
        tally.seen = frozenset(r.id for r in final)
        for run in final:
            if run.status == "success":
                ended = _ts(run.ended_at or run.started_at or run.created_at)
                if ended is not None and (tally.last_success is None or ended > tally.last_success):
                    tally.last_success = ended
                break
        failures = 0
        for run in final:
            if run.status != "failed":
                break
            failures += 1
        last = final[0] if final else None
        return _FlowFigures(
            namespace=flow.namespace,
            name=flow.name,
            suspended=not flow.enabled,
            runs=dict(tally.runs),
            records=dict(tally.records),
            last_records=_records(last) if last else None,
            last_duration=last.duration_seconds if last else None,
            last_run_at=_ts(flow.last_run_at),
            last_success_flag=(last.status == "success") if last else None,
            last_success=tally.last_success,
            consecutive_failures=failures,
            active_runs=sum(1 for r in runs if r.status in ACTIVE_STATUSES),
            next_run_at=_ts(flow.next_run_at),
            period=schedule_period_seconds(flow),
            created_at=_ts(flow.created_at),
        )

    def _read(self) -> _Snapshot:
        started = time.perf_counter()
        self.reads += 1
        try:
            flows = self.store.list_flows()
            figures = [self._figures(f, self.store.list_runs(f.name, f.namespace, limit=self.runs_per_flow))
                       for f in flows]
        except Exception as err:  # a scrape reports the store down instead of failing
            log.warning("metrics: reading the store failed: %s", redact(str(err)))
            return _Snapshot(up=False, read_seconds=time.perf_counter() - started, flows=())
        for gone in set(self._tallies) - {f.key for f in flows}:
            del self._tallies[gone]  # a flow deleted from the store: its series end
        return _Snapshot(up=True, read_seconds=time.perf_counter() - started, flows=figures)

    def snapshot(self) -> _Snapshot:
        """The cached read, refreshed when older than ``cache_seconds`` (one reader at a time)."""
        with self._lock:
            now = self._clock()
            if self._snapshot is None or now - self._read_at >= self.cache_seconds:
                self._snapshot = self._read()
                self._read_at = self._clock()
            return self._snapshot

    # ------------------------------------------------------------------ exposition
    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
        flow = list(_LABELS)
        g, c = GaugeMetricFamily, CounterMetricFamily
        families: list[GaugeMetricFamily | CounterMetricFamily] = [
            c("adf_flow_runs", "Finished runs of the flow by result (succeeded, failed).", labels=[*flow, "result"]),
            c("adf_flow_records", "Records of the flow's finished runs by kind (read, written, failed).",
              labels=[*flow, "kind"]),
            g("adf_flow_last_run_records", "Records of the newest finished run by kind.", labels=[*flow, "kind"]),
            g("adf_flow_last_run_duration_seconds", "Duration of the newest finished run.", labels=flow),
            g("adf_flow_last_run_timestamp_seconds", "When the newest finished run started.", labels=flow),
            g("adf_flow_last_run_success", "1 if the newest finished run succeeded, else 0.", labels=flow),
            g("adf_flow_last_success_timestamp_seconds", "End of the newest successful run.", labels=flow),
            g("adf_flow_consecutive_failures", "Finished runs that failed since the last success.", labels=flow),
            g("adf_flow_active_runs", "Pending and in-progress runs.", labels=flow),
            g("adf_flow_suspended", "1 if the flow is suspended (its record disabled).", labels=flow),
            g("adf_flow_next_run_timestamp_seconds", "When the flow is next due.", labels=flow),
            g("adf_flow_schedule_period_seconds", "The schedule's period (interval or longest cron gap).",
              labels=flow),
            g("adf_flow_created_timestamp_seconds", "When the flow record was created.", labels=flow),
            g("adf_store_up", "1 if the last read of the store succeeded."),
            g("adf_store_read_duration_seconds", "How long the last read of the store took."),
        ]
        return {f.name: f for f in families}

    def describe(self) -> Iterable[Metric]:
        """The families without samples: registering the collector does not read the store."""
        return list(self._families().values())

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot()
        fam = self._families()

        def put(name: str, flow: _FlowFigures, value: float | None, *extra: str) -> None:
            if value is not None:
                fam[name].add_metric([flow.namespace, flow.name, *extra], value)

        for f in snap.flows:
            for result, count in f.runs.items():
                put("adf_flow_runs", f, count, result)
            for kind, count in f.records.items():
                put("adf_flow_records", f, count, kind)
            for kind, count in (f.last_records or {}).items():
                put("adf_flow_last_run_records", f, count, kind)
            put("adf_flow_last_run_duration_seconds", f, f.last_duration)
            put("adf_flow_last_run_timestamp_seconds", f, f.last_run_at)
            put("adf_flow_last_run_success", f, None if f.last_success_flag is None else float(f.last_success_flag))
            put("adf_flow_last_success_timestamp_seconds", f, f.last_success)
            put("adf_flow_consecutive_failures", f, f.consecutive_failures)
            put("adf_flow_active_runs", f, f.active_runs)
            put("adf_flow_suspended", f, float(f.suspended))
            put("adf_flow_next_run_timestamp_seconds", f, f.next_run_at)
            put("adf_flow_schedule_period_seconds", f, f.period)
            put("adf_flow_created_timestamp_seconds", f, f.created_at)
        fam["adf_store_up"].add_metric([], float(snap.up))
        fam["adf_store_read_duration_seconds"].add_metric([], snap.read_seconds)
        return list(fam.values())


# --------------------------------------------------------------------------- serving


def make_registry(store: Store, *, runs_per_flow: int = 20, cache_seconds: float = 10.0,
                  process: bool = True) -> CollectorRegistry:
    """A registry of the flow collector on ``store``, the operator's counters and (with ``process``)
    prometheus_client's process, platform and GC collectors."""
    registry = CollectorRegistry()
    registry.register(FlowCollector(store, runs_per_flow=runs_per_flow, cache_seconds=cache_seconds))
    registry.register(_RECONCILE)
    registry.register(_RECONCILE_ERRORS)
    if process:
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
    return registry


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint (prometheus_client's threaded WSGI server)."""

    registry: CollectorRegistry
    host: str
    port: int  # the bound port (port=0 asks for a free one)
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_metrics_server(store: Store, *, host: str = "0.0.0.0", port: int = 9090, runs_per_flow: int = 20,
                         cache_seconds: float = 10.0) -> MetricsServer:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread (every path answers the metrics)."""
    registry = make_registry(store, runs_per_flow=runs_per_flow, cache_seconds=cache_seconds)
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(registry=registry, host=host, port=int(server.server_port), _server=server,
                         _thread=thread)
