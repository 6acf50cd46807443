"""The pages, rendered on the server: the flows list and a flow's page.

No JavaScript: charts are inline SVG, actions are plain HTML forms (POST, with the
CSRF token). Every value from the store is escaped (:mod:`.html`); error messages
and specs also go through :func:`activedataflow.errors.redact`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlencode

import yaml

from ..errors import redact
from ..store import FlowRecord, RunRecord
from .html import Safe, esc, join, render

__all__ = ["Auth", "RecentStats", "error_page", "flow_page", "flow_url", "flows_page", "notice", "recent_stats",
           "sign_in_page", "sparkline"]

CHART_RUNS = 20  # runs in a flow's chart on the list
STATUS_LABEL = {"success": "succeeded", "failed": "failed", "in_progress": "running", "pending": "pending"}
NOTICES = {  # shown after an action's redirect; keyed, so no text from the request is reflected
    "run-now": "Run requested: the flow is due now; the next heartbeat runs it.",
    "suspend": "Suspended: no scheduled run starts until it is resumed.",
    "resume": "Resumed: the flow runs on its schedule again.",
    "signed-in": "Signed in: the actions on this page are made with your token.",
    "signed-out": "Signed out: the token is forgotten.",
}
KUBE_NOTICES = {  # the same, when the actions went to the DataFlow (the operator follows, the page a moment later)
    "run-now": "Run requested: activedataflow.io/run-now is set; the operator starts a run now.",
    "suspend": "Suspend requested: spec.suspend is true; the operator stops the schedule (shown here once done).",
    "resume": "Resume requested: spec.suspend is false; the operator restores the schedule (shown here once done).",
}
# Whose credentials the actions use (flow page): the kubeconfig of whoever started the page, or the caller's,
# which the request carries in the header (a proxy's) or the cookie (signed in), or does not carry ("none").
Auth = Literal["kubeconfig", "header", "cookie", "none"] | None


def notice(key: str | None, *, kube: bool) -> str | None:
    """The text for an action's ``done=`` key (None for an unknown one)."""
    if key is None:
        return None
    return (KUBE_NOTICES.get(key) if kube else None) or NOTICES.get(key)


def flow_url(flow: FlowRecord | RunRecord | tuple[str, str], **params: object) -> str:
    """The flow page's URL. Names travel in the query string, so any name (even with '/') round-trips."""
    if isinstance(flow, tuple):
        namespace, name = flow
    elif isinstance(flow, FlowRecord):
        namespace, name = flow.namespace, flow.name
    else:
        namespace, name = flow.namespace, flow.flow_name
    query = {"namespace": namespace, "name": name, **{k: str(v) for k, v in params.items()}}
    return "flow?" + urlencode(query)


# --------------------------------------------------------------------------- formatting


def fmt_time(value: datetime | None, now: datetime) -> Safe:
    if value is None:
        return Safe("")
    delta = (now - value).total_seconds()
    ago = f"{_span(abs(delta))} ago" if delta >= 0 else f"in {_span(-delta)}"
    iso = value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return render('<time datetime="{iso}" title="{iso}">{ago}</time>', iso=iso, ago=ago)


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
    return f"{int(seconds // 86400)} d"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def fmt_schedule(flow: FlowRecord) -> str:
    if flow.schedule:
        text = flow.schedule
    elif flow.interval_seconds:
        text = "every " + fmt_interval(flow.interval_seconds)
    else:
        text = ""
    return f"{text} ({flow.time_zone})" if flow.time_zone else text


