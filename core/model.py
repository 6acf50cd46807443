"""The one model of a DataFlow: manifests, the CRD schema, the operator and the runner.

Field names are the contract's (camelCase, as users write them in YAML).
Every validation error is reported as ``<field path>: <reason>``, for example
``spec.sink.uniqueBy: required when mode is upsert``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .errors import ConfigError

GROUP_VERSION: Final = "activedataflow.io/v1alpha1"  # spelled out: DataFlow.apiVersion is a Literal of it
API_GROUP, API_VERSION = GROUP_VERSION.split("/")

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
INTERVAL = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
# The longest interval: its seconds and the next run time stay within the store's 64-bit integers and
# Python's datetime (99999999999999999999h overflowed the store's INTEGER column: a traceback, exit 3)
MAX_INTERVAL_SECONDS = 10 * 365 * 24 * 3600
# Upper bounds of the other integer fields, so a huge value is refused naming its field (exit 2) instead of
# overflowing a SQL LIMIT, a Kubernetes int64/int32 or the store's columns at run time (`limit: 10**29` was
# an OverflowError mid-run, exit 1).
MAX_ROWS = 2**53 - 1  # a row count or LIMIT: fits every database's 64-bit integers and, exactly, a JSON number
MAX_SECONDS = MAX_INTERVAL_SECONDS  # any duration given in seconds
MAX_HISTORY = 2**31 - 1  # runs kept: an int32, as a CronJob's history limits are
MAX_BACKOFF_SECONDS = 24 * 3600  # one wait between attempts at most, however many retries double it
# Lengths the API server needs to estimate the cost of the CRD's CEL rules (it refuses a rule over an unbounded
# list of unbounded strings). The CRD schema is generated from these fields, and the model enforces the same
# bounds, so `adf run` refuses what `kubectl apply` refuses, naming the field.
MAX_STEPS = 256  # spec.transform
MAX_WEBHOOKS = 32  # spec.notify
MAX_COLUMNS = 256  # spec.sink.uniqueBy / updateOnly, each column name at most MAX_COLUMN_NAME characters
MAX_COLUMN_NAME = 256
MAX_INTERVAL_TEXT = 32  # spec.interval, characters
MAX_PYTHON_TEXT = 512  # a python step's module:function
MAX_KEY_TEMPLATE = 1024  # spec.sink.keyTemplate (redis)
MAX_URL = 2048  # a webhook's url
WEBHOOK_URL = r"^https?://[^/\s]+"


def field_error(field: str, message: str) -> PydanticCustomError:
    """An error about ``field`` of the model being validated (for cross-field rules).

    The formatter appends ``field`` to the error's location, so a rule checked on
    ``spec.sink`` reads ``spec.sink.uniqueBy: required when mode is upsert``.
    """
    return PydanticCustomError("adf_field", "{message}", {"field": field, "message": message})


# DataFlowRuns kept per flow unless the spec says otherwise (as CronJob keeps its Jobs)
SUCCESSFUL_RUNS_HISTORY_LIMIT = 3
FAILED_RUNS_HISTORY_LIMIT = 1


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, defer_build=True)


# --------------------------------------------------------------------------- connections


class SecretKeyRef(Model):
    name: str = Field(min_length=1, description="Secret in the DataFlow's namespace")
    key: str = Field(default="url", min_length=1, description="key of the Secret holding the URL")


class Connection(Model):
    """Where a source or sink connects: a plain URL, or a Secret holding it."""

    url: str | None = Field(default=None, description="SQLAlchemy or redis:// URL (no secrets)")
    secretRef: SecretKeyRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Connection:
        if (self.url is None) == (self.secretRef is None):
            raise field_error("url", "exactly one of url or secretRef is required")
        return self


# --------------------------------------------------------------------------- sources

WhereOp = Literal["=", "!=", "<", "<=", ">", ">=", "in", "not in", "is null", "is not null", "like"]


class Where(Model):
    """One condition; conditions are ANDed. Values are always bound parameters."""

    column: str
    op: WhereOp = "="
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> Where:
        if self.op in ("in", "not in"):
            if not isinstance(self.value, list) or not self.value:
                raise field_error("value", f"a non-empty list is required with op '{self.op}'")
        elif self.op in ("is null", "is not null"):
            if self.value is not None:
                raise field_error("value", f"must be omitted with op '{self.op}'")
        elif self.value is None:
            raise field_error("value", f"required with op '{self.op}' (use 'is null' to match nulls)")
        elif isinstance(self.value, list | dict):
            raise field_error("value", f"a scalar is required with op '{self.op}'")
        return self


class Incremental(Model):
    cursorColumn: str = Field(description="only rows past the last committed cursor are read")
    initialValue: Any = Field(default=None, description="start from here on the first run")


class SqlSource(Model):
    type: Literal["sql"]
    connection: Connection
    table: str = Field(min_length=1)
    schema_: str | None = Field(default=None, alias="schema")
    columns: list[str] | None = None
    where: list[Where] = Field(default_factory=list)
    orderBy: list[str] = Field(
        default_factory=list, description="keyset order; defaults to the table's primary key"
    )
    limit: int | None = Field(default=None, ge=1, le=MAX_ROWS)
    batchSize: int = Field(default=5000, ge=1, le=1_000_000)
    incremental: Incremental | None = None


class RedisSource(Model):
    type: Literal["redis"]
    connection: Connection
    stream: str | None = Field(default=None, description="read entries of this stream (XRANGE)")
    keyPattern: str | None = Field(default=None, description="read hashes/JSON values of matching keys")
    columns: list[str] | None = Field(
        default=None,
        description="fields to read (default: those of the first entry/key); '_id' is the stream entry id, "
        "'_key' the key",
    )
    batchSize: int = Field(default=5000, ge=1, le=1_000_000)
    limit: int | None = Field(default=None, ge=1, le=MAX_ROWS)
    incremental: bool = Field(default=False, description="streams: resume after the last committed id")

    @model_validator(mode="after")
    def _exactly_one(self) -> RedisSource:
        if (self.stream is None) == (self.keyPattern is None):
            raise field_error("stream", "exactly one of stream or keyPattern is required")
        return self


Source = Annotated[SqlSource | RedisSource, Field(discriminator="type")]


# --------------------------------------------------------------------------- transforms


def _check_expression(text: str, field: str) -> None:
    """A ``filter``/``set`` expression's syntax and allow-list, at validation (so ``adf run`` exits 2 and
    the operator reports InvalidSpec at apply); its columns are checked when a run knows the table."""
    from .expressions import check_expression

    try:
        check_expression(text, field=field)
    except ConfigError as err:
        raise field_error(field, err.reason) from None


class TransformStep(Model):
    """Exactly one of the keys; steps apply in order."""

    rename: dict[str, str] | None = None
    select: list[str] | None = None
    drop: list[str] | None = None
    set: dict[str, str] | None = Field(default=None, description="column: expression")
    filter: str | None = Field(default=None, description="keep rows where the expression is true")
    python: str | None = Field(default=None, max_length=MAX_PYTHON_TEXT,
                               description="module:function shipped in the image")

    @model_validator(mode="after")
    def _exactly_one(self) -> TransformStep:
        given = [k for k in ("rename", "select", "drop", "set", "filter", "python") if getattr(self, k) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "adf_step",
                "each step needs exactly one of rename, select, drop, set, filter, python (got {given})",
                {"given": ", ".join(given) or "none"},
            )
        if self.python is not None and not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", self.python):
            raise field_error("python", "expected 'module.path:function'")
        if self.filter is not None:
            _check_expression(self.filter, "filter")
        for column, text in (self.set or {}).items():
            _check_expression(text, f"set.{column}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("rename", "select", "drop", "set", "filter", "python") if getattr(self, k) is not None)


# --------------------------------------------------------------------------- sinks


Columns = list[Annotated[str, Field(max_length=MAX_COLUMN_NAME)]]


class SqlSink(Model):
    type: Literal["sql"]
    connection: Connection
    table: str = Field(min_length=1)
    schema_: str | None = Field(default=None, alias="schema")
    mode: Literal["insert", "upsert"] = "insert"
    uniqueBy: Columns = Field(default_factory=list, max_length=MAX_COLUMNS)
    updateOnly: Columns | None = Field(default=None, max_length=MAX_COLUMNS,
                                       description="columns updated on conflict (default: all)")
    batchSize: int = Field(default=5000, ge=1, le=1_000_000)
    transaction: Literal["batch", "run", "none"] = "batch"
    maxFailedRecords: int = Field(
        default=0, ge=0, le=MAX_ROWS,
        description="rows the sink may reject (constraint/type errors) before the run fails"
    )

    @model_validator(mode="after")
    def _upsert_needs_keys(self) -> SqlSink:
        if self.mode == "upsert" and not self.uniqueBy:
            raise field_error("uniqueBy", "required when mode is upsert")
        if self.updateOnly is not None and self.mode != "upsert":
            raise field_error("updateOnly", "only allowed when mode is upsert")
        if self.updateOnly and set(self.updateOnly) & set(self.uniqueBy):
            both = sorted(set(self.updateOnly) & set(self.uniqueBy))
            raise field_error("updateOnly", f"must not repeat uniqueBy columns ({', '.join(both)})")
        return self


class RedisSink(Model):
    type: Literal["redis"]
    connection: Connection
    keyTemplate: str = Field(max_length=MAX_KEY_TEMPLATE,
                             description="for example 'order:{id}'; placeholders are column names")
    format: Literal["hash", "json"] = "hash"
    ttlSeconds: int | None = Field(default=None, ge=1, le=MAX_SECONDS)
    batchSize: int = Field(default=5000, ge=1, le=1_000_000)
    maxFailedRecords: int = Field(
        default=0, ge=0, le=MAX_ROWS,
        description="rows the sink may reject (no key value, wrong type) before the run fails"
    )

    @field_validator("keyTemplate")
    @classmethod
    def _has_placeholder(cls, v: str) -> str:
        if not re.search(r"\{[A-Za-z_]\w*\}", v):
            raise ValueError("needs at least one {column} placeholder so every row gets its own key")
        return v


Sink = Annotated[SqlSink | RedisSink, Field(discriminator="type")]


# --------------------------------------------------------------------------- notifications

NotifyEvent = Literal["failure", "recovery", "success"]
DEFAULT_NOTIFY_ON: tuple[NotifyEvent, ...] = ("failure", "recovery")


class Webhook(Connection):
    """Where a notification is POSTed: a plain URL, or a Secret holding it (as webhook URLs are secrets)."""

    url: str | None = Field(default=None, max_length=MAX_URL, json_schema_extra={"pattern": WEBHOOK_URL},
                            description="http(s) URL of the webhook (prefer secretRef)")

    @field_validator("url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not re.match(WEBHOOK_URL, v):
            raise ValueError("must be an http:// or https:// URL")
        return v


# YAML 1.1 reads a bare key `on` as the boolean true: PyYAML gives the key True, kubectl (Go) the key
# "true". The contract's example writes `- on: [failure, recovery]` bare, so both mean `on`; the CRD
# schema takes "true" too, else the API server refuses the example ("unknown field spec.notify[0].true").
_BARE_ON_KEYS: tuple[object, ...] = (True, "true")


def _bare_on_in_schema(schema: dict[str, Any]) -> None:
    properties = schema["properties"]
    properties["true"] = {**properties["on"], "description": "`on`, as YAML 1.1 (kubectl) reads a bare `on:` key"}


class Notify(Model):
    """One webhook told about a flow's finished runs with a Slack-compatible JSON POST."""

    model_config = ConfigDict(json_schema_extra=_bare_on_in_schema)

    on: list[NotifyEvent] = Field(
        default_factory=lambda: list(DEFAULT_NOTIFY_ON),
        min_length=1,
        description="failure: a run failed for good (retries used up); recovery: a success after a failed run; "
        "success: every success",
    )
    webhook: Webhook

    @model_validator(mode="before")
    @classmethod
    def _yaml11_on(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        bare = [k for k in _BARE_ON_KEYS if k in data]
        if len(bare) + ("on" in data) > 1:
            raise ValueError("`on` is given twice (a bare `on:` key reads as `true` in YAML 1.1)")
        return {("on" if k in bare else k): v for k, v in data.items()} if bare else data


# --------------------------------------------------------------------------- spec


class Retries(Model):
    limit: int = Field(default=0, ge=0, le=100)
    backoffSeconds: int = Field(default=30, ge=0, le=MAX_BACKOFF_SECONDS)

    def delay(self, attempt: int) -> int:
        """Seconds between failed attempt ``attempt`` (1, 2 ...) and the next: ``backoffSeconds * 2**(n-1)``,
        at most a day (``MAX_BACKOFF_SECONDS``)."""
        return int(min(self.backoffSeconds * 2 ** min(attempt - 1, 32), MAX_BACKOFF_SECONDS))


class Runtime(Model):
    type: Literal["cronjob", "heartbeat"] = "cronjob"
    timeoutSeconds: int | None = Field(default=None, ge=1, le=MAX_SECONDS)  # each attempt's, enforced by the runner
    retries: Retries = Field(default_factory=Retries)

    def all_attempts_seconds(self) -> int | None:
        """The longest a run takes with every attempt timed out and every backoff waited (None: no timeout)."""
        if self.timeoutSeconds is None:
            return None
        attempts = self.retries.limit + 1
        return attempts * self.timeoutSeconds + sum(self.retries.delay(n) for n in range(1, attempts))


class DataFlowSpec(Model):
    description: str = ""
    schedule: str | None = None
    interval: str | None = Field(default=None, max_length=MAX_INTERVAL_TEXT)
    timeZone: str | None = None
    suspend: bool = False
    concurrencyPolicy: Literal["Forbid", "Allow", "Replace"] = "Forbid"
    startingDeadlineSeconds: int | None = Field(default=None, ge=0, le=MAX_SECONDS)
    successfulRunsHistoryLimit: int = Field(default=SUCCESSFUL_RUNS_HISTORY_LIMIT, ge=0, le=MAX_HISTORY)
    failedRunsHistoryLimit: int = Field(default=FAILED_RUNS_HISTORY_LIMIT, ge=0, le=MAX_HISTORY)
    runtime: Runtime = Field(default_factory=Runtime)
    source: Source
    transform: list[TransformStep] = Field(default_factory=list, max_length=MAX_STEPS)
    sink: Sink
    notify: list[Notify] = Field(default_factory=list, max_length=MAX_WEBHOOKS,
                                 description="webhooks told about finished runs")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from .schedule import check_cron

        check_cron(v)  # the API server's verdict on a CronJob's schedule (raises ValueError with the reason)
        return v

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parse_interval(v)
        return v

    @field_validator("timeZone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory ('Europe'), a name too long
            raise ValueError(f"unknown IANA time zone '{v}'"[:200]) from None
        return v

    @model_validator(mode="after")
    def _one_trigger(self) -> DataFlowSpec:
        if (self.schedule is None) == (self.interval is None):
            raise field_error("schedule", "exactly one of schedule or interval is required")
        if self.interval is not None and self.runtime.type == "cronjob":
            from .schedule import cron_for_interval

            if cron_for_interval(parse_interval(self.interval)) is None:
                raise field_error(
                    "interval",
                    f"'{self.interval}' cannot be expressed exactly as a cron schedule; with runtime.type cronjob "
                    "use a divisor of 60 minutes or of 24 hours (5m, 15m, 2h, 24h...), a schedule, "
                    "or runtime.type heartbeat",
                )
        return self

    @property
    def interval_seconds(self) -> int | None:
        return None if self.interval is None else parse_interval(self.interval)


def parse_interval(text: str) -> int:
    """``15m`` / ``1h30m`` / ``90s`` -> seconds. At least one second."""
    m = INTERVAL.match(text.strip()) if text else None
    if not text or not m or not any(m.groupdict().values()):
        raise ValueError(f"'{text}' is not an interval like 15m, 1h30m or 90s")
    too_long = f"must be at most {MAX_INTERVAL_SECONDS // 3600}h (ten years)"
    if any(len(g) > 12 for g in m.groupdict().values() if g):  # not worth converting
        raise ValueError(too_long)
    seconds = int(m["h"] or 0) * 3600 + int(m["m"] or 0) * 60 + int(m["s"] or 0)
    if seconds < 1:
        raise ValueError("must be at least 1s")
    if seconds > MAX_INTERVAL_SECONDS:
        raise ValueError(too_long)
    return seconds


class Metadata(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True, defer_build=True)

    name: str = Field(min_length=1, max_length=52)
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None
    generation: int | None = None

    @field_validator("name", "namespace")
    @classmethod
    def _dns(cls, v: str) -> str:
        if not DNS1123_SUBDOMAIN.match(v):
            raise ValueError(f"'{v}' is not a valid name: lower case letters, digits, '-' and '.'")
        return v


class DataFlow(BaseModel):
    """A DataFlow resource as a user writes it (status is ignored)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True, defer_build=True)

    apiVersion: Literal["activedataflow.io/v1alpha1"] = GROUP_VERSION
    kind: Literal["DataFlow"] = "DataFlow"
    metadata: Metadata
    spec: DataFlowSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def key(self) -> tuple[str, str]:
        return (self.metadata.namespace, self.metadata.name)

    def spec_dict(self) -> dict[str, Any]:
        """The spec as the user wrote it (aliases, defaults filled in), JSON-safe."""
        return self.spec.model_dump(mode="json", by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------- loading


def format_validation_error(err: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[str]:
    """One ``path: reason`` line per error, with the contract's field names."""
    lines: list[str] = []
    for e in err.errors(include_url=False):
        loc = [*prefix, *_clean_loc(e["loc"])]
        msg = e["msg"]
        ctx = e.get("ctx") or {}
        if e["type"] == "adf_field":
            loc.append(ctx["field"])
        elif e["type"] == "missing":
            msg = "required"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] == "union_tag_invalid":
            loc.append("type")
            msg = f"unknown type {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
        elif e["type"] == "union_tag_not_found":
            loc.append("type")
            msg = "required"
        elif e["type"] == "literal_error":
            msg = f"must be one of {ctx.get('expected')}"
        msg = msg.removeprefix("Value error, ")
        lines.append(f"{'.'.join(str(p) for p in loc) or '(manifest)'}: {msg}")
    return lines


def _clean_loc(loc: Iterable[Any]) -> list[str | int]:
    # Discriminated unions add the tag ('sql'/'redis') to the location; drop it.
    out: list[str | int] = []
    for part in loc:
        if part in ("sql", "redis") and out and out[-1] in ("source", "sink"):
            continue
        if part == "schema_":
            part = "schema"
        out.append(part)
    return out


# A manifest's size, bounded before it is validated: YAML aliases can make a few lines expand to a billion
# values (minutes of CPU to validate, serialize or store), and deep nesting overflows the recursion of the
# YAML composer and of the serializers. A real DataFlow holds a few hundred values, nested ~8 levels deep.
MAX_MANIFEST_VALUES = 100_000  # scalars, lists and mappings, YAML aliases expanded
MAX_MANIFEST_DEPTH = 50  # levels of lists and mappings
_CONTAINERS = (dict, list)


def _check_size(obj: dict[Any, Any], where: str) -> None:
    """ConfigError naming the field where ``obj`` passes MAX_MANIFEST_VALUES or MAX_MANIFEST_DEPTH.

    Walks at most MAX_MANIFEST_VALUES values, following shared (aliased) values each time they occur.
    Paths are kept as links (parent link, key) and spelled out only for the error."""
    count = 0
    stack: list[tuple[Any, int, Any]] = [(obj, 0, None)]
    while stack:
        value, depth, link = stack.pop()
        count += len(value)
        if count > MAX_MANIFEST_VALUES or depth >= MAX_MANIFEST_DEPTH:
            path: list[str] = []
            while link is not None:
                link, key = link
                path.append(str(key))
            field = ".".join(path[::-1][:6]) or "(manifest)"
            what = (f"the manifest holds more than {MAX_MANIFEST_VALUES} values (with its YAML aliases expanded)"
                    if count > MAX_MANIFEST_VALUES else f"nested more than {MAX_MANIFEST_DEPTH} levels deep")
            exc = ConfigError(f"{where}{field}: {what}")
            exc.field = field
            raise exc
        for key, child in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(child, _CONTAINERS):
                stack.append((child, depth + 1, (link, key)))


def parse_dataflow(obj: Any, *, source: str = "") -> DataFlow:
    """Validate one manifest object (a dict from YAML or the Kubernetes API)."""
    where = f"{source}: " if source else ""
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}expected a mapping, got {type(obj).__name__}")
    _check_size(obj, where)
    if obj.get("kind") != "DataFlow":
        exc = ConfigError(f"{where}kind: expected DataFlow, got {obj.get('kind')!r}"[:300])
        exc.field = "kind"
        raise exc
    try:
        return DataFlow.model_validate(obj)
    except ValidationError as err:
        lines = format_validation_error(err)
        first = lines[0]
        more = f" (and {len(lines) - 1} more: {'; '.join(lines[1:4])})" if len(lines) > 1 else ""
        exc = ConfigError(f"{where}{first}{more}")
        exc.field = first.partition(": ")[0]
        exc.all_errors = lines  # type: ignore[attr-defined]
        raise exc from None


