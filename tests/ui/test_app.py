"""The monitoring page over HTTP (a real server on 127.0.0.1, real stores): pages, escaping, actions, CSRF."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from html import unescape
from urllib.parse import urljoin

import pytest
from activedataflow.schedule import utcnow
from activedataflow.store import Store
from activedataflow.ui import make_app

from tests.cli_helpers import as_from_a_terminal
from tests.ui.helpers import T0, Client, add_flow, add_run, running

HOSTILE = "<script>alert('x')</script>&\"/evil"


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert m, "no CSRF token in the page"
    return m.group(1)


def flow_path(namespace: str, name: str, **extra: str) -> str:
    from urllib.parse import urlencode

    return "/flow?" + urlencode({"namespace": namespace, "name": name, **extra})


# --------------------------------------------------------------------------- pages


def test_flows_list_shows_what_the_store_holds(store: Store) -> None:
    orders = add_flow(store, "paid-orders", "shop", description="Copy paid orders",
                      next_run_at=utcnow() + timedelta(hours=3))
    for i in range(12):
        add_run(store, orders, at=T0 + timedelta(minutes=15 * i), seconds=1 + i % 4, ok=i % 4 != 2,
                cursor=f"2025-03-01T{i:02d}:00:00")
    quiet = add_flow(store, "refunds", "finance", schedule=None, interval_seconds=3600,
                     spec={"interval": "1h", "source": {"type": "sql", "table": "r"}, "sink": {"type": "sql"}})
    store.set_enabled(quiet.name, quiet.namespace, False)

    with running(store, actions=False) as base:
        resp, page = Client(base).get("/")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    rows = re.findall(r'<tr class="flow[^"]*">(.*?)</tr>', page, re.S)
    assert len(rows) == 2
    refunds, paid = rows  # ordered by namespace, then name: finance before shop
    assert ">paid-orders</a>" in paid and "<td>shop</td>" in paid and "Copy paid orders" in paid
    assert "<code>*/15 * * * *</code>" in paid
    assert '<span class="badge success">succeeded</span>' in paid  # the last run (i=11) succeeded
    assert 'datetime="2025-03-01T14:45:00Z"' in paid  # ... at its start
    assert "due now" not in paid and re.search(r">in [23][.0-9]* h</time>", paid)  # the next run, in 3 hours
    assert paid.count("<rect ") == 12
    assert paid.count('<rect class="failed"') == 3
    assert "75% ok of 12" in paid and "avg 2.50 s" in paid
    # the committed cursor of an incremental flow
    assert '<code title="2025-03-01T11:00:00">2025-03-01T11:00:00</code>' in paid
    assert ">refunds</a>" in refunds and "<code>every 1h</code>" in refunds
    assert '<span class="badge suspended">yes</span>' in refunds and "never run" in refunds
    assert "no runs" in refunds and '<code title=""></code>' in refunds  # not incremental: no cursor

    with running(store, actions=False) as base:
        _, one = Client(base).get("/?namespace=finance")
    assert ">refunds</a>" in one and ">paid-orders</a>" not in one


def test_flow_page_shows_spec_runs_counts_errors_and_pages(store: Store) -> None:
    flow = add_flow(store, "paid-orders", "shop")
    for i in range(30):
        add_run(store, flow, at=T0 + timedelta(minutes=i), seconds=65 if i == 0 else 0.5,
                read=1000 + i, written=900 + i, failed=i)
    add_run(store, flow, at=T0 + timedelta(hours=1), seconds=3, ok=False, read=7, written=0, failed=7,
            error='relation "orders" does not exist',
            backtrace='Traceback (most recent call last):\n  File "executor.py", line 1\nProgrammingError: no orders')

    with running(store, actions=False) as base:
        client = Client(base)
        resp, page = client.get(flow_path("shop", "paid-orders"))
        _, page2 = client.get(flow_path("shop", "paid-orders", page="2"))
    assert resp.status == 200
    assert "<h1>paid-orders</h1>" in page
    runs = re.findall(r'<tr class="run (\w+)" id="run-[^"]+">(.*?)</tr>', page, re.S)
    assert len(runs) == 25  # newest first, paged
    status, newest = runs[0]
    assert status == "failed"
    assert unescape('relation "orders" does not exist') in unescape(newest)
    assert "<summary>backtrace</summary>" in newest and "ProgrammingError: no orders" in newest
    assert '<td class="num">7</td>' in newest and "3.00 s" in newest
    assert '<td class="num">1,029</td>' in runs[1][1]  # counts of the run before it (i=29)
    assert 'rel="next"' in page and 'rel="prev"' not in page
    runs2 = re.findall(r'<tr class="run (\w+)"', page2)
    assert len(runs2) == 31 - 25 and 'rel="prev"' in page2 and 'rel="next"' not in page2
    assert "1m 05s" in page2  # the oldest run's duration
    # the spec, with the password of a non-secret URL redacted
    spec = unescape(re.search(r'<pre class="spec">(.*?)</pre>', page, re.S).group(1))  # type: ignore[union-attr]
    assert "cursorColumn: updated_at" in spec and "table: fact_orders" in spec
    assert "hunter2" not in page and "postgresql://etl:***@warehouse/dw" in spec
    assert "Read-only" in page and "<form" not in page  # no actions offered


def test_hostile_names_and_errors_are_escaped_everywhere(store: Store) -> None:
    flow = add_flow(store, HOSTILE, "default", description=HOSTILE, schedule=HOSTILE,
                    spec={"description": HOSTILE, "source": {"type": "sql", "table": HOSTILE}})
    add_run(store, flow, at=T0, ok=False, error=f"bad row {HOSTILE}", backtrace=f"Traceback\n{HOSTILE}",
            cursor=HOSTILE)
    store.commit_cursor(flow.name, flow.namespace, HOSTILE)

    with running(store, actions=True) as base:
        client = Client(base)
        _, listing = client.get("/")
        link = re.search(r'<td class="name"><a href="([^"]+)">', listing).group(1)  # type: ignore[union-attr]
        resp, page = client.get("/" + unescape(link))
    assert resp.status == 200  # the name (with '/', '&' and quotes) round-trips through the link
    for html in (listing, page):
        assert "<script>" not in html and "alert('x')" not in html
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;/evil" in html
    assert f"bad row {HOSTILE}" in unescape(page)
    assert page.count("&lt;script&gt;") >= 6  # title, heading, description, schedule, error, backtrace, spec
    assert f'name="name" value="{HOSTILE}"' not in page  # the hidden form field is escaped too


def test_unknown_pages_and_flows(store: Store) -> None:
    add_flow(store, "a")
    with running(store, actions=True) as base:
        client = Client(base)
        assert client.get("/nope")[0].status == 404
        resp, page = client.get(flow_path("default", "missing"))
        assert resp.status == 404 and "no flow missing in namespace default" in page
        assert client.get("/flow")[0].status == 400
        assert client.get(flow_path("default", "a", page="zz"))[0].status == 200
        assert client.get("/static/../app.py")[0].status == 404
        assert client.request("PUT", "/")[0].status == 405
        resp, css = client.get("/static/style.css")
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/css; charset=utf-8"
        assert "svg.spark rect.failed" in css
        assert client.get("/static/favicon.svg")[0].headers["Content-Type"] == "image/svg+xml"
        resp, body = client.get("/healthz")
        assert resp.status == 200 and body == "ok\n"
        resp, _ = client.get("/")
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp  # no script runs, none is needed
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


# --------------------------------------------------------------------------- actions


def test_actions_run_now_suspend_resume_against_the_store(store: Store) -> None:
    later = utcnow() + timedelta(days=1)
    add_flow(store, "paid-orders", "shop", next_run_at=later)
    assert store.due_flows(utcnow()) == []
    with running(store, actions=True) as base:
        client = Client(base)
        _, page = client.get(flow_path("shop", "paid-orders"))
        token = csrf_of(page)
        assert 'id="action-run-now"' in page and 'id="action-suspend"' in page

        resp, _ = client.post("/actions/run-now", {"namespace": "shop", "name": "paid-orders", "csrf": token})
        assert resp.status == 303
        assert resp.headers["Location"] == "../flow?namespace=shop&name=paid-orders&done=run-now"
        assert [f.name for f in store.due_flows(utcnow())] == ["paid-orders"]  # the next heartbeat runs it
        _, page = client.get(urljoin("/actions/run-now", resp.headers["Location"]))
        assert "Run requested" in page and "due now" in page

        resp, _ = client.post("/actions/suspend", {"namespace": "shop", "name": "paid-orders", "csrf": token})
        assert resp.status == 303
        flow = store.get_flow("paid-orders", "shop")
        assert flow is not None and not flow.enabled
        assert store.due_flows(utcnow()) == []
        _, page = client.get(flow_path("shop", "paid-orders"))
        assert 'id="action-resume"' in page and 'id="action-suspend"' not in page
        assert re.search(r'id="action-run-now"[^>]* disabled>', page)

        resp, page = client.post("/actions/run-now", {"namespace": "shop", "name": "paid-orders", "csrf": token})
        assert resp.status == 409 and "suspended: resume it first" in page
        assert 'href="../static/style.css"' in page  # the error page under /actions/ is styled too

        resp, _ = client.post("/actions/resume", {"namespace": "shop", "name": "paid-orders", "csrf": token})
        assert resp.status == 303
        flow = store.get_flow("paid-orders", "shop")
        assert flow is not None and flow.enabled

        resp, _ = client.post("/actions/run-now", {"namespace": "shop", "name": "nope", "csrf": token})
        assert resp.status == 404


def test_read_only_server_refuses_actions(store: Store) -> None:
    later = utcnow() + timedelta(days=1)
    add_flow(store, "paid-orders", "shop", next_run_at=later)
    with running(store, actions=True) as rw:
        writer = Client(rw)
        token = csrf_of(writer.get(flow_path("shop", "paid-orders"))[1])
    with running(store, actions=False) as ro:
        client = Client(ro, cookies=dict(writer.cookies))
        _, page = client.get(flow_path("shop", "paid-orders"))
        assert "<form" not in page and "Read-only" in page
        for action in ("run-now", "suspend", "resume"):
            resp, body = client.post(f"/actions/{action}", {"namespace": "shop", "name": "paid-orders",
                                                             "csrf": token})
            assert resp.status == 403 and "read-only" in body
    flow = store.get_flow("paid-orders", "shop")
    assert flow is not None and flow.enabled and flow.next_run_at == later


def test_actions_need_a_valid_csrf_token(store: Store) -> None:
    later = utcnow() + timedelta(days=1)
    add_flow(store, "paid-orders", "shop", next_run_at=later)
    form = {"namespace": "shop", "name": "paid-orders"}
    with running(store, actions=True) as base:
        client = Client(base)
        token = csrf_of(client.get(flow_path("shop", "paid-orders"))[1])
        port = base.rsplit(":", 1)[1]
        refused = [
            client.post("/actions/run-now", form),  # no token
            client.post("/actions/run-now", {**form, "csrf": "0" * 64}),  # a made-up one
            Client(base).post("/actions/run-now", {**form, "csrf": token}),  # the token without its cookie
            Client(base, cookies={"adf_csrf": "x" * 43}).post("/actions/run-now", {**form, "csrf": token}),
            client.post("/actions/run-now", {**form, "csrf": token}, {"Origin": "http://evil.example"}),
            client.post("/actions/run-now", {**form, "csrf": token}, {"Origin": "null"}),
        ]
        assert [r.status for r, _ in refused] == [403] * len(refused)
        assert "CSRF" in refused[0][1]
        resp, _ = client.request("GET", "/actions/run-now")
        assert resp.status == 405  # never by GET (a link or an <img> cannot act)
        resp, _ = client.request("POST", "/actions/run-now", None,
                                 {"Content-Type": "text/plain", "Content-Length": "0"})
        assert resp.status == 415
        flow = store.get_flow("paid-orders", "shop")
        assert flow is not None and flow.next_run_at == later  # nothing happened
        # the same origin, as a browser sends it, is accepted
        resp, _ = client.post("/actions/run-now", {**form, "csrf": token}, {"Origin": f"http://127.0.0.1:{port}"})
        assert resp.status == 303
    flow = store.get_flow("paid-orders", "shop")
    assert flow is not None and flow.next_run_at is not None and flow.next_run_at <= utcnow()


def test_a_token_from_another_server_is_refused(store: Store) -> None:
    add_flow(store, "a")
    one = make_app(store, actions=True, secret=b"one")
    two = make_app(store, actions=True, secret=b"two")
    assert one.csrf_token("c" * 43) != two.csrf_token("c" * 43)  # type: ignore[attr-defined]
    assert one.csrf_token("c" * 43) == make_app(store, secret=b"one").csrf_token("c" * 43)  # type: ignore[attr-defined]


def test_serve_runs_until_interrupted(tmp_path) -> None:
    """``serve()`` as ``adf ui`` will call it: a fresh SQLite store, a free port, SIGINT stops it."""
    url = f"sqlite:///{tmp_path / 'adf.db'}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("from activedataflow.ui import serve; "
            f"serve({url!r}, host='127.0.0.1', port={port}, actions=False)")
    proc = subprocess.Popen(as_from_a_terminal([sys.executable, "-c", code]), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                    page = resp.read().decode()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"adf ui did not start: {proc.stderr.read() if proc.stderr else ''}")
                time.sleep(0.2)
        assert "No flows in the store yet" in page and "read-only" in page
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode in (0, 1, -signal.SIGINT), err  # KeyboardInterrupt, not a hang
    assert (tmp_path / "adf.db").exists()


def test_a_server_acting_on_the_store_has_no_sign_in(store: Store) -> None:
    add_flow(store, "a")
    with running(store, actions=True) as base:
        client = Client(base)
        token = csrf_of(client.get(flow_path("default", "a"))[1])
        assert client.get("/login")[0].status == 404
        resp, _ = client.post("/login", {"csrf": token, "token": "abc"})
        assert resp.status == 404 and "adf_token" not in client.cookies