def fmt_interval(seconds: int) -> str:
    """3600 -> ``1h``, 5400 -> ``1h30m``, 90 -> ``1m30s``: the way the spec writes intervals."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n) or "0s"


def fmt_cursor(flow: FlowRecord) -> str:
    source = flow.spec.get("source") or {}
    if not isinstance(source, dict) or not source.get("incremental"):
        return ""
    if flow.cursor is None:
        return "(none yet)"
    return _cursor_text(flow.cursor)


def _cursor_text(cursor: Any) -> str:
    """``{"updated_at": "2025-01-01 10:00:00"}`` -> ``updated_at 2025-01-01 10:00:00``; anything else as JSON."""
    if isinstance(cursor, str):
        return cursor
    if isinstance(cursor, dict) and cursor:
        return ", ".join(f"{key} {value if isinstance(value, str) else json.dumps(value, default=str)}"
                         for key, value in cursor.items())
    return json.dumps(cursor, default=str)


def short(text: str, limit: int = 44) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_badge(status: str | None) -> Safe:
    if not status:
        return Safe('<span class="badge none">never run</span>')
    return render('<span class="badge {cls}">{label}</span>', cls=status, label=STATUS_LABEL.get(status, status))


def fmt_next_run(flow: FlowRecord, now: datetime) -> Safe:
    if not flow.enabled:
        return Safe('<span class="muted">suspended</span>')
    if flow.next_run_at is None or flow.next_run_at <= now:
        return Safe('<span class="due">due now</span>')
    return fmt_time(flow.next_run_at, now)


# --------------------------------------------------------------------------- the chart


@dataclass(frozen=True)
class RecentStats:
    runs: int  # final runs counted
    succeeded: int
    mean_duration: float | None

    @property
    def rate(self) -> float | None:
        return None if not self.runs else self.succeeded / self.runs


def recent_stats(runs: Sequence[RunRecord]) -> RecentStats:
    final = [r for r in runs if r.status in ("success", "failed")]
    durations = [r.duration_seconds for r in final if r.duration_seconds is not None]
    return RecentStats(
        runs=len(final),
        succeeded=sum(r.status == "success" for r in final),
        mean_duration=sum(durations) / len(durations) if durations else None,
    )


def sparkline(runs: Sequence[RunRecord], now: datetime) -> Safe:
    """Recent runs (newest first, as the store lists them) as bars, oldest on the left:
    height = duration (relative to the longest), colour = result."""
    if not runs:
        return Safe('<span class="muted">no runs</span>')
    bar, gap, height = 7, 2, 26
    shown = list(reversed(runs[:CHART_RUNS]))
    longest = max((r.duration_seconds or 0.0) for r in shown) or 1.0
    bars = []
    for i, run in enumerate(shown):
        h = max(3.0, (run.duration_seconds or 0.0) / longest * (height - 2))
        when = run.started_at or run.created_at
        title = f"{STATUS_LABEL.get(run.status, run.status)}, {fmt_duration(run.duration_seconds) or 'no duration'}"
        if when is not None:
            title += f", {when.strftime('%Y-%m-%d %H:%M:%S')} UTC"
        bars.append(
            render(
                '<rect class="{cls}" x="{x}" y="{y}" width="{w}" height="{h}" rx="1"><title>{title}</title></rect>',
                cls=run.status, x=i * (bar + gap), y=f"{height - h:.1f}", w=bar, h=f"{h:.1f}", title=title,
            )
        )
    width = len(shown) * (bar + gap) - gap
    return render(
        '<svg class="spark" role="img" aria-label="{label}" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
        "{bars}</svg>",
        label=f"last {len(shown)} runs", w=width, h=height, bars=join(bars),
    )


# --------------------------------------------------------------------------- pages


def layout(title: str, body: Safe, *, read_only: bool, store: str, root: str = "") -> Safe:
    """``root``: the way up to the app's top from the page (``../`` for /actions/...): every link is relative,
    so the app works under any path prefix a proxy gives it."""
    mode = (
        Safe('<span class="mode ro" title="started without --actions">read-only</span>')
        if read_only
        else Safe('<span class="mode rw">actions enabled</span>')
    )
    return render(
        """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · ActiveDataFlow</title>
<link rel="stylesheet" href="{root}static/style.css">
<link rel="icon" href="{root}static/favicon.svg" type="image/svg+xml">
</head>
<body>
<header class="top"><a class="brand" href="{home}">ActiveDataFlow</a><span class="store">{store}</span>{mode}</header>
<main>
{body}
</main>
</body>
</html>
""",
        title=title, body=body, store=store, mode=mode, root=root, home=root or "./",
    )


def flows_page(
    flows: Sequence[FlowRecord],
    recent: dict[tuple[str, str], list[RunRecord]],
    *,
    now: datetime,
    namespace: str | None,
    namespaces: Sequence[str],
    read_only: bool,
    store: str,
) -> Safe:
    rows = []
    for flow in flows:
        runs = recent.get(flow.key, [])
        stats = recent_stats(runs)
        rate = "" if stats.rate is None else f"{stats.rate:.0%}"
        rows.append(
            render(
                """<tr class="flow{suspended_cls}">
