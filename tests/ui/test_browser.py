"""The monitoring page in a real browser: Debian's chromium, driven through chromium-driver by selenium.

The store is the embedded default (SQLite) after a real ``adf demo`` (the paid-orders flow and its
run), plus flows and runs written through the Store API. Skips without chromium (fails under CI=true).
``ADF_UI_SCREENSHOT=docs/ui-flows.png`` also saves the flows page there (the README's picture).
The last test signs in with a Kubernetes token on the operator's page, on the real API server (marker k8s too).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from activedataflow.schedule import utcnow
from activedataflow.store import Store, open_store

from tests.k8s.cluster import Cluster
from tests.ui.helpers import FLOW, Tokens, add_flow, add_run, flow_path, operator_page, running

pytestmark = pytest.mark.ui

CI = os.environ.get("CI") == "true"
BROKEN_ERROR = 'relation "customers_v2" does not exist'
BROKEN_TRACE = (
    "Traceback (most recent call last):\n"
    '  File "/opt/adf/app/activedataflow/runner/executor.py", line 214, in _run\n'
    "    for page in source.pages(cursor):\n"
    "sqlalchemy.exc.ProgrammingError: (psycopg.errors.UndefinedTable) relation \"customers_v2\" does not exist"
)


def _missing(what: str) -> None:
    if CI:
        pytest.fail(f"{what} (CI=true: the browser tests must run)")
    pytest.skip(what)


def _adf() -> str:
    found = Path(sys.executable).with_name("adf")
    return str(found) if found.exists() else (shutil.which("adf") or "adf")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        _missing("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("needs selenium (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--disable-default-apps", "--disable-extensions",
                "--window-size=1360,760", "--hide-scrollbars", "--force-device-scale-factor=1",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager is not used (the driver's path is given)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store]]:
    """``adf demo`` on a fresh embedded store, then more flows through the Store API."""
    root = tmp_path_factory.mktemp("ui-demo")
    url = f"sqlite:///{root / 'adf.db'}"
    done = subprocess.run([_adf(), "--store", url, "demo", "--rows", "400", "--dir", str(root / "demo")],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    store = open_store(url)
    now = utcnow()
    nightly = add_flow(store, "nightly-export", "analytics", description="Orders to the data lake, nightly",
                       schedule="0 2 * * *", next_run_at=now + timedelta(hours=7))
    for i in range(18):
        add_run(store, nightly, at=now - timedelta(days=18 - i), seconds=40 + (i * 37) % 50, ok=i not in (4, 11),
                read=120_000 + i * 900, written=119_000 + i * 900, error=None if i not in (4, 11) else "timeout",
                cursor=None if i in (4, 11) else {"updated_at": f"{(now - timedelta(days=18 - i)):%Y-%m-%d} 02:00:00"})
    broken = add_flow(store, "customer-import", "shop", description="CRM customers into the shop database",
                      schedule="*/30 * * * *", next_run_at=now + timedelta(minutes=12))
    for i in range(9):
        last = i == 8
        add_run(store, broken, at=now - timedelta(minutes=30 * (9 - i)), seconds=3.5 + (i % 3), ok=i < 6,
                read=0 if i >= 6 else 2400 + i, written=0 if i >= 6 else 2400 + i,
                error=BROKEN_ERROR if i >= 6 else None, backtrace=BROKEN_TRACE if last else None,
                cursor={"id": 5000 + i * 40} if i < 6 else None)
    legacy = add_flow(store, "legacy-sync", "shop", description="Old ERP mirror (being retired)",
                      schedule=None, interval_seconds=3600)
    for i in range(5):
        add_run(store, legacy, at=now - timedelta(days=3, hours=5 - i), seconds=12 + i)
    store.set_enabled("legacy-sync", "shop", False)
    yield url, store
    store.close()


@pytest.fixture(scope="module")
def rw_url(demo_store: tuple[str, Store]) -> Iterator[str]:
    with running(demo_store[1], actions=True) as base:
        yield base


@pytest.fixture(scope="module")
def ro_url(demo_store: tuple[str, Store]) -> Iterator[str]:
    with running(demo_store[1], actions=False) as base:
        yield base


def _notice(browser: Any, text: str) -> None:
    """Wait for the page an action redirected to (a click returns when the form is sent, not answered)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(b: Any) -> bool:
        return any(text in e.text for e in b.find_elements(By.CSS_SELECTOR, ".notice"))

    # While the browser navigates, a notice found on the page being left goes stale: look again.
    WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(shown)


