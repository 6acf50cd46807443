"""The Redis backend (``redis://``, ``rediss://``) and its in-process emulator (``memory://``, fakeredis).

Layout, every key prefixed ``adf:`` (a flow is addressed as ``<namespace>/<name>``)::

    adf:flow:<ns>/<name>        hash   the flow record (spec and cursor as JSON)
    adf:flows                   set    every flow address
    adf:due                     zset   enabled flows by next_run_at (never run: -inf)
    adf:run:<id>                hash   a run record
    adf:runs                    zset   every run id by created_at
    adf:flowruns:<ns>/<name>    zset   the flow's run ids by created_at
    adf:active                  zset   active run ids by lease expiry
    adf:flowactive:<ns>/<name>  set    the flow's active run ids
    adf:runnames:<ns>/<name>    hash   run_name -> run id (one run per slot)
    adf:seq:run                 string the last run id
    adf:schema                  string layout version

Times are integer microseconds since the epoch (exact as Redis scores and in
Lua). :meth:`RedisStore.claim` is one Lua script: it checks the flow is
enabled and due, that no other run holds an unexpired lease (unless
``Allow``) and that the run name is free, then creates the run and moves
``next_run_at`` atomically. :meth:`RedisStore.due_flows` is a range of ``adf:due``
(O(log n + due)), then the due flows' hashes from a read-only script, each as one JSON
string. The other transitions are WATCH/MULTI transactions. Redis Cluster is not supported (the scripts touch run keys
they find in sets).
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..errors import ConfigError, StoreUnavailable, redact
from ..schedule import utcnow
from .base import (
    ACTIVE_STATUSES,
    Counts,
    FlowKey,
    FlowRecord,
    FlowUpsert,
    RunRecord,
    Store,
    Trigger,
    bound_backtrace,
    check_transition,
)
from .common import (
    CONNECT_TIMEOUT,
    aware_utc,
    bound_message,
    check_json,
    duration,
    from_micros,
    lease_lost_message,
    lease_until,
    optional_utc,
    redis_database_problem,
    to_micros,
    unknown_flow,
    unknown_run,
)

P = ParamSpec("P")
T = TypeVar("T")

SCHEMA_VERSION = 1
COMMAND_TIMEOUT = 30

_fake_server_lock = threading.Lock()
_fake_server: Any = None


def shared_fake_server() -> Any:
    """The process-wide fakeredis server behind every ``memory://`` store."""
    global _fake_server
    with _fake_server_lock:
        if _fake_server is None:
            import fakeredis

            _fake_server = fakeredis.FakeServer()
        return _fake_server


_CLAIM = """
local now = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local f = redis.call('HMGET', KEYS[1], 'enabled', 'next_run_at', 'concurrency_policy')
if f[1] ~= '1' then return false end
if ARGV[3] == '1' and f[2] and tonumber(f[2]) > now then return false end
if f[3] ~= 'Allow' then
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    local lease = redis.call('HGET', ARGV[6] .. id, 'lease_expires_at')
    if (not lease) or tonumber(lease) > now then return false end
  end
end
if ARGV[4] ~= '' and redis.call('HEXISTS', KEYS[4], ARGV[4]) == 1 then return false end
local id = tostring(redis.call('INCR', KEYS[8]))
local key = ARGV[6] .. id
redis.call('HSET', key, 'id', id, 'flow', ARGV[7], 'name', ARGV[12], 'namespace', ARGV[13],
  'status', 'pending', 'trigger', ARGV[8], 'attempt', ARGV[9], 'runner_id', ARGV[10],
  'lease_expires_at', ARGV[2], 'created_at', ARGV[1],
  'records_read', '0', 'records_written', '0', 'records_failed', '0')
if ARGV[11] ~= '' then redis.call('HSET', key, 'scheduled_for', ARGV[11]) end
if ARGV[4] ~= '' then
  redis.call('HSET', key, 'run_name', ARGV[4])
  redis.call('HSET', KEYS[4], ARGV[4], id)
end
redis.call('ZADD', KEYS[5], ARGV[1], id)
redis.call('ZADD', KEYS[6], ARGV[1], id)
redis.call('ZADD', KEYS[7], ARGV[2], id)
redis.call('SADD', KEYS[3], id)
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'next_run_at', ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[7])
end
return id
"""