def iter_manifest_documents(text: str, *, source: str = "") -> Iterator[dict[str, Any]]:
    import yaml  # only manifests need it; a runner parses stored JSON specs

    try:
        docs = list(yaml.safe_load_all(text))
    except RecursionError:  # PyYAML composes nested collections recursively (~500 levels)
        raise ConfigError(f"{source or 'manifest'}: invalid YAML: nested more than {MAX_MANIFEST_DEPTH} levels deep"
                          ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source or 'manifest'}: invalid YAML{at}: {getattr(err, 'problem', err)}") from None
    for doc in docs:
        if doc is None:
            continue
        if isinstance(doc, dict) and doc.get("kind") == "List":
            yield from doc.get("items") or []
        else:
            yield doc


def load_manifests(path: str | Path) -> list[DataFlow]:
    """All DataFlows of a multi-document YAML file; other kinds are skipped."""
    p = Path(path)
    try:
        text = p.read_text() if str(path) != "-" else __import__("sys").stdin.read()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read manifest: {err.strerror}") from None
    flows = [
        parse_dataflow(doc, source=str(path))
        for doc in iter_manifest_documents(text, source=str(path))
        if not isinstance(doc, dict) or doc.get("kind") in ("DataFlow", None)
    ]
    if not flows:
        raise ConfigError(f"{path}: no DataFlow found in the manifest")
    seen: set[tuple[str, str]] = set()
    for f in flows:
        if f.key in seen:
            raise ConfigError(f"{path}: DataFlow {f.namespace}/{f.name} appears twice", field="metadata.name")
        seen.add(f.key)
    return flows