def _rows(browser: Any) -> dict[tuple[str, str], Any]:
    from selenium.webdriver.common.by import By

    out = {}
    for row in browser.find_elements(By.CSS_SELECTOR, "table.flows tbody tr"):
        cells = row.find_elements(By.TAG_NAME, "td")
        out[(cells[1].text, cells[0].find_element(By.TAG_NAME, "a").text)] = row
    return out


def test_flows_list_shows_what_the_store_holds(browser: Any, demo_store: tuple[str, Store], rw_url: str,
                                               tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    _, store = demo_store
    browser.get(rw_url + "/")
    assert browser.title == "Flows · ActiveDataFlow"
    rows = _rows(browser)
    assert sorted(rows) == sorted(f.key for f in store.list_flows())
    assert ("demo", "paid-orders") in rows  # adf demo's flow and its run
    demo = rows[("demo", "paid-orders")]
    assert demo.find_element(By.CSS_SELECTOR, ".badge").text == "succeeded"
    assert "*/15 * * * *" in demo.text
    demo_runs = store.list_runs("paid-orders", "demo")
    assert len(demo.find_elements(By.CSS_SELECTOR, "svg.spark rect")) == len(demo_runs) >= 1
    flow = store.get_flow("paid-orders", "demo")
    assert flow is not None and flow.cursor is not None
    cursor = demo.find_element(By.CSS_SELECTOR, "td.cursor code")
    assert cursor.text.startswith(f"updated_at {flow.cursor['updated_at']}"[:43])
    assert cursor.get_attribute("title") == f"updated_at {flow.cursor['updated_at']}, id {flow.cursor['id']}"
    broken = rows[("shop", "customer-import")]
    assert broken.find_element(By.CSS_SELECTOR, ".badge").text == "failed"
    assert "67% ok of 9" in broken.text
    assert len(broken.find_elements(By.CSS_SELECTOR, "svg.spark rect.failed")) == 3
    legacy = rows[("shop", "legacy-sync")]
    assert "yes" in legacy.find_elements(By.TAG_NAME, "td")[3].text and "suspended" in legacy.text
    # the stylesheet (shipped in the package) applied: no CDN, nothing from outside
    header = browser.find_element(By.CSS_SELECTOR, "header.top")
    assert header.value_of_css_property("background-color") == "rgba(23, 32, 44, 1)"
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(name.startswith(rw_url) for name in resources)

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1360, min(max(height + 40, 480), 1400))
    target = Path(os.environ.get("ADF_UI_SCREENSHOT") or tmp_path / "ui-flows.png")
    target.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(target))
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    browser.set_window_size(1360, 760)


