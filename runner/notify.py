"""Notifications (``spec.notify``): a Slack-compatible JSON POST to each webhook when a run ends.

Called by the :class:`~activedataflow.runner.executor.FlowExecutor` once the run's final state is
recorded in the store (and reflected). Events:

* ``failure``: the run failed for good (an attempt that will be retried is not a failure yet), a run
  whose runner died included: once it is failed as lost (its lease lapsed), the heartbeat that reaped
  it or else the flow's next run tells of it, unless the slot's next attempt takes it over
  (:meth:`~activedataflow.runner.executor.FlowExecutor.notify_lost`);
* ``recovery``: the run succeeded and the flow's previous finished run (an earlier attempt of the
  same slot aside) had failed;
* ``success``: every success (a recovery is reported as ``recovery`` to a webhook that asks for
  both; one message per webhook and run).

**At most once.** Before sending anything the notifier claims the run with
:meth:`Store.mark_notified <activedataflow.store.base.Store.mark_notified>`, an atomic mark in the
store (SQL ``UPDATE ... WHERE notified_at IS NULL``, Redis ``HSETNX``); only the caller that set it
sends. A second runner, or a restarted one, that handles the same finished run finds the mark set
and sends nothing. The price: a runner that dies between the mark and the POST loses that
notification (it is never sent twice, and never sent late by someone else).

**Never in the run's way.** Nothing here raises: a webhook that is down, slow or refuses is logged
and given up after :attr:`Notifier.tries` tries with backoff, each try with a short timeout, all
webhooks in parallel and every send bounded by :attr:`Notifier.deadline` seconds in total. The run's
outcome is already recorded and does not change. Nothing is sent while the flow is suspended.

**The URL is a secret.** Slack-style webhook URLs carry their credential in the path. It is
resolved like a connection URL (``url:``, or ``secretRef`` through ``ADF_SECRET_<NAME>_<KEY>`` or the
Kubernetes API) and is never logged: a webhook is named by its position and Secret, and any text
that could echo the URL (an exception message) is scrubbed of the URL, its host, path and query.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ..errors import redact
from ..model import DataFlow, Notify, NotifyEvent
from ..schedule import utcnow
from ..store.base import FINAL_STATUSES, RunRecord, Store

if TYPE_CHECKING:  # loaded by the first notification: most runs notify no one
    import http.client

__all__ = ["Notifier", "event_for", "payload"]

log = logging.getLogger("activedataflow.notify")

RECENT_RUNS = 50  # runs looked through for the previous finished one
ERROR_TEXT_LIMIT = 500  # characters of the error message in the payload


@dataclass(frozen=True)
class Notifier:
    """Sends a finished run's notifications. Defaults: 3 tries of at most 2.5 s each, 0.5 s then 1 s
    apart, within 10 s in all (a receiver that never answers costs the runner about 9 s, once)."""

    tries: int = 3
    timeout: float = 2.5  # seconds to connect, and seconds to read the answer, per try
    backoff: float = 0.5  # seconds before the second try, doubling
    deadline: float = 10.0  # seconds the runner waits for all webhooks of one run
    sleep: Callable[[float], None] = time.sleep

    def notify(self, store: Store, flow: DataFlow, run: RunRecord, recent: Sequence[RunRecord] | None = None) -> int:
        """Send the notifications ``flow.spec.notify`` asks for about the finished ``run``, at most
        once per run across every runner (see the module). ``recent``: the flow's latest runs, newest first,
        as the caller just listed them (else listed here, if needed). Returns how many webhooks accepted one.
        Never raises."""
        try:
            return self._notify(store, flow, run, recent)
        except Exception as err:  # a notification never fails a run
            log.warning("notifications of run %s of flow %s/%s not sent: %s", run.run_name or run.id,
                        flow.namespace, flow.name, redact(f"{type(err).__name__}: {err}"))
            return 0

    def _notify(self, store: Store, flow: DataFlow, run: RunRecord, recent: Sequence[RunRecord] | None) -> int:
        if not flow.spec.notify or run.status not in FINAL_STATUSES:
            return 0
        record = store.get_flow(flow.name, flow.namespace)
        if record is None or not record.enabled or flow.spec.suspend:
            log.info("flow %s/%s is suspended or gone: no notification of run %s", flow.namespace, flow.name,
                     run.run_name or run.id)
            return 0
        recovered = run.status == "success" and _previous_failed(store, run, recent)
        targets = [(i, n, e) for i, n in enumerate(flow.spec.notify, 1)
                   if (e := event_for(run, recovered=recovered, on=n.on)) is not None]
        if not targets:
            return 0
        if not store.mark_notified(run.id, now=utcnow()):
            log.info("run %s of flow %s/%s was notified already", run.run_name or run.id, flow.namespace, flow.name)
            return 0
        sent: list[int] = []
        threads = [
            threading.Thread(target=self._send_one, args=(flow, run, index, target, event, sent),
                             name=f"notify-{run.id}-{index}", daemon=True)
            for index, target, event in targets
        ]
        end = time.monotonic() + self.deadline
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(0.0, end - time.monotonic()))
        if any(t.is_alive() for t in threads):
            log.warning("notifications of run %s of flow %s/%s: gave up waiting after %ss", run.run_name or run.id,
                        flow.namespace, flow.name, self.deadline)
        return len(sent)

    def _send_one(
        self, flow: DataFlow, run: RunRecord, index: int, target: Notify, event: NotifyEvent, sent: list[int]
    ) -> None:
        from ..errors import UserError
        from .connections import resolve_url

        ref = target.webhook.secretRef
        name = f"webhook {index} of flow {flow.namespace}/{flow.name}" + (
            f" (secret {ref.name} key {ref.key})" if ref is not None else "")
        try:
            url = resolve_url(target.webhook, namespace=flow.namespace, field=f"spec.notify.{index - 1}.webhook")
        except UserError as err:  # a missing Secret: its message names the Secret, never a value
            log.warning("%s: not notified of run %s: %s", name, run.run_name or run.id, err)
            return
        except Exception as err:
            log.warning("%s: not notified of run %s: %s", name, run.run_name or run.id, type(err).__name__)
            return
        if self.post(url, payload(flow, run, event), name=name):
            sent.append(index)
            log.info("%s notified of run %s (%s)", name, run.run_name or run.id, event)

    def post(self, url: str, body: dict[str, Any], *, name: str = "webhook") -> bool:
        """POST ``body`` as JSON to ``url``: up to :attr:`tries` tries, retrying connection errors,
        timeouts, 429 and 5xx after :attr:`backoff` seconds (doubling). True once a 2xx answered.

        Plain :mod:`http.client`: unlike urllib3 it logs nothing (urllib3's DEBUG lines carry the
        request path, which is the webhook's secret); redirects are not followed."""
        import http.client
        import json

        data = json.dumps(body).encode()
        why = "not sent"
        for attempt in range(1, self.tries + 1):
            try:
                status = self._post_once(url, data)
                if 200 <= status < 300:
                    return True
                why = f"HTTP {status}"
                if status != 429 and status < 500:
                    log.warning("%s refused the notification (%s); not retried", name, why)
                    return False
            except (OSError, http.client.HTTPException) as err:  # refused, reset, timed out, TLS, bad answer
                why = _scrub(f"{type(err).__name__}: {err}", url)
            except Exception as err:  # a malformed URL...: nothing a retry changes
                log.warning("%s: cannot send (%s)", name, _scrub(type(err).__name__, url))
                return False
            if attempt == self.tries:
                break
            delay = self.backoff * 2 ** (attempt - 1)
            log.info("%s: try %d failed (%s); again in %ss", name, attempt, why, delay)
            self.sleep(delay)
        log.warning("%s: notification not delivered after %d tries (%s)", name, self.tries, why)
        return False

    def _post_once(self, url: str, data: bytes) -> int:
        import http.client
        import ssl

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http(s) URL")
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"Content-Type": "application/json", "User-Agent": "activedataflow-notify",
                   "Content-Length": str(len(data))}
        if parts.username or parts.password:
            import base64

            pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        try:
            conn.request("POST", target, body=data, headers=headers)
            response = conn.getresponse()
            response.read(65536)
            return response.status
        finally:
            conn.close()


