"""The `adf` command line (names and exit statuses fixed by CONTRACT.md): the composition root.

The one place that wires the runner and the operator to the core; nothing below imports it.

Exit status: 0 success, 1 a flow run failed, 2 bad input (a manifest that does
not validate, an unknown flow, an unreachable store) with one line on stderr
naming the field or the address.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .. import __version__
from ..errors import UserError, redact
from ..kube.names import JOB_NAME_ENV, tick_of_job
from ..store import DEFAULT_STORE_URL, store_url

if TYPE_CHECKING:
    from ..runner.executor import FlowExecutor
    from ..runner.reflect import Reflector
    from ..store.base import Store
    from ..ui.server import UIServer

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"adf: {redact(message)}", err=True)
    sys.exit(code)


INTERNAL_ERROR = 3  # not 1, which says a flow run failed (a Job then fails instead of replacing the runner)


def handle_errors(fn: F) -> F:
    """User errors become one line on stderr and exit 2; anything else (a bug, a failure nobody
    foresaw) its traceback and a last line ``adf: internal error: ...``, exit 3, all redacted."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            _fail(str(err), err.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise  # click's own, with their own exit statuses
        except Exception as err:
            click.echo(redact(traceback.format_exc()), err=True, nl=False)
            _fail(f"internal error: {type(err).__name__}: {err}", INTERNAL_ERROR)

    return wrapper  # type: ignore[return-value]


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(level)  # again after `-v` following the command name


STORE_HELP = "Storage backend URL (sqlite:///, postgresql+psycopg://, mysql+pymysql://, redis://, memory://)."
VERBOSE_HELP = "More log output (-vv for debug)."