<td class="name"><a href="{url}">{name}</a><div class="desc">{desc}</div></td>
<td>{namespace}</td>
<td class="sched"><code>{schedule}</code></td>
<td>{suspended}</td>
<td class="last">{last_status}<div class="sub">{last_at}</div></td>
<td>{next_run}</td>
<td class="chart">{chart}<div class="sub">{rate_text}</div></td>
<td class="cursor"><code title="{cursor}">{cursor_short}</code></td>
</tr>""",
                suspended_cls="" if flow.enabled else " is-suspended",
                url=flow_url(flow),
                name=flow.name,
                desc=flow.description,
                namespace=flow.namespace,
                schedule=fmt_schedule(flow),
                suspended=Safe('<span class="badge suspended">yes</span>') if not flow.enabled else "no",
                last_status=status_badge(flow.last_run_status),
                last_at=fmt_time(flow.last_run_at, now),
                next_run=fmt_next_run(flow, now),
                chart=sparkline(runs, now),
                rate_text=(
                    f"{rate} ok of {stats.runs}" + (f" · avg {fmt_duration(stats.mean_duration)}"
                                                    if stats.mean_duration is not None else "")
                    if stats.runs else ""
                ),
                cursor=fmt_cursor(flow),
                cursor_short=short(fmt_cursor(flow)),
            )
        )
    filters = [render('<a href="./" class="{cls}">all namespaces</a>', cls="on" if namespace is None else "")]
    filters += [
        render('<a href="?{q}" class="{cls}">{ns}</a>', q=urlencode({"namespace": ns}), ns=ns,
               cls="on" if ns == namespace else "")
        for ns in namespaces
    ]
    table = (
        render(
            """<table class="flows">
<thead><tr><th>Flow</th><th>Namespace</th><th>Schedule</th><th>Suspended</th><th>Last run</th>
<th>Next run</th><th>Recent runs</th><th>Cursor</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>""",
            rows=join(rows, "\n"),
        )
        if rows
        else Safe('<p class="empty">No flows in the store yet: <code>adf apply FILE.yaml</code> or '
                  "<code>adf demo</code> adds some.</p>")
    )
    body = render(
        '<h1>Flows <span class="count">{count}</span></h1>\n<nav class="filters">{filters}</nav>\n{table}',
        count=len(flows), filters=join(filters, " "), table=table,
    )
    return layout("Flows", body, read_only=read_only, store=store)


def _action_form(action: str, flow: FlowRecord, csrf: str, label: str, *, disabled: bool = False,
                 hint: str = "") -> Safe:
    return render(
        """<form method="post" action="actions/{action}" class="action">
<input type="hidden" name="namespace" value="{namespace}">
<input type="hidden" name="name" value="{name}">
<input type="hidden" name="csrf" value="{csrf}">
<button type="submit" id="action-{action}" title="{hint}"{disabled}>{label}</button>
</form>""",
        action=action, namespace=flow.namespace, name=flow.name, csrf=csrf, label=label, hint=hint,
        disabled=Safe(" disabled") if disabled else Safe(""),
    )


def _run_row(run: RunRecord, now: datetime) -> Safe:
    error = Safe("")
    if run.error_message or run.error_backtrace:
        trace = (
            render("<details><summary>backtrace</summary><pre class=\"trace\">{t}</pre></details>",
                   t=redact(run.error_backtrace))
            if run.error_backtrace
            else Safe("")
        )
        error = render('<div class="error">{m}</div>{trace}', m=redact(run.error_message or ""), trace=trace)
    return render(
        """<tr class="run {status}" id="run-{id}">