def event_for(run: RunRecord, *, recovered: bool, on: Sequence[NotifyEvent]) -> NotifyEvent | None:
    """The event a webhook subscribed to ``on`` is told about for ``run``, or None."""
    if run.status == "failed":
        return "failure" if "failure" in on else None
    if run.status != "success":
        return None
    if recovered and "recovery" in on:
        return "recovery"
    return "success" if "success" in on else None


def _previous_failed(store: Store, run: RunRecord, recent: Sequence[RunRecord] | None) -> bool:
    """Whether the flow's finished run before ``run`` failed (earlier attempts of ``run``'s slot aside:
    a retry that succeeds is not a recovery; nobody was told of the failure). ``recent``: the flow's runs,
    newest first, if the caller listed them already."""
    if recent is None:
        recent = store.list_runs(run.flow_name, run.namespace, limit=RECENT_RUNS)
    ids = [r.id for r in recent]
    older = recent[ids.index(run.id) + 1:] if run.id in ids else [r for r in recent if r.id != run.id]
    for r in older:
        if r.status not in FINAL_STATUSES:
            continue
        if r.scheduled_for == run.scheduled_for and r.trigger == run.trigger and r.attempt < run.attempt:
            continue
        return r.status == "failed"
    return False


_HEADLINE = {"failure": "failed", "recovery": "recovered", "success": "succeeded"}
_ICON = {"failure": ":x:", "recovery": ":white_check_mark:", "success": ":white_check_mark:"}