def _store_after(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.obj["store_url"] = value


def _verbose_after(ctx: click.Context, _param: click.Parameter, value: int) -> None:
    if value:
        ctx.obj["verbose"] += value
        _setup_logging(ctx.obj["verbose"])


class _Commands(click.Group):
    """A group whose options every command takes (``--store``, ``-v``) are accepted after the command
    name as well, as kubectl accepts its global flags anywhere (CONTRACT.md); given after, they win."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.extend([
            click.Option(["--store"], default=None, expose_value=False, callback=_store_after,
                         allow_from_autoenv=False, help=STORE_HELP),
            click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_verbose_after,
                         allow_from_autoenv=False, help=VERBOSE_HELP),
        ])
        super().add_command(cmd, name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "ADF"})
@click.option("--store", envvar="ADF_STORE_URL", default=DEFAULT_STORE_URL, show_default=True, help=STORE_HELP)
@click.option("-v", "--verbose", count=True, help=VERBOSE_HELP)
@click.version_option(__version__, prog_name="adf")
@click.pass_context
def cli(ctx: click.Context, store: str, verbose: int) -> None:
    """ActiveDataFlow: scheduled source -> transform -> sink pipelines."""
    _setup_logging(verbose)
    ctx.obj = {"store_url": store, "verbose": verbose}


def _service_logging(ctx: click.Context) -> None:
    """Long-running services (operator, serve) log what they do at INFO unless -v asked for more."""
    if ctx.obj["verbose"] == 0:
        logging.getLogger().setLevel(logging.INFO)


@contextmanager
def _store(ctx: click.Context) -> Iterator[Any]:
    from ..store import open_store

    store = open_store(ctx.obj["store_url"])
    try:
        yield store
    finally:
        store.close()


def _executor(store: Store, *, reflect: bool) -> FlowExecutor:
    from ..runner.executor import FlowExecutor
    from ..runner.progress import progress_factory

    reflector: Reflector | None = None
    if reflect:
        from ..runner.reflect import reflector_from_env

        reflector = reflector_from_env()
    try:
        lease = float(os.environ.get("ADF_LEASE_SECONDS", "60"))
    except ValueError:
        raise UserError("ADF_LEASE_SECONDS: expected a number of seconds") from None
    return FlowExecutor(
        store, reflector=reflector, lease_seconds=lease, progress_factory=progress_factory(sys.stderr)
    )


def _exit_for(outcomes: Sequence[Any]) -> None:
    if any(o.failed for o in outcomes):
        sys.exit(1)


# --------------------------------------------------------------------------- run / apply


@cli.command()
@click.argument("manifest", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--flow", "only", multiple=True, help="Run only this DataFlow of the manifest (repeatable).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--explain", is_flag=True,
              help="Print how each flow would run (push-down with its SQL, or the row path and why); run nothing.")
@click.pass_context
@handle_errors
def run(ctx: click.Context, manifest: str, only: tuple[str, ...], output: str, explain: bool) -> None:
    """Run the DataFlow(s) in MANIFEST once, now, against the store."""
    from ..model import load_manifests

    flows = load_manifests(manifest)
    if only:
        unknown = sorted(set(only) - {f.name for f in flows})
        if unknown:
            raise UserError(f"--flow: {', '.join(unknown)} not in {manifest}")
        flows = [f for f in flows if f.name in only]
    if explain:
        from ..runner.plan import explain_flow

        for flow in flows:
            click.echo(f"{flow.namespace}/{flow.name}: {explain_flow(flow)}")
        return
    with _store(ctx) as store:
        executor = _executor(store, reflect=True)
        outcomes = []
        for flow in flows:
            record = executor.register(flow)
            outcomes.append(executor.run(record, trigger="manual", force=True))
        _print_outcomes(outcomes, output)
        _exit_for(outcomes)


@cli.command()
@click.argument("manifest", type=click.Path(dir_okay=False, allow_dash=True))
@click.pass_context
@handle_errors
def apply(ctx: click.Context, manifest: str) -> None:
    """Store (create or update) the flow records of MANIFEST without running them."""
    from ..model import load_manifests
    from ..runner.executor import FlowExecutor

    flows = load_manifests(manifest)
    with _store(ctx) as store:
        executor = FlowExecutor(store)
        for flow in flows:
            existed = store.get_flow(flow.name, flow.namespace) is not None
            executor.register(flow)
            click.echo(f"dataflow {flow.namespace}/{flow.name} {'configured' if existed else 'created'}")


# --------------------------------------------------------------------------- heartbeat / serve


@cli.command()
@click.option("--flow", help="Run only this flow (if due).")
@click.option(
    "-n", "--namespace", envvar="ADF_FLOW_NAMESPACE", help="Namespace (default: all; 'default' with --flow)."
)
@click.option("--force", is_flag=True, help="Run --flow now even if it is not due (a manual trigger).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
@handle_errors
def heartbeat(ctx: click.Context, flow: str | None, namespace: str | None, force: bool, output: str) -> None:
    """Run every due flow (or one). What the CronJobs run. A flow never run before is due."""
    from ..runner.heartbeat import HeartbeatResult, idle_heartbeat

    if force and not flow:
        raise UserError("--force: needs --flow NAME")
    trigger = os.environ.get("ADF_TRIGGER") or ("manual" if force else "schedule" if flow else "heartbeat")
    # The run-now Job names its run (operator/cronjob.py), so a second Pod of it runs nothing.
    run_name = (os.environ.get("ADF_RUN_NAME") or None) if force else None
    # The Job a flow's CronJob started carries its tick in its name (operator/cronjob.py exposes it).
    tick = tick_of_job(os.environ.get(JOB_NAME_ENV, ""), flow) if flow and not force else None

    def report(result: HeartbeatResult) -> None:
        if output == "json":
            click.echo(json.dumps({**result.as_json(), "runs": [_outcome_json(o) for o in result.outcomes]}))
        else:
            click.echo(f"{result.flows_due} due, {result.flows_triggered} run")
            if result.outcomes:
                _print_outcomes(result.outcomes, "table")
        if result.failed:
            sys.exit(1)

    # Most ticks find nothing due: told so by the store without opening it, the tick costs a third.
    if flow is None and (idle := idle_heartbeat(store_url(ctx.obj["store_url"]), namespace)) is not None:
        report(idle)
        return
    from ..runner.heartbeat import heartbeat as beat

    with _store(ctx) as store:
        executor = _executor(store, reflect=True)
        report(beat(
            executor, namespace=namespace, flow=flow, force=force, run_name=run_name, tick=tick,
            trigger=trigger,  # type: ignore[arg-type]
        ))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.pass_context
@handle_errors
def serve(ctx: click.Context, host: str, port: int) -> None:
    """HTTP heartbeat endpoint: POST /heartbeat runs every due flow."""
    from ..runner.server import serve as run_server

    _service_logging(ctx)

    run_server(ctx.obj["store_url"], host=host, port=port)


# --------------------------------------------------------------------------- listing


def _fmt_time(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*[str(v) for v in r])
    Console(width=max(100, _term_width())).print(table)


def _term_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 160


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


@cli.command()
@click.option("-n", "--namespace", help="Only this namespace.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
@handle_errors
def flows(ctx: click.Context, namespace: str | None, output: str) -> None:
    """List flow records in the store."""
    with _store(ctx) as store:
        records = store.list_flows(namespace)
    if output == "json":
        click.echo(json.dumps([_jsonable(asdict(r)) for r in records], indent=2))
        return
    _table(
        None,
        ["NAMESPACE", "NAME", "SCHEDULE", "ENABLED", "LAST-RUN", "LAST-RUN-AT", "NEXT-RUN"],
        [
            (
                r.namespace,
                r.name,
                r.schedule or f"every {r.interval_seconds}s",
                "yes" if r.enabled else "no",
                r.last_run_status or "-",
                _fmt_time(r.last_run_at),
                _fmt_time(r.next_run_at) if r.enabled else "-",
            )
            for r in records
        ],
    )


@cli.command()
@click.argument("flow", required=False)
@click.option("-n", "--namespace", help="Namespace of FLOW (default: all).")
@click.option("--limit", default=20, show_default=True, type=int)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
@handle_errors
def runs(ctx: click.Context, flow: str | None, namespace: str | None, limit: int, output: str) -> None:
    """List runs (newest first), of FLOW or of all flows."""
    with _store(ctx) as store:
        if flow and not any(f.name == flow for f in store.list_flows(namespace)):
            from ..errors import UnknownFlow

            where = f"namespace '{namespace}'" if namespace else "any namespace"
            raise UnknownFlow(f"flow '{flow}' not found in {where} of the store {store.url_for_display}")
        records = store.list_runs(flow, namespace, limit=limit)
    if output == "json":
        click.echo(json.dumps([_jsonable(asdict(r)) for r in records], indent=2))
        return
    _table(
        None,
        ["FLOW", "RUN", "STATUS", "TRIGGER", "READ", "WRITTEN", "FAILED", "DURATION", "STARTED", "ERROR"],
        [
            (
                f"{r.namespace}/{r.flow_name}",
                r.run_name or r.id,
                r.status,
                r.trigger,
                r.records_read,
                r.records_written,
                r.records_failed,
                f"{r.duration_seconds:.2f}s" if r.duration_seconds is not None else "-",
                _fmt_time(r.started_at),
                (r.error_message or "")[:80],
            )
            for r in records
        ],
    )


def _outcome_json(o: Any) -> dict[str, Any]:
    return {
        "flow": o.flow,
        "namespace": o.namespace,
        "skipped": o.skipped,
        "run": _jsonable(asdict(o.run)) if o.run else None,
    }


def _print_outcomes(outcomes: Sequence[Any], output: str) -> None:
    if output == "json":
        click.echo(json.dumps([_outcome_json(o) for o in outcomes], indent=2))
        return
    for o in outcomes:
        if o.run is None:
            click.echo(f"{o.namespace}/{o.flow}: skipped: {o.skipped}")
            continue
        r = o.run
        line = (
            f"{o.namespace}/{o.flow}: {r.status} in {r.duration_seconds or 0:.2f}s — "
            f"{r.records_read} read, {r.records_written} written, {r.records_failed} failed"
        )
        if len(o.attempts) > 1:
            line += f" (attempt {r.attempt})"
        click.echo(line)
        if r.status == "failed" and r.error_message:
            click.echo(f"  error: {r.error_message}", err=True)


# --------------------------------------------------------------------------- cluster


@cli.command()
@click.argument("name")
@click.option("-n", "--namespace", default=None, help="Namespace (default: the kubeconfig's current one).")
@handle_errors
def trigger(name: str, namespace: str | None) -> None:
    """Ask the cluster for a run of NAME now (sets the run-now annotation)."""
    from .trigger import trigger_run

    value = trigger_run(name, namespace or _current_namespace())
    click.echo(f"dataflow {name} triggered (activedataflow.io/run-now={value})")


def _current_namespace() -> str:
    try:
        from kubernetes import config

        _, active = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]  # unannotated in kubernetes
        return str(active.get("context", {}).get("namespace") or "default")
    except Exception:
        return "default"


@cli.command("operator")
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch only these namespaces (default: ADF_WATCH_NAMESPACES or all).",
)
@click.option("--liveness", default=None, help="Liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
@click.pass_context
@handle_errors
def operator_cmd(ctx: click.Context, namespaces: tuple[str, ...], liveness: str | None) -> None:
    """Run the operator (kopf); with ADF_UI_PORT also the read-only monitoring page (the chart's ui.enabled)."""
    from ..operator.app import run_operator

    _service_logging(ctx)
    with _ui_beside_the_operator(ctx.obj["store_url"]):
        # None: ADF_WATCH_NAMESPACES, parsed by the operator (operator/app.py watch_namespaces)
        run_operator(namespaces=list(namespaces) or None, store_url=ctx.obj["store_url"], liveness=liveness)


@contextmanager
def _ui_beside_the_operator(
    store_url: str | None, env: Mapping[str, str] | None = None
) -> Iterator[UIServer | None]:
    """The monitoring page on 0.0.0.0:$ADF_UI_PORT in a thread (the chart's ui.enabled), yielded (None
    without ADF_UI_PORT). Read-only unless ADF_UI_ACTIONS is true (ui.actions.enabled), and then each
    action is made with the bearer token its request carries, on the pod's API server: never with the
    operator's own service account."""
    env = os.environ if env is None else env
    raw = env.get("ADF_UI_PORT", "").strip()
    if not raw:
        yield None
        return
    try:
        port = int(raw)
    except ValueError:
        raise UserError(f"ADF_UI_PORT: expected a port number, got {raw!r}") from None
    flag = env.get("ADF_UI_ACTIONS", "").strip().lower()
    if flag not in ("", "0", "false", "no", "1", "true", "yes"):
        raise UserError(f"ADF_UI_ACTIONS: expected true or false, got {flag!r}")
    actions = flag in ("1", "true", "yes")
    import threading

    from ..kube.client import KubeEndpoint
    from ..store import open_store
    from ..ui import KubeActions, make_ui_server

    kube = KubeActions.for_callers(KubeEndpoint.in_cluster(env, retries=1)) if actions else None
    store = open_store(store_url, migrate=False)  # None: $ADF_STORE_URL, else the default
    server = make_ui_server(store, host="0.0.0.0", port=port, actions=actions, kube=kube)
    thread = threading.Thread(target=server.serve_forever, name="adf-ui", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        store.close()
        if kube is not None:
            kube.close()


# --------------------------------------------------------------------------- monitoring page


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--actions", is_flag=True, help="Allow run now / suspend / resume from the page (off: read-only).")
@click.option("--kube", is_flag=True,
              help="Make the actions on the cluster's DataFlows with your kubeconfig's credentials "
                   "(run-now annotation, spec.suspend), not on the store.")
@click.pass_context
@handle_errors
def ui(ctx: click.Context, host: str, port: int, actions: bool, kube: bool) -> None:
    """The monitoring page: flows, runs, errors (read-only unless --actions)."""
    from ..ui import KubeActions
    from ..ui import serve as serve_ui

    if kube and not actions:
        raise UserError("--kube is where the actions go: give --actions too")
    _service_logging(ctx)
    cluster = KubeActions.with_kubeconfig() if kube else None
    shown = f"[{host}]" if ":" in host else host
    mode = "read-only" if not actions else f"actions on the DataFlows at {cluster.server}" if cluster else \
        "actions on the store"
    click.echo(f"adf ui: http://{shown}:{port}/ ({mode})", err=True)
    if cluster is not None and host not in ("127.0.0.1", "::1", "localhost"):
        click.echo(f"adf ui: warning: anyone who reaches {shown}:{port} acts with your kubeconfig's credentials",
                   err=True)
    with contextlib.suppress(KeyboardInterrupt):
        serve_ui(ctx.obj["store_url"], host=host, port=port, actions=actions, kube=cluster)


# --------------------------------------------------------------------------- demo


@cli.command()
@click.option("--rows", default=10_000, show_default=True, type=int, help="Sample orders to generate.")
@click.option("--dir", "workdir", default="adf-demo", show_default=True, type=click.Path(file_okay=False))
@click.pass_context
@handle_errors
def demo(ctx: click.Context, rows: int, workdir: str) -> None:
    """Make sample data in the embedded default and run a sample flow on it."""
    from ..runner.demo import prepare_demo

    manifest, summary = prepare_demo(workdir, rows=rows)
    click.echo(summary)
    ctx.invoke(run, manifest=str(manifest), only=(), output="table")
    click.echo(f"\nNext: `adf runs`, `adf flows`, `adf ui` (the monitoring page), edit {manifest} and "
               f"`adf run {manifest}` again.")


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="adf")