<td><code>{label}</code><div class="sub">{trigger}{attempt}</div></td>
<td>{badge}</td>
<td>{scheduled}</td>
<td>{started}</td>
<td class="num">{duration}</td>
<td class="num">{read}</td>
<td class="num">{written}</td>
<td class="num">{failed}</td>
<td class="err">{error}</td>
</tr>""",
        status=run.status, id=run.id, label=run.run_name or run.id, trigger=run.trigger,
        attempt=f" · attempt {run.attempt}" if run.attempt > 1 else "",
        badge=status_badge(run.status), scheduled=fmt_time(run.scheduled_for, now),
        started=fmt_time(run.started_at or run.created_at, now), duration=fmt_duration(run.duration_seconds),
        read=f"{run.records_read:,}", written=f"{run.records_written:,}", failed=f"{run.records_failed:,}",
        error=error,
    )


def masked_webhooks(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with the path and query of every ``notify[].webhook.url`` masked: a webhook URL carries its
    credential there (Slack's ``/services/T../B../<token>``), where :func:`redact` does not look."""
    notify = spec.get("notify")
    if not isinstance(notify, list):
        return spec
    masked: list[Any] = []
    for item in notify:
        webhook = item.get("webhook") if isinstance(item, dict) else None
        url = webhook.get("url") if isinstance(webhook, dict) else None
        if isinstance(url, str):
            scheme, _, rest = url.partition("://")
            host = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
            item = {**item, "webhook": {**webhook, "url": f"{scheme}://{host}/***"}}  # type: ignore[dict-item]
        masked.append(item)
    return {**spec, "notify": masked}


def flow_page(
    flow: FlowRecord,
    runs: Sequence[RunRecord],
    *,
    page: int,
    has_next: bool,
    per_page: int,
    now: datetime,
    read_only: bool,
    csrf: str,
    notice: str | None,
    store: str,
    auth: Auth = None,
) -> Safe:
    if read_only:
        actions = Safe('<p class="muted">Read-only: start the server with <code>adf ui --actions</code> '
                       "(in a cluster, the chart's <code>ui.actions.enabled</code>) to run now, suspend or "
                       "resume.</p>")
    else:
        actions = join(
            [
                _action_form("run-now", flow, csrf, "Run now", disabled=not flow.enabled,
                             hint="resume the flow first" if not flow.enabled else "make the flow due now"),
                _action_form("resume", flow, csrf, "Resume") if not flow.enabled
                else _action_form("suspend", flow, csrf, "Suspend"),
            ],
            "\n",
        )
        actions = join([actions, _auth_note(auth, flow, csrf)], "\n")
    notice_html = render('<p class="notice" role="status">{n}</p>', n=notice) if notice else ""
    facts: list[tuple[str, Any]] = [
        ("Namespace", flow.namespace),
        ("Schedule", Safe(f"<code>{esc(fmt_schedule(flow))}</code>")),
        ("Suspended", "yes" if not flow.enabled else "no"),
        ("Concurrency", flow.concurrency_policy),
        ("Last run", join([status_badge(flow.last_run_status), " ", fmt_time(flow.last_run_at, now)])),
        ("Next run", fmt_next_run(flow, now)),
    ]
    cursor = fmt_cursor(flow)
    if cursor:
        facts.append(("Cursor", Safe(f"<code>{esc(cursor)}</code>")))
    stats = recent_stats(runs) if page == 1 else None
    if stats and stats.rate is not None:
        facts.append(("Recent success", f"{stats.rate:.0%} of {stats.runs}"))
    facts += [("Created", fmt_time(flow.created_at, now)), ("Updated", fmt_time(flow.updated_at, now))]
    dl = join(render("<dt>{k}</dt><dd>{v}</dd>", k=k, v=v) for k, v in facts)
    spec = redact(yaml.safe_dump(masked_webhooks(flow.spec), sort_keys=False, allow_unicode=True,
                                 default_flow_style=False))
    pager = []
    if page > 1:
        pager.append(render('<a rel="prev" href="{u}">← newer</a>', u=flow_url(flow, page=page - 1)))
    pager.append(render('<span>page {p}</span>', p=page))
    if has_next:
        pager.append(render('<a rel="next" href="{u}">older →</a>', u=flow_url(flow, page=page + 1)))
    runs_html = (
        render(
            """<table class="runs">
<thead><tr><th>Run</th><th>Status</th><th>Scheduled for</th><th>Started</th><th>Duration</th>
<th>Read</th><th>Written</th><th>Failed</th><th>Error</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>""",
            rows=join((_run_row(r, now) for r in runs), "\n"),
        )
        if runs
        else Safe('<p class="empty">No runs on this page.</p>')
    )
    body = render(
        """<p class="crumbs"><a href="./">Flows</a> / {namespace}</p>
<h1>{name}{suspended}</h1>
<p class="desc">{desc}</p>
{notice}
<div class="actions">{actions}</div>
<section class="facts"><dl>{dl}</dl><div class="chart">{chart}</div></section>
<h2>Runs</h2>
{runs}
<nav class="pager">{pager}</nav>
<h2>Spec</h2>
<pre class="spec">{spec}</pre>""",
        namespace=flow.namespace, name=flow.name, desc=flow.description, notice=notice_html, actions=actions,
        suspended=Safe(' <span class="badge suspended">suspended</span>') if not flow.enabled else "",
        dl=dl, chart=sparkline(runs, now) if page == 1 else "", runs=runs_html, pager=join(pager, " "), spec=spec,
    )
    return layout(flow.name, body, read_only=read_only, store=store)