# Flow hashes in one reply, each as one JSON array [field, value, ...]: one bulk string per flow instead of
# two per field (redis-py's reply parser, not the server, was most of a due lookup's time). KEYS: the flow
# keys; a missing flow (deleted meanwhile) is skipped. Called with at most _PACK_CHUNK keys, so one call
# keeps the server from other clients no longer than a few hundred HGETALLs would.
_PACKED_FLOWS = """
local found = {}
for _, key in ipairs(KEYS) do
  local h = redis.call('HGETALL', key)
  if #h > 0 then found[#found + 1] = cjson.encode(h) end
end
return found
"""
_PACK_CHUNK = 500

# KEYS[1] the run hash, ARGV[1] the time: 1 set now, 0 already set, -1 no such run (HSETNX alone would
# create a stray hash for a pruned run).
_MARK_NOTIFIED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HSETNX', KEYS[1], 'notified_at', ARGV[1])
"""


def _mapped(method: Callable[Concatenate[RedisStore, P], T]) -> Callable[Concatenate[RedisStore, P], T]:
    """Connection failures become StoreUnavailable naming the address (password masked)."""

    @functools.wraps(method)
    def wrapper(self: RedisStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as err:
            reason = redact(str(err).strip()) or type(err).__name__
            raise StoreUnavailable(f"cannot reach the store at {self.url_for_display}: {reason}") from None

    return wrapper


def _opt(value: str | None) -> str | None:
    return value if value not in (None, "") else None


def _opt_time(value: str | None) -> datetime | None:
    return None if value in (None, "") else from_micros(value)


def _micros(value: datetime | None) -> str | None:
    return None if value is None else str(to_micros(value))


class RedisStore(Store):
    """Flow and run records in Redis (or fakeredis for ``memory://``)."""

    def __init__(self, client: redis.Redis[str], *, url_for_display: str, prefix: str = "adf:") -> None:
        self.r = client
        self.url_for_display = url_for_display
        self.p = prefix
        self._claim = client.register_script(_CLAIM)
        self._pack_flows = client.register_script(_PACKED_FLOWS)
        self._mark_notified = client.register_script(_MARK_NOTIFIED)

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        display = redact(url)
        if url.split("://", 1)[0].lower() == "memory":
            import fakeredis

            client: redis.Redis[str] = fakeredis.FakeRedis(server=shared_fake_server(), decode_responses=True)
            return cls(client, url_for_display=display)
        if (problem := redis_database_problem(url)) is not None:
            raise ConfigError(f"'{display}' is not a valid Redis URL: {problem}")
        try:
            client = redis.Redis.from_url(
                url,
                decode_responses=True,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=COMMAND_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as err:
            raise ConfigError(f"'{display}' is not a valid Redis URL: {redact(str(err))}") from None
        return cls(client, url_for_display=display)

    def __repr__(self) -> str:
        return f"RedisStore({self.url_for_display!r})"

    def _transaction(self, func: Callable[..., Any], *watches: str, value_from_callable: bool = False) -> Any:
        """``Redis.transaction``: WATCH the keys, run ``func(pipe)``, retry on WatchError."""
        # types-redis leaves Redis.transaction unannotated (redis-py's own annotation is this one's)
        return self.r.transaction(  # type: ignore[no-untyped-call]
            func, *watches, value_from_callable=value_from_callable)

    # ----------------------------------------------------------------- keys
    @staticmethod
    def _addr(name: str, namespace: str) -> str:
        return f"{namespace}/{name}"

    def _flow_key(self, addr: str) -> str:
        return f"{self.p}flow:{addr}"

    def _run_key(self, run_id: str) -> str:
        return f"{self.p}run:{run_id}"

    def _k(self, kind: str, addr: str = "") -> str:
        return f"{self.p}{kind}:{addr}" if addr else f"{self.p}{kind}"

    # ----------------------------------------------------------------- records
    @staticmethod
    def _flow_record(h: dict[str, str]) -> FlowRecord:
        interval = _opt(h.get("interval_seconds"))
        cursor = h.get("cursor")
        return FlowRecord(
            name=h["name"],
            namespace=h["namespace"],
            spec=json.loads(h["spec"]),
            description=h.get("description", ""),
            enabled=h.get("enabled") == "1",
            schedule=_opt(h.get("schedule")),
            interval_seconds=int(interval) if interval else None,
            time_zone=_opt(h.get("time_zone")),
            concurrency_policy=h.get("concurrency_policy", "Forbid"),
            last_run_at=_opt_time(h.get("last_run_at")),
            last_run_status=_opt(h.get("last_run_status")),
            next_run_at=_opt_time(h.get("next_run_at")),
            cursor=None if cursor is None else json.loads(cursor),
            created_at=_opt_time(h.get("created_at")),
            updated_at=_opt_time(h.get("updated_at")),
        )

    @staticmethod
    def _run_record(h: dict[str, str]) -> RunRecord:
        dur = _opt(h.get("duration_seconds"))
        return RunRecord(
            id=h["id"],
            flow_name=h["name"],
            namespace=h["namespace"],
            status=h["status"],  # type: ignore[arg-type]
            trigger=h.get("trigger", "schedule"),  # type: ignore[arg-type]
            attempt=int(h.get("attempt", 1)),
            run_name=_opt(h.get("run_name")),
            scheduled_for=_opt_time(h.get("scheduled_for")),
            started_at=_opt_time(h.get("started_at")),
            ended_at=_opt_time(h.get("ended_at")),
            duration_seconds=float(dur) if dur else None,
            error_message=h.get("error_message"),
            error_backtrace=h.get("error_backtrace"),
            records_read=int(h.get("records_read", 0)),
            records_written=int(h.get("records_written", 0)),
            records_failed=int(h.get("records_failed", 0)),
            runner_id=_opt(h.get("runner_id")),
            lease_expires_at=_opt_time(h.get("lease_expires_at")),
            created_at=_opt_time(h.get("created_at")),
        )

    def _packed_flows(self, addrs: list[str]) -> list[dict[str, str]]:
        """The hashes of the flows at ``addrs`` (those that exist), through _PACKED_FLOWS."""
        found: list[dict[str, str]] = []
        for start in range(0, len(addrs), _PACK_CHUNK):
            keys = [self._flow_key(a) for a in addrs[start : start + _PACK_CHUNK]]
            for packed in self._pack_flows(keys=keys):
                flat = json.loads(packed)
                found.append(dict(zip(flat[::2], flat[1::2], strict=True)))
        return found

    def _hgetall_many(self, keys: Iterable[str]) -> list[dict[str, str]]:
        pipe = self.r.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return [h for h in pipe.execute() if h]

    @staticmethod
    def _hset_or_del(pipe: Any, key: str, values: dict[str, str | None]) -> None:
        present = {k: v for k, v in values.items() if v is not None}
        absent = [k for k, v in values.items() if v is None]
        if present:  # pragma: no branch - every caller sets a field (status, updated_at or last_run_at)
            pipe.hset(key, mapping=present)
        if absent:
            pipe.hdel(key, *absent)

    def _load_run(self, pipe: Any, run_id: str) -> RunRecord:
        h = pipe.hgetall(self._run_key(run_id)) if run_id else {}
        if not h:
            raise unknown_run(run_id, self.url_for_display)
        return self._run_record(h)

    # ----------------------------------------------------------------- lifecycle
    @_mapped
    def migrate(self) -> None:
        """Record the layout version; refuse a store written by a newer layout."""
        self.r.setnx(self._k("schema"), SCHEMA_VERSION)
        found = int(self.r.get(self._k("schema")) or SCHEMA_VERSION)
        if found > SCHEMA_VERSION:
            raise ConfigError(
                f"the store at {self.url_for_display} has layout version {found}; "
                f"this version of activedataflow reads up to {SCHEMA_VERSION}"
            )

    @_mapped
    def ping(self) -> None:
        self.r.ping()

    def close(self) -> None:
        self.r.close()

    # ----------------------------------------------------------------- flows
    def _due_score(self, next_run_at: str | None) -> str:
        return next_run_at if next_run_at else "-inf"

    @_mapped
    def upsert_flow(self, flow: FlowUpsert) -> FlowRecord:
        next_run_at = _micros(optional_utc(flow.next_run_at, "next_run_at"))
        spec = check_json(flow.spec, "spec")
        addr = self._addr(flow.name, flow.namespace)
        key = self._flow_key(addr)
        now = str(to_micros(utcnow()))

        def write(pipe: Any) -> None:
            existing = pipe.hgetall(key)
            values: dict[str, str | None] = {
                "name": flow.name,
                "namespace": flow.namespace,
                "spec": spec,
                "description": flow.description or "",
                "enabled": "1" if flow.enabled else "0",
                "schedule": flow.schedule,
                "interval_seconds": None if flow.interval_seconds is None else str(flow.interval_seconds),
                "time_zone": flow.time_zone,
                "concurrency_policy": flow.concurrency_policy,
                "updated_at": now,
            }
            if not existing:
                values["created_at"] = now
            due = next_run_at if next_run_at is not None else existing.get("next_run_at")
            pipe.multi()
            self._hset_or_del(pipe, key, values)
            if next_run_at is not None:
                pipe.hset(key, "next_run_at", next_run_at)
            pipe.sadd(self._k("flows"), addr)
            if flow.enabled:
                pipe.zadd(self._k("due"), {addr: self._due_score(due)})
            else:
                pipe.zrem(self._k("due"), addr)

        self._transaction(write, key)
        return self._flow_record(self.r.hgetall(key))

    @_mapped
    def get_flow(self, name: str, namespace: str = "default") -> FlowRecord | None:
        h = self.r.hgetall(self._flow_key(self._addr(name, namespace)))
        return self._flow_record(h) if h else None

    def _flow_addrs(self, namespace: str | None) -> list[tuple[str, str]]:
        """(namespace, name) of every stored flow of ``namespace`` (None: all), in that order."""
        addrs = sorted(tuple(a.split("/", 1)) for a in self.r.smembers(self._k("flows")))
        return [(ns, name) for ns, name in addrs if namespace is None or ns == namespace]

    @_mapped
    def list_flows(self, namespace: str | None = None) -> list[FlowRecord]:
        keys = (self._flow_key(self._addr(name, ns)) for ns, name in self._flow_addrs(namespace))
        return [self._flow_record(h) for h in self._hgetall_many(keys)]

    @_mapped
    def flow_keys(self, namespace: str | None = None) -> list[FlowKey]:
        addrs = self._flow_addrs(namespace)
        pipe = self.r.pipeline(transaction=False)
        for ns, name in addrs:
            pipe.hget(self._flow_key(self._addr(name, ns)), "enabled")
        # None: deleted between SMEMBERS and HGET (list_flows' _hgetall_many drops such a flow too)
        return [FlowKey(ns, name, enabled == "1") for (ns, name), enabled in zip(addrs, pipe.execute(), strict=True)
                if enabled is not None]

    def _update_flow(self, name: str, namespace: str, values: dict[str, str | None], *, due: bool | None) -> None:
        """Change fields of an existing flow; ``due``: re-index it in adf:due (True) or drop it (False)."""
        addr = self._addr(name, namespace)
        key = self._flow_key(addr)

        def write(pipe: Any) -> None:
            current = pipe.hgetall(key)
            if not current:
                raise unknown_flow(name, namespace, self.url_for_display)
            merged = {**current, **values}
            pipe.multi()
            self._hset_or_del(pipe, key, {**values, "updated_at": str(to_micros(utcnow()))})
            if due is None:
                return
            if due and merged.get("enabled") == "1":
                pipe.zadd(self._k("due"), {addr: self._due_score(merged.get("next_run_at"))})
            else:
                pipe.zrem(self._k("due"), addr)

        self._transaction(write, key)

    @_mapped
    def set_enabled(self, name: str, namespace: str, enabled: bool) -> None:
        self._update_flow(name, namespace, {"enabled": "1" if enabled else "0"}, due=enabled)

    @_mapped
    def delete_flow(self, name: str, namespace: str = "default") -> bool:
        addr = self._addr(name, namespace)
        key, flowruns = self._flow_key(addr), self._k("flowruns", addr)
        existed: list[bool] = []

        def write(pipe: Any) -> None:
            existed[:] = [bool(pipe.exists(key))]
            run_ids = pipe.zrange(flowruns, 0, -1)
            pipe.multi()
            for run_id in run_ids:
                pipe.delete(self._run_key(run_id))
            if run_ids:
                pipe.zrem(self._k("runs"), *run_ids)
                pipe.zrem(self._k("active"), *run_ids)
            pipe.delete(key, flowruns, self._k("flowactive", addr), self._k("runnames", addr))
            pipe.srem(self._k("flows"), addr)
            pipe.zrem(self._k("due"), addr)

        self._transaction(write, key, flowruns)
        return existed[0]

    @_mapped
    def due_flows(self, now: datetime, namespace: str | None = None) -> list[FlowRecord]:
        addrs = self.r.zrangebyscore(self._k("due"), "-inf", to_micros(aware_utc(now, "now")))
        if namespace is not None:
            addrs = [a for a in addrs if a.split("/", 1)[0] == namespace]
        found = [self._flow_record(h) for h in self._packed_flows(addrs)]
        found = [f for f in found if f.enabled]
        return sorted(found, key=lambda f: (f.next_run_at is not None, f.next_run_at or now, f.namespace, f.name))

    @_mapped
    def set_next_run(self, name: str, namespace: str, next_run_at: datetime | None) -> None:
        value = _micros(optional_utc(next_run_at, "next_run_at"))
        self._update_flow(name, namespace, {"next_run_at": value}, due=True)

    @_mapped
    def commit_cursor(self, name: str, namespace: str, cursor: Any) -> None:
        value = None if cursor is None else check_json(cursor)
        self._update_flow(name, namespace, {"cursor": value}, due=None)

    # ----------------------------------------------------------------- runs
    @_mapped
    def claim(
        self,
        name: str,
        namespace: str,
        *,
        now: datetime,
        runner_id: str,
        lease_seconds: float,
        trigger: Trigger = "schedule",
        run_name: str | None = None,
        scheduled_for: datetime | None = None,
        next_run_at: datetime | None = None,
        require_due: bool = True,
        attempt: int = 1,
    ) -> RunRecord | None:
        now = aware_utc(now, "now")
        expires = lease_until(now, lease_seconds)
        addr = self._addr(name, namespace)
        self._fail_expired(self.r.smembers(self._k("flowactive", addr)), now, make_due=False)
        keys = [
            self._flow_key(addr), self._k("due"), self._k("flowactive", addr), self._k("runnames", addr),
            self._k("flowruns", addr), self._k("runs"), self._k("active"), self._k("seq", "run"),
        ]
        args = [
            to_micros(now), to_micros(expires), "1" if require_due else "0", run_name or "",
            _micros(optional_utc(next_run_at, "next_run_at")) or "", self._run_key(""), addr,
            trigger, attempt, runner_id, _micros(optional_utc(scheduled_for, "scheduled_for")) or "",
            name, namespace,
        ]
        run_id = self._claim(keys=keys, args=args)
        return None if run_id is None else self._load_run(self.r, str(run_id))

    @_mapped
    def get_run(self, run_id: str) -> RunRecord | None:
        h = self.r.hgetall(self._run_key(run_id)) if run_id else {}
        return self._run_record(h) if h else None

    def _transition(
        self,
        run_id: str,
        new: str,
        change: Callable[[RunRecord], dict[str, str | None]],
        flow_change: Callable[[RunRecord], dict[str, str | None]] | None = None,
        *,
        progress: bool = False,
    ) -> RunRecord:
        """Move a run to ``new`` atomically (WATCH on the run and its flow), writing ``change(run)``.

        ``progress``: no status change, the run must already be ``new``.
        """
        run_key = self._run_key(run_id)
        flow_addr = self.r.hget(run_key, "flow") if run_id else None
        if flow_addr is None:
            raise unknown_run(run_id, self.url_for_display)
        flow_key = self._flow_key(flow_addr)

        def write(pipe: Any) -> None:
            run = self._load_run(pipe, run_id)
            if not (progress and run.status == new):
                check_transition(run.status, new)
            fields = {"status": new, **change(run)}
            flow_exists = pipe.exists(flow_key)
            pipe.multi()
            self._hset_or_del(pipe, run_key, fields)
            if new not in ACTIVE_STATUSES:
                pipe.zrem(self._k("active"), run_id)
                pipe.srem(self._k("flowactive", flow_addr), run_id)
            elif fields.get("lease_expires_at"):
                pipe.zadd(self._k("active"), {run_id: fields["lease_expires_at"]})
            if flow_change is not None and flow_exists:
                self._hset_or_del(pipe, flow_key, flow_change(run))

        self._transaction(write, run_key, flow_key)
        return self._load_run(self.r, run_id)

    @_mapped
    def start_run(self, run_id: str, *, now: datetime, lease_seconds: float) -> RunRecord:
        expires = _micros(lease_until(now, lease_seconds))
        started = _micros(now)
        return self._transition(run_id, "in_progress", lambda run: {"started_at": started, "lease_expires_at": expires})

    @_mapped
    def renew_lease(self, run_id: str, *, now: datetime, lease_seconds: float) -> bool:
        expires = str(to_micros(lease_until(now, lease_seconds)))
        run_key = self._run_key(run_id)
        renewed: list[bool] = []

        def write(pipe: Any) -> None:
            status = pipe.hget(run_key, "status")
            renewed[:] = [status in ACTIVE_STATUSES]
            if not renewed[0]:
                return
            pipe.multi()
            pipe.hset(run_key, "lease_expires_at", expires)
            pipe.zadd(self._k("active"), {run_id: expires})

        if not run_id:
            return False
        self._transaction(write, run_key)
        return renewed[0]

    @_mapped
    def finish_run(
        self,
        run_id: str,
        *,
        status: Literal["success", "failed"],
        now: datetime,
        counts: Counts,
        error_message: str | None = None,
        error_backtrace: str | None = None,
        cursor: Any = None,
        commit_cursor: bool = False,
    ) -> RunRecord:
        now = aware_utc(now, "now")
        cursor_json = check_json(cursor) if commit_cursor else None
        ended = str(to_micros(now))

        def change(run: RunRecord) -> dict[str, str | None]:
            took = duration(run.started_at, now)
            return {
                "ended_at": ended,
                "duration_seconds": None if took is None else repr(took),
                **self._counts(counts),
                "error_message": bound_message(error_message),
                "error_backtrace": bound_backtrace(error_backtrace),
                "lease_expires_at": None,
            }

        def flow_change(run: RunRecord) -> dict[str, str | None]:
            values = {"last_run_at": _micros(run.started_at or now), "last_run_status": status}
            if commit_cursor:
                values["cursor"] = None if cursor is None else cursor_json
            return values

        return self._transition(run_id, status, change, flow_change)

    @staticmethod
    def _counts(counts: Counts) -> dict[str, str | None]:
        return {
            "records_read": str(counts.records_read),
            "records_written": str(counts.records_written),
            "records_failed": str(counts.records_failed),
        }

    @_mapped
    def mark_notified(self, run_id: str, *, now: datetime) -> bool:
        at = str(to_micros(aware_utc(now, "now")))
        done = int(self._mark_notified(keys=[self._run_key(run_id)], args=[at])) if run_id else -1
        if done < 0:
            raise unknown_run(run_id, self.url_for_display)
        return done == 1

    @_mapped
    def update_counts(self, run_id: str, counts: Counts) -> None:
        self._transition(run_id, "in_progress", lambda run: self._counts(counts), progress=True)

    @_mapped
    def active_runs(self, name: str, namespace: str) -> list[RunRecord]:
        ids = self.r.smembers(self._k("flowactive", self._addr(name, namespace)))
        found = [self._run_record(h) for h in self._hgetall_many(self._run_key(i) for i in ids)]
        found = [r for r in found if r.status in ACTIVE_STATUSES]
        return sorted(found, key=lambda r: (r.created_at or from_micros(0), int(r.id)))

    def _newest(self, zset: str, limit: int) -> list[tuple[str, float]]:
        """The ``limit`` newest members of a created_at index; equal times ordered by claim order."""
        items = self.r.zrevrange(zset, 0, limit - 1, withscores=True)
        if items and len(items) == limit:  # members tied with the last one may rank either side of the cut
            last = items[-1][1]
            items = list({*items, *self.r.zrangebyscore(zset, last, last, withscores=True)})
        items.sort(key=lambda item: (item[1], int(item[0])), reverse=True)
        return items[:limit]

    @_mapped
    def list_runs(self, name: str | None = None, namespace: str | None = None, *, limit: int = 50) -> list[RunRecord]:
        if limit <= 0:
            return []
        if name is None and namespace is None:
            zsets = [self._k("runs")]
        elif name is not None and namespace is not None:
            zsets = [self._k("flowruns", self._addr(name, namespace))]
        else:
            addrs = self.r.smembers(self._k("flows"))
            zsets = [
                self._k("flowruns", a) for a in addrs
                if (namespace is None or a.split("/", 1)[0] == namespace)
                and (name is None or a.split("/", 1)[1] == name)
            ]
        items = [item for zset in zsets for item in self._newest(zset, limit)]
        items.sort(key=lambda item: (item[1], int(item[0])), reverse=True)
        return [self._run_record(h) for h in self._hgetall_many(self._run_key(i) for i, _ in items[:limit])]

    def _fail_expired(self, run_ids: Iterable[str], now: datetime, *, make_due: bool) -> list[RunRecord]:
        """Fail each of ``run_ids`` that is still active with a lease expired at ``now`` (WATCHed, once)."""
        failed: list[RunRecord] = []
        cutoff = to_micros(now)
        for run_id in run_ids:
            run_key = self._run_key(run_id)

            def write(pipe: Any, run_id: str = run_id, run_key: str = run_key) -> RunRecord | None:
                h = pipe.hgetall(run_key)
                lease = h.get("lease_expires_at")
                if not h or h["status"] not in ACTIVE_STATUSES or not lease or int(lease) > cutoff:
                    return None
                run = self._run_record(h)
                addr = h["flow"]
                flow = pipe.hgetall(self._flow_key(addr))
                ended = str(cutoff)
                pipe.multi()
                self._hset_or_del(pipe, run_key, {
                    "status": "failed", "ended_at": ended, "lease_expires_at": None,
                    "duration_seconds": None if run.started_at is None else repr(duration(run.started_at, now)),
                    "error_message": lease_lost_message(run),
                })
                pipe.zrem(self._k("active"), run_id)
                pipe.srem(self._k("flowactive", addr), run_id)
                # A run's flow goes with its runs in one transaction (delete_flow): missing here only when
                # deleted since the read of the WATCHed run, whose deletion then aborts this transaction.
                if flow:  # pragma: no branch - only a delete_flow racing this transaction, which aborts it
                    pipe.hset(self._flow_key(addr), mapping={
                        "last_run_at": _micros(run.started_at) or ended, "last_run_status": "failed"})
                    if make_due:  # its run never completed: the flow is due again
                        pipe.hset(self._flow_key(addr), "next_run_at", ended)
                        if flow.get("enabled") == "1":
                            pipe.zadd(self._k("due"), {addr: ended})
                return run

            if self._transaction(write, run_key, value_from_callable=True) is not None:
                h = self.r.hgetall(run_key)
                if h:  # pragma: no branch - only a delete_flow or prune_runs since the transaction removes it
                    failed.append(self._run_record(h))
        return failed

    @_mapped
    def reap_expired(self, now: datetime) -> list[RunRecord]:
        now = aware_utc(now, "now")
        expired = self.r.zrangebyscore(self._k("active"), "-inf", to_micros(now))
        return self._fail_expired(expired, now, make_due=True)

    @_mapped
    def prune_runs(self, name: str, namespace: str, *, keep_success: int, keep_failed: int) -> int:
        addr = self._addr(name, namespace)
        if not self.r.exists(self._flow_key(addr)):
            raise unknown_flow(name, namespace, self.url_for_display)
        flowruns = self._k("flowruns", addr)
        ids = self.r.zrange(flowruns, 0, -1)
        runs = [self._run_record(h) for h in self._hgetall_many(self._run_key(i) for i in ids)]
        runs.sort(key=lambda r: (r.created_at or from_micros(0), int(r.id)), reverse=True)
        doomed: list[RunRecord] = []
        for status, keep in (("success", keep_success), ("failed", keep_failed)):
            doomed.extend([r for r in runs if r.status == status][max(keep, 0):])
        if not doomed:
            return 0
        pipe = self.r.pipeline(transaction=True)  # final runs never change again: no WATCH needed
        pipe.delete(*(self._run_key(r.id) for r in doomed))
        pipe.zrem(flowruns, *(r.id for r in doomed))
        pipe.zrem(self._k("runs"), *(r.id for r in doomed))
        names = [r.run_name for r in doomed if r.run_name]
        if names:
            pipe.hdel(self._k("runnames", addr), *names)
        pipe.execute()
        return len(doomed)
