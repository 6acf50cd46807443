"""Flows and runs written through the real Store API (claim -> start -> finish), as a runner would."""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection, HTTPResponse
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from activedataflow.store import Counts, FlowRecord, FlowUpsert, RunRecord, Store
from activedataflow.ui import KubeActions, make_ui_server

from tests.k8s.cluster import Cluster
from tests.k8s.test_incluster import credentials

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

SPEC: dict[str, Any] = {
    "schedule": "*/15 * * * *",
    "source": {"type": "sql", "connection": {"secretRef": {"name": "shop-db", "key": "url"}}, "table": "orders",
               "incremental": {"cursorColumn": "updated_at"}},
    "transform": [{"rename": {"customer_id": "customer"}}],
    "sink": {"type": "sql", "connection": {"url": "postgresql://etl:hunter2@warehouse/dw"}, "table": "fact_orders",
             "mode": "upsert", "uniqueBy": ["id"]},
}


def add_flow(store: Store, name: str, namespace: str = "default", *, spec: dict[str, Any] | None = None,
             schedule: str | None = "*/15 * * * *", interval_seconds: int | None = None,
             next_run_at: datetime | None = None, description: str = "") -> FlowRecord:
    return store.upsert_flow(FlowUpsert(
        name=name, namespace=namespace, spec=spec or SPEC, description=description, schedule=schedule,
        interval_seconds=interval_seconds, next_run_at=next_run_at,
    ))


def add_run(store: Store, flow: FlowRecord, *, at: datetime, seconds: float = 2.0, ok: bool = True,
            error: str | None = None, backtrace: str | None = None, read: int = 100, written: int = 90,
            failed: int = 0, cursor: Any = None) -> RunRecord:
    run = store.claim(flow.name, flow.namespace, now=at, runner_id="test", lease_seconds=600,
                      trigger="schedule", require_due=False, scheduled_for=at)
    assert run is not None
    store.start_run(run.id, now=at, lease_seconds=600)
    return store.finish_run(
        run.id, status="success" if ok else "failed", now=at + timedelta(seconds=seconds),
        counts=Counts(read, written, failed), error_message=error, error_backtrace=backtrace,
        cursor=cursor, commit_cursor=cursor is not None,
    )


@dataclass
class Client:
    """HTTP against a running server; keeps the cookies it is given, like a browser."""

    base: str
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[HTTPResponse, str]:
        parsed = urllib.parse.urlsplit(self.base)
        conn = HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=30)
        hdrs = dict(headers or {})
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        text = resp.read().decode()
        conn.close()
        for value in resp.headers.get_all("Set-Cookie") or []:
            key, _, rest = value.partition("=")
            self.cookies[key] = rest.split(";", 1)[0]
        return resp, text

    def get(self, path: str) -> tuple[HTTPResponse, str]:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str], headers: dict[str, str] | None = None) -> tuple[HTTPResponse, str]:
        return self.request("POST", path, form, headers)


@contextmanager
def running(store: Store, *, actions: bool, kube: KubeActions | None = None) -> Iterator[str]:
    """The UI on a free port of 127.0.0.1, serving in a thread; yields its base URL (``kube`` closed after)."""
    server = make_ui_server(store, host="127.0.0.1", port=0, actions=actions, kube=kube)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        if kube is not None:
            kube.close()


# --------------------------------------------------------------------------- in a cluster

FLOW = "paid-orders"  # the DataFlow of the flow_ns fixture (conftest.py), and its flow record in flow_store
DATAFLOW: dict[str, Any] = {
    "apiVersion": "activedataflow.io/v1alpha1",
    "kind": "DataFlow",
    "metadata": {"name": FLOW},
    "spec": {"interval": "1h", "source": {"type": "sql", "connection": {"url": "sqlite:///in.db"}, "table": "orders"},
             "sink": {"type": "sql", "connection": {"url": "sqlite:///out.db"}, "table": "fact_orders"}},
}


@dataclass
class Tokens:
    """Bearer tokens: ``editor`` may patch DataFlows in the namespace, ``viewer`` may not, ``admin`` may anything."""

    editor: str
    viewer: str
    admin: str


def flow_path(namespace: str, name: str = FLOW) -> str:
    return "/flow?" + urlencode({"namespace": namespace, "name": name})


@contextmanager
def operator_page(kube: Cluster, store: Store, tmp_path: Path, operator_token: str) -> Iterator[str]:
    """The page as the operator Pod serves it with ui.actions.enabled (``adf operator``'s own code, with the
    pod's environment and service-account directory), the pod's own token being ``operator_token``."""
    from activedataflow.cli.commands import _ui_beside_the_operator

    ca, _ = credentials(kube)
    sa = tmp_path / "serviceaccount"
    sa.mkdir(exist_ok=True)
    (sa / "ca.crt").write_bytes(ca)
    (sa / "token").write_text(operator_token)
    api = urlsplit(kube.server)
    env = {"ADF_UI_PORT": "0", "ADF_UI_ACTIONS": "true", "KUBERNETES_SERVICE_HOST": str(api.hostname),
           "KUBERNETES_SERVICE_PORT": str(api.port), "ADF_SERVICEACCOUNT_DIR": str(sa)}
    with _ui_beside_the_operator(str(store.url), env) as server:  # a SQLite URL: no password to hide
        assert server is not None
        yield f"http://127.0.0.1:{server.server_port}"