def test_a_failed_runs_error_is_visible_on_its_flow_page(browser: Any, demo_store: tuple[str, Store],
                                                          rw_url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(rw_url + "/")
    browser.find_element(By.LINK_TEXT, "customer-import").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "customer-import"
    newest = browser.find_elements(By.CSS_SELECTOR, "table.runs tbody tr")[0]
    assert newest.find_element(By.CSS_SELECTOR, ".badge").text == "failed"
    error = newest.find_element(By.CSS_SELECTOR, ".error")
    assert error.is_displayed() and error.text == BROKEN_ERROR
    trace = newest.find_element(By.CSS_SELECTOR, "pre.trace")
    assert not trace.is_displayed()  # folded until asked for
    newest.find_element(By.TAG_NAME, "summary").click()
    assert trace.is_displayed() and "UndefinedTable" in trace.text
    spec = browser.find_element(By.CSS_SELECTOR, "pre.spec").text
    assert "cursorColumn: updated_at" in spec and "postgresql://etl:***@warehouse/dw" in spec
    assert "hunter2" not in browser.page_source


def test_run_now_from_the_page_makes_the_flow_due_and_the_heartbeat_runs_it(
    browser: Any, demo_store: tuple[str, Store], rw_url: str
) -> None:
    from selenium.webdriver.common.by import By

    url, store = demo_store
    store.set_next_run("paid-orders", "demo", utcnow() + timedelta(days=1))  # certainly not due
    before = store.list_runs("paid-orders", "demo")
    browser.get(rw_url + "/")
    browser.find_element(By.LINK_TEXT, "paid-orders").click()
    browser.find_element(By.ID, "action-run-now").click()
    _notice(browser, "Run requested")
    assert browser.current_url.startswith(rw_url + "/flow?")
    assert "due now" in browser.find_element(By.CSS_SELECTOR, "section.facts").text
    assert [f.key for f in store.due_flows(utcnow())] == [("demo", "paid-orders")]

    done = subprocess.run([_adf(), "--store", url, "heartbeat", "--flow", "paid-orders", "-n", "demo"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    after = store.list_runs("paid-orders", "demo")
    assert len(after) == len(before) + 1 and after[0].status == "success"
    browser.refresh()
    rows = browser.find_elements(By.CSS_SELECTOR, "table.runs tbody tr")
    assert len(rows) == len(after)
    assert rows[0].get_attribute("id") == f"run-{after[0].id}"

    # suspend and resume from the page, too
    browser.find_element(By.ID, "action-suspend").click()
    _notice(browser, "Suspended")
    flow = store.get_flow("paid-orders", "demo")
    assert flow is not None and not flow.enabled
    assert browser.find_element(By.ID, "action-run-now").get_attribute("disabled") is not None
    browser.find_element(By.ID, "action-resume").click()
    _notice(browser, "Resumed")
    flow = store.get_flow("paid-orders", "demo")
    assert flow is not None and flow.enabled


def test_a_read_only_server_refuses_actions(browser: Any, demo_store: tuple[str, Store], ro_url: str) -> None:
    from selenium.webdriver.common.by import By

    _, store = demo_store
    later = utcnow() + timedelta(days=2)
    store.set_next_run("nightly-export", "analytics", later)
    browser.get(ro_url + "/")
    assert browser.find_element(By.CSS_SELECTOR, ".mode").text == "read-only"
    browser.find_element(By.LINK_TEXT, "nightly-export").click()
    assert browser.find_elements(By.TAG_NAME, "button") == []
    assert "Read-only" in browser.find_element(By.CSS_SELECTOR, ".actions").text
    # a hand-made form, as another page (or a curious user) could send it
    browser.execute_script(
        "const f = document.createElement('form'); f.method = 'post'; f.action = 'actions/run-now';"
        "for (const [k, v] of [['namespace', 'analytics'], ['name', 'nightly-export'], ['csrf', 'x']]) {"
        "  const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); }"
        "document.body.appendChild(f); f.submit();"
    )
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(lambda b: b.title.startswith("403"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "403 Forbidden"
    assert "read-only" in browser.find_element(By.CSS_SELECTOR, "p.error").text
    assert browser.find_element(By.CSS_SELECTOR, "header.top").value_of_css_property("display") == "flex"  # styled
    flow = store.get_flow("nightly-export", "analytics")
    assert flow is not None and flow.next_run_at == later and flow.enabled


@pytest.mark.k8s
def test_on_the_operators_page_a_pasted_token_signs_in_and_run_now_sets_the_annotation(
    browser: Any, kube_crds: Cluster, flow_ns: str, tokens: Tokens, flow_store: Store, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with operator_page(kube_crds, flow_store, tmp_path, tokens.admin) as base:
        browser.get(base + flow_path(flow_ns))
        browser.find_element(By.ID, "action-run-now").click()
        WebDriverWait(browser, 30).until(lambda b: b.title.startswith("401"))
        assert "the request carried none" in browser.find_element(By.CSS_SELECTOR, "p.error").text
        browser.find_element(By.ID, "token").send_keys(tokens.editor)
        browser.find_element(By.ID, "sign-in-submit").click()
        _notice(browser, "Signed in")
        cookie = browser.get_cookie("adf_token")
        assert cookie is not None and cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        assert "adf_token" not in browser.execute_script("return document.cookie")  # no script can read it

        browser.find_element(By.ID, "action-run-now").click()
        _notice(browser, "activedataflow.io/run-now is set")
        annotations = kube_crds.get("dataflow", FLOW, "-n", flow_ns)["metadata"]["annotations"]
        assert annotations["activedataflow.io/run-now"].isdigit()

        browser.find_element(By.ID, "sign-out").click()
        _notice(browser, "Signed out")
        assert browser.get_cookie("adf_token") is None
