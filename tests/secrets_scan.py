"""Secrets never shown: a pytest plugin that fails every test whose output contains a known secret.

A secret is a password or token the tests use: the test databases' (:mod:`tests.services`), and whatever
a test module announces with :func:`register_secret` (the heartbeat token, webhook URLs and tokens, the
test cluster's admin token). What is scanned, for every test:

* every log record of the test's call phase, at every level of the product's ``activedataflow`` loggers
  (its message, arguments and formatted exception);
* the message of every :class:`activedataflow.errors.UserError` made (what ``adf`` prints, what a run
  records as its error, what the operator writes into a status or an event);
* what the test left uncaptured on stdout and stderr (in-process CLI output, progress);
* the output of every subprocess run through the helpers (``tests.cli_helpers.adf``, ``adf serve``,
  ``kubectl``/``helm`` in :mod:`tests.k8s.cluster`), ``-o json`` included: they call :func:`seen`;
* the events and the ``status`` of every object of each :class:`tests.memkube.MemoryKube`
  (they call :func:`watch`).

A test that means to show a secret (checking what a Secret holds) wraps that part in :func:`allowed`
(which covers all but the captured stdout and stderr: a test never prints a secret).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from tests import services

__all__ = ["allowed", "register_secret", "seen", "watch"]

MIN_SECRET_LENGTH = 6  # shorter values would match ordinary text
PRODUCT_LOGGER = "activedataflow"

_secrets: set[str] = {services.PG_PASSWORD, services.MYSQL_PASSWORD}


def register_secret(*values: str) -> None:
    """Values no output of any test may contain from now on."""
    _secrets.update(v for v in values if len(v) >= MIN_SECRET_LENGTH)


class _Collector(logging.Handler):
    """What one test produced, as (where, text) pairs."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.texts: list[tuple[str, str]] = []
        self.kubes: list[Any] = []  # held until the scan: a test's MemoryKube may be gone by then
        self.paused = 0
        self.level_before = logging.NOTSET  # the product logger's level, put back after the test
        self.restore: Callable[[], None] = lambda: None  # undoes the UserError hook
        self.outer: _Collector | None = None  # the collector of the test this one runs in, if any

    def add(self, where: str, text: str) -> None:
        if not self.paused and text:
            self.texts.append((where, text))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format: scan both
            text = f"{record.msg} {record.args}"
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.add(f"log {record.name} {record.levelname}", text)

    def leaks(self) -> list[str]:
        for kube in list(self.kubes):
            self.add("Kubernetes events", json.dumps(kube.events, default=str))
            statuses = [o.get("status") for o in kube.objects.values()]
            self.add("Kubernetes status", json.dumps(statuses, default=str))
        secrets = sorted(_secrets)
        found = []
        for where, text in self.texts:
            for secret in secrets:
                if secret in text:
                    at = text.index(secret)
                    excerpt = text[max(0, at - 80): at + len(secret) + 40].replace(secret, "<SECRET>")
                    found.append(f"{where}: ...{excerpt}...")
        return found


_current: _Collector | None = None


def seen(where: str, text: str | None) -> None:
    """Output of the running test to scan (a subprocess's stdout or stderr...)."""
    if _current is not None and text:
        _current.add(where, text)


def watch(kube: Any) -> None:
    """Scan ``kube``'s events and statuses (a MemoryKube) when the running test ends."""
    if _current is not None:
        _current.kubes.append(kube)


@contextlib.contextmanager
def allowed() -> Iterator[None]:
    """Inside, output is not scanned: a test reading a Secret's value on purpose."""
    if _current is None:
        yield
        return
    collector = _current
    collector.paused += 1
    try:
        yield
    finally:
        collector.paused -= 1


def _record_user_errors(collector: _Collector) -> Callable[[], None]:
    from activedataflow.errors import UserError

    original = UserError.__init__

    def init(self: UserError, message: str, *, field: str | None = None) -> None:
        original(self, message, field=field)
        collector.add(f"error {type(self).__name__}", str(self))

    UserError.__init__ = init  # type: ignore[method-assign]

    def restore() -> None:
        UserError.__init__ = original  # type: ignore[method-assign]

    return restore


_COLLECTOR = pytest.StashKey[_Collector]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Collect from the test's fixtures on (a MemoryKube made by a fixture) until its teardown."""
    global _current
    collector = item.stash[_COLLECTOR] = _Collector()
    collector.outer, _current = _current, collector  # a pytest run inside a test (tests/test_secrets_scan.py)
    product = logging.getLogger(PRODUCT_LOGGER)
    collector.level_before = product.level
    product.setLevel(logging.DEBUG)  # every level of the product's logging is scanned
    logging.getLogger().addHandler(collector)
    collector.restore = _record_user_errors(collector)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    global _current
    try:
        return (yield)
    finally:
        collector = item.stash.get(_COLLECTOR, None)
        if collector is not None:
            collector.restore()
            logging.getLogger().removeHandler(collector)
            logging.getLogger(PRODUCT_LOGGER).setLevel(collector.level_before)
        _current = collector.outer if collector is not None else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    collector = item.stash.get(_COLLECTOR, None)
    if call.when != "call" or collector is None:
        return report
    collector.add("stdout", report.capstdout)  # what pytest captured and the test did not read
    collector.add("stderr", report.capstderr)
    leaks = collector.leaks()
    if leaks and not report.failed:
        report.outcome = "failed"
        report.longrepr = "a secret was shown:\n" + "\n".join(leaks[:10])
    return report