def _auth_note(auth: Auth, flow: FlowRecord, csrf: str) -> Safe:
    if auth is None:
        return Safe("")
    if auth == "kubeconfig":
        return Safe('<p class="auth muted">Made on the DataFlow with the kubeconfig of whoever started '
                    "<code>adf ui</code>.</p>")
    if auth == "header":
        return Safe('<p class="auth muted">Made on the DataFlow with the credentials your proxy sends.</p>')
    if auth == "cookie":
        return render(
            """<form method="post" action="logout" class="auth">
<input type="hidden" name="namespace" value="{namespace}">
<input type="hidden" name="name" value="{name}">
<input type="hidden" name="csrf" value="{csrf}">
<span class="muted">Made on the DataFlow with your token.</span>
<button type="submit" id="sign-out">Sign out</button>
</form>""",
            namespace=flow.namespace, name=flow.name, csrf=csrf,
        )
    return render('<p class="auth muted">Made on the DataFlow with your own Kubernetes credentials: '
                  '<a id="sign-in" href="{url}">sign in</a>.</p>',
                  url="login?" + urlencode({"namespace": flow.namespace, "name": flow.name}))


def sign_in_page(
    status: str, message: str, *, csrf: str, server: str, namespace: str, name: str, store: str, root: str = ""
) -> Safe:
    """The sign-in form (``GET /login``), and the 401 page of an action that carried no usable credentials."""
    reason = render('<p class="error">{m}.</p>', m=message[:1].upper() + message[1:].rstrip(".")) if message else \
        Safe("")
    body = render(
        """<h1>{status}</h1>
{reason}
<p>Run now, suspend and resume are made on the DataFlow with <strong>your own</strong> Kubernetes credentials,
so the API server's RBAC decides, as it does for <code>kubectl</code>: you need <code>patch</code> on
<code>dataflows.activedataflow.io</code> in the flow's namespace. The page has no credentials of its own.</p>
<p>Either open it through an authenticating proxy that sends <code>Authorization: Bearer &lt;token&gt;</code>
(oauth2-proxy with <code>--pass-authorization-header</code>, for an API server that accepts your OIDC tokens),
or paste a token the API server at <code>{server}</code> accepts, e.g. from
<code>kubectl create token SERVICEACCOUNT -n NAMESPACE</code>:</p>
<form method="post" action="{root}login" class="sign-in">
<input type="hidden" name="namespace" value="{namespace}">
<input type="hidden" name="name" value="{name}">
<input type="hidden" name="csrf" value="{csrf}">
<label>Token <input type="password" name="token" id="token" autocomplete="off" required></label>
<button type="submit" id="sign-in-submit">Sign in</button>
</form>
<p class="muted">The token is checked with the API server, then kept in this browser for the session only
(an HttpOnly cookie, sent to this page alone) and passed on to nothing but the API server.</p>
<p><a href="{home}">Back to the flows</a></p>""",
        status=status, reason=reason, server=server, root=root, namespace=namespace, name=name, csrf=csrf,
        home=root or "./",
    )
    return layout(status, body, read_only=False, store=store, root=root)


def error_page(status: str, message: str, *, read_only: bool, store: str, root: str = "") -> Safe:
    body = render('<h1>{status}</h1>\n<p class="error">{message}</p>\n<p><a href="{home}">Back to the flows</a></p>',
                  status=status, message=message, home=root or "./")
    return layout(status, body, read_only=read_only, store=store, root=root)