def payload(flow: DataFlow, run: RunRecord, event: NotifyEvent) -> dict[str, Any]:
    """The JSON body: Slack's ``text`` (what Slack, Mattermost, Rocket.Chat, Teams workflows show), then
    the same facts as fields for receivers that parse them."""
    error = redact(run.error_message)[:ERROR_TEXT_LIMIT] if run.error_message else None
    duration = round(run.duration_seconds, 3) if run.duration_seconds is not None else None
    name = run.run_name or run.id
    text = (f"{_ICON[event]} DataFlow {flow.namespace}/{flow.name} {_HEADLINE[event]}: run {name}, "
            f"attempt {run.attempt}, {run.trigger}; read {run.records_read}, written {run.records_written}, "
            f"failed {run.records_failed}" + (f" in {duration:g} s" if duration is not None else ""))
    if error:
        text += f"\nError: {error}"
    return {
        "text": text,
        "event": event,
        "flow": flow.name,
        "namespace": flow.namespace,
        "run": name,
        "runId": run.id,
        "result": "succeeded" if run.status == "success" else "failed",
        "recordsRead": run.records_read,
        "recordsWritten": run.records_written,
        "recordsFailed": run.records_failed,
        "error": error,
        "durationSeconds": duration,
        "attempt": run.attempt,
        "trigger": run.trigger,
        "scheduledFor": _iso(run.scheduled_for),
        "startedAt": _iso(run.started_at),
        "finishedAt": _iso(run.ended_at),
        "links": {"runs": f"kubectl get dataflowruns -n {flow.namespace} -l activedataflow.io/flow={flow.name}"},
    }


def _iso(when: Any) -> str | None:
    return when.isoformat() if when is not None else None


def _scrub(text: str, url: str) -> str:
    """``text`` without ``url`` or any distinctive part of it (host, path, query), credentials redacted."""
    parts = urlsplit(url)
    pieces = {url, url.rstrip("/"), parts.netloc, parts.hostname or "", parts.path, parts.query}
    for piece in sorted((p for p in pieces if len(p) > 1), key=len, reverse=True):
        text = text.replace(piece, "<webhook>")
    return redact(text)
